package kubelet

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ipp-project/ipp/pkg/bootstrap"
	"github.com/ipp-project/ipp/pkg/isolation"
)

// TestParseJoin reads the kubeadm join of bootstraps rendered by pkg/bootstrap, as the emulated
// node joins with them, and refuses bootstraps that do not join.
func TestParseJoin(t *testing.T) {
	cfg := isolation.DefaultConfig()
	pin := "sha256:" + strings.Repeat("0f", 32)
	render := func(j bootstrap.Join) string {
		t.Helper()
		r, err := bootstrap.NewRenderer("")
		if err != nil {
			t.Fatal(err)
		}
		s, err := r.Render(bootstrap.Params{Join: j, NodeName: "ipp-a", Labels: cfg.NodeLabels(), Taints: cfg.Taints()})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, tc := range []struct {
		name    string
		script  string
		want    JoinParams
		wantErr string
	}{
		{
			name:   "pinned",
			script: render(bootstrap.Join{APIServerEndpoint: "10.0.0.1:6443", Token: "abcdef.0123456789abcdef", CACertHash: pin}),
			want:   JoinParams{APIServerEndpoint: "10.0.0.1:6443", Token: "abcdef.0123456789abcdef", CACertHash: pin},
		},
		{
			name:   "knowingly unpinned",
			script: render(bootstrap.Join{APIServerEndpoint: "10.0.0.1:6443", Token: "abcdef.0123456789abcdef", InsecureSkipCAVerification: true}),
			want:   JoinParams{APIServerEndpoint: "10.0.0.1:6443", Token: "abcdef.0123456789abcdef", UnsafeSkipCAVerification: true},
		},
		{name: "no join", script: "KUBELET_EXTRA_ARGS='--hostname-override=ipp-a'\n", wantErr: "runs no kubeadm join"},
		{name: "no token", script: "kubeadm join 10.0.0.1:6443 --discovery-token-ca-cert-hash " + pin + "\n", wantErr: "no --token"},
		{name: "two endpoints", script: "kubeadm join a:1 b:2 --token abcdef.0123456789abcdef\n", wantErr: "one API server endpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseJoin(tc.script)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseJoin() = %+v, %v; want an error with %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseJoin() (-want +got):\n%s", diff)
			}
		})
	}
}
