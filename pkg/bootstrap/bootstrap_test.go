package bootstrap

import (
	"os/exec"
	"strings"
	"testing"
	"text/template"

	corev1 "k8s.io/api/core/v1"

	"github.com/ipp-project/ipp/pkg/isolation"
)

func TestRenderDefault(t *testing.T) {
	cfg := isolation.DefaultConfig()
	r, err := NewRenderer("")
	if err != nil {
		t.Fatal(err)
	}
	p := Params{
		Join:     Join{APIServerEndpoint: "10.0.0.1:6443", Token: "abcdef.0123456789abcdef", CACertHash: "sha256:00ff"},
		NodeName: "ipp-class0-cb543558de22",
		Labels:   cfg.NodeLabels(),
		Taints:   cfg.Taints(),
	}
	got, err := r.Render(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`NODE_NAME='ipp-class0-cb543558de22'`,
		`KUBELET_EXTRA_ARGS='--hostname-override=ipp-class0-cb543558de22 --node-labels=ipp=true --register-with-taints=ipp=true:NoSchedule,ipp=true:NoExecute'`,
		`kubeadm join '10.0.0.1:6443'`,
		`--token 'abcdef.0123456789abcdef'`,
		`--discovery-token-ca-cert-hash 'sha256:00ff'`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("rendered script lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, isolation.BindingLabel) {
		t.Errorf("rendered script mentions the binding label:\n%s", got)
	}
	if sh, err := exec.LookPath("bash"); err == nil {
		cmd := exec.Command(sh, "-n")
		cmd.Stdin = strings.NewReader(got)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("bash -n: %v\n%s\n%s", err, out, got)
		}
	}
}

func TestRenderRefusesBindingLabel(t *testing.T) {
	r, err := NewRenderer("")
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Render(Params{NodeName: "n", Labels: map[string]string{isolation.BindingLabel: "n"}})
	if err == nil || !strings.Contains(err.Error(), "written only by the controller") {
		t.Fatalf("Render with the binding label: err = %v, want a refusal", err)
	}
	if _, err := r.Render(Params{}); err == nil {
		t.Fatalf("Render with no node name succeeded")
	}
}

func TestRenderCustomTemplate(t *testing.T) {
	r, err := NewRenderer(`{{.NodeName}} {{.KubeletArgs}}`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Render(Params{NodeName: "n1", Labels: map[string]string{"b": "2", "a": "1"},
		Taints: []corev1.Taint{{Key: "ipp", Value: "true", Effect: corev1.TaintEffectNoExecute}}})
	if err != nil {
		t.Fatal(err)
	}
	want := "n1 --hostname-override=n1 --node-labels=a=1,b=2 --register-with-taints=ipp=true:NoExecute"
	if got != want {
		t.Errorf("Render = %q, want %q", got, want)
	}
	if _, err := NewRenderer(`{{.Nope`); err == nil {
		t.Errorf("NewRenderer accepted a broken template")
	}
	if _, err := (&Renderer{tmpl: mustParse(t, `{{.Missing}}`)}).Render(Params{NodeName: "n"}); err == nil {
		t.Errorf("Render with an unknown field succeeded")
	}
}

func mustParse(t *testing.T, text string) *template.Template {
	t.Helper()
	r, err := NewRenderer(text)
	if err != nil {
		t.Fatal(err)
	}
	return r.tmpl
}
