package app

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestGCEProviderFlags(t *testing.T) {
	base := []string{"--provider=gce", "--gce-project=p", "--gce-zone=z-a", "--gce-image=projects/p/global/images/node", "--gce-endpoint=http://127.0.0.1:1"}
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "ok", args: base},
		{name: "template instead of image", args: []string{"--provider=gce", "--gce-project=p", "--gce-zone=z-a", "--gce-instance-template=projects/p/global/instanceTemplates/t", "--gce-endpoint=http://127.0.0.1:1"}},
		{name: "no project", args: []string{"--provider=gce", "--gce-zone=z-a", "--gce-image=i"}, wantErr: "--gce-project is required"},
		{name: "no zone", args: []string{"--provider=gce", "--gce-project=p", "--gce-image=i"}, wantErr: "--gce-zone is required"},
		{name: "no image or template", args: []string{"--provider=gce", "--gce-project=p", "--gce-zone=z"}, wantErr: "--gce-instance-template or --gce-image is required"},
		{name: "bad timeout", args: append(append([]string{}, base...), "--gce-registration-timeout=0s"), wantErr: "invalid --gce-registration-timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := &providerOptions{}
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			o.addFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			p, err := o.build(context.Background(), "ipp")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("build: err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Name() != "gce" || p.RegistrationTimeout() != 15*time.Minute {
				t.Errorf("provider %q with registration timeout %v", p.Name(), p.RegistrationTimeout())
			}
		})
	}
}
