package gceemu

import (
	"testing"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"
)

func TestFilter(t *testing.T) {
	inst := &computepb.Instance{
		Name:   proto.String("ipp-a"),
		Status: proto.String("RUNNING"),
		Id:     proto.Uint64(42),
		Labels: map[string]string{"ipp-cluster": "prod", "ipp-class": "_web"},
	}
	tests := []struct {
		filter  string
		want    bool
		wantErr bool
	}{
		{filter: "", want: true},
		{filter: `labels.ipp-cluster = "prod"`, want: true},
		{filter: `labels.ipp-cluster = prod`, want: true},
		{filter: `labels.ipp-cluster="staging"`, want: false},
		{filter: `labels.ipp-cluster != "staging"`, want: true},
		{filter: `labels.missing != "x"`, want: true},
		{filter: `labels.missing = ""`, want: false},
		{filter: `labels.ipp-class:*`, want: true},
		{filter: `labels.missing:*`, want: false},
		{filter: `name:ipp`, want: true},
		{filter: `(labels.ipp-cluster = "prod") (status = RUNNING)`, want: true},
		{filter: `labels.ipp-cluster = "prod" AND status = "TERMINATED"`, want: false},
		{filter: `id = 42`, want: true},
		{filter: `name = 'ipp-a'`, want: true},
		{filter: `labels.a = "x" OR labels.b = "y"`, wantErr: true},
		{filter: `zone = x`, wantErr: true},
		{filter: `(name = x`, wantErr: true},
		{filter: `name = "x`, wantErr: true},
		{filter: `name =`, wantErr: true},
		{filter: `name ! x`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.filter, func(t *testing.T) {
			f, err := parseFilter(tt.filter)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseFilter(%q) = %v, want an error", tt.filter, f)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := f.matches(inst); got != tt.want {
				t.Errorf("matches = %v, want %v", got, tt.want)
			}
		})
	}
}
