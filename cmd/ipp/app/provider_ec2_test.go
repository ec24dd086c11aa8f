package app

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestEC2ProviderFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
		timeout time.Duration
	}{
		{name: "image", args: []string{"--ec2-region=us-east-1", "--ec2-image-id=ami-1"}, timeout: 40 * time.Minute},
		{name: "template, virtual type", args: []string{"--ec2-region=us-east-1", "--ec2-launch-template=lt-01:$Latest", "--ec2-instance-type=m5.large", "--ec2-subnet-ids=subnet-a,subnet-b", "--ec2-security-group-ids=sg-1", "--ec2-endpoint=http://127.0.0.1:1"}, timeout: 15 * time.Minute},
		{name: "no region", args: []string{"--ec2-image-id=ami-1"}, wantErr: "--ec2-region"},
		{name: "no image", args: []string{"--ec2-region=us-east-1"}, wantErr: "--ec2-image-id or --ec2-launch-template"},
		{name: "bad template", args: []string{"--ec2-region=us-east-1", "--ec2-launch-template=nodes:newest"}, wantErr: "--ec2-launch-template"},
		{name: "empty subnet", args: []string{"--ec2-region=us-east-1", "--ec2-image-id=ami-1", "--ec2-subnet-ids=subnet-a,,subnet-b"}, wantErr: "--ec2-subnet-ids"},
		{name: "empty group", args: []string{"--ec2-region=us-east-1", "--ec2-image-id=ami-1", "--ec2-security-group-ids=sg-1, "}, wantErr: "--ec2-security-group-ids"},
		{name: "empty type", args: []string{"--ec2-region=us-east-1", "--ec2-image-id=ami-1", "--ec2-instance-type="}, wantErr: "--ec2-instance-type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o providerOptions
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			o.addFlags(fs)
			if err := fs.Parse(append([]string{"--provider=ec2"}, tt.args...)); err != nil {
				t.Fatal(err)
			}
			p, err := o.build(context.Background(), "test-cluster")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("build() error = %v, want one naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("build() error = %v", err)
			}
			if p.Name() != "ec2" || p.RegistrationTimeout() != tt.timeout {
				t.Errorf("provider %s with timeout %v, want ec2 with %v", p.Name(), p.RegistrationTimeout(), tt.timeout)
			}
		})
	}
}
