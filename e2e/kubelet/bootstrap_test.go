package kubelet

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/ipp-project/ipp/pkg/bootstrap"
	"github.com/ipp-project/ipp/pkg/isolation"
)

func TestParseBootstrapRendered(t *testing.T) {
	cfg := isolation.DefaultConfig()
	for _, tc := range []struct {
		name   string
		tmpl   string
		params bootstrap.Params
		want   Registration
	}{
		{
			name: "default template",
			params: bootstrap.Params{
				Join:     bootstrap.Join{APIServerEndpoint: "10.0.0.1:6443", Token: "abcdef.0123456789abcdef", CACertHash: "sha256:" + strings.Repeat("0f", 32)},
				NodeName: "ipp-class0-abc",
				Labels:   cfg.NodeLabels(),
				Taints:   cfg.Taints(),
			},
			want: Registration{NodeName: "ipp-class0-abc", Labels: cfg.NodeLabels(), Taints: cfg.Taints()},
		},
		{
			name: "provider id computed on the instance is left to the cloud",
			params: bootstrap.Params{
				NodeName:          "ipp-class1-def",
				Labels:            map[string]string{"ipp": "true", "team": "a b'c"},
				ProviderIDCommand: "curl -s http://169.254.169.254/latest/meta-data/instance-id",
			},
			want: Registration{NodeName: "ipp-class1-def", Labels: map[string]string{"ipp": "true", "team": "a"}},
		},
		{
			name: "custom template with double quotes and a provider id",
			tmpl: `#!/bin/sh
export KUBELET_EXTRA_ARGS="{{.KubeletArgs}} --provider-id=aws:///us-east-1a/i-0123 --v=2"
`,
			params: bootstrap.Params{NodeName: "n1", Labels: map[string]string{"ipp": "true"}},
			want:   Registration{NodeName: "n1", Labels: map[string]string{"ipp": "true"}, ProviderID: "aws:///us-east-1a/i-0123"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := bootstrap.NewRenderer(tc.tmpl)
			if err != nil {
				t.Fatal(err)
			}
			script, err := r.Render(tc.params)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseBootstrap(script)
			if err != nil {
				t.Fatalf("ParseBootstrap: %v\n%s", err, script)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseBootstrap (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseBootstrap(t *testing.T) {
	for _, tc := range []struct {
		name    string
		script  string
		want    Registration
		wantErr bool
	}{
		{
			name:   "binding label passes through for the apiserver to judge",
			script: `KUBELET_EXTRA_ARGS='--hostname-override=n --node-labels=node-restriction.kubernetes.io/ipp-node=n'`,
			want:   Registration{NodeName: "n", Labels: map[string]string{isolation.BindingLabel: "n"}},
		},
		{
			name:   "taints with both effects",
			script: `KUBELET_EXTRA_ARGS=--hostname-override=n\ --register-with-taints=ipp=true:NoSchedule,ipp=true:NoExecute`,
			want: Registration{NodeName: "n", Taints: []corev1.Taint{
				{Key: "ipp", Value: "true", Effect: corev1.TaintEffectNoSchedule},
				{Key: "ipp", Value: "true", Effect: corev1.TaintEffectNoExecute},
			}},
		},
		{
			name:   "first assignment wins, comments ignored",
			script: "# KUBELET_EXTRA_ARGS='--hostname-override=x'\n  KUBELET_EXTRA_ARGS='--hostname-override=a' # note\nKUBELET_EXTRA_ARGS='--hostname-override=b'\n",
			want:   Registration{NodeName: "a"},
		},
		{name: "no assignment", script: "#!/bin/sh\nkubeadm join\n", wantErr: true},
		{name: "no hostname override", script: "KUBELET_EXTRA_ARGS='--node-labels=a=b'", wantErr: true},
		{name: "unterminated quote", script: "KUBELET_EXTRA_ARGS='--hostname-override=a", wantErr: true},
		{name: "bad taint", script: "KUBELET_EXTRA_ARGS='--hostname-override=a --register-with-taints=ipp=true:Sometimes'", wantErr: true},
		{
			name:   "label without value, as the kubelet reads it",
			script: "KUBELET_EXTRA_ARGS='--hostname-override=a --node-labels=novalue'",
			want:   Registration{NodeName: "a", Labels: map[string]string{"novalue": ""}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseBootstrap(tc.script)
			if gotErr := err != nil; gotErr != tc.wantErr {
				t.Fatalf("ParseBootstrap error = %v, want error %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseBootstrap (-want +got):\n%s", diff)
			}
		})
	}
}
