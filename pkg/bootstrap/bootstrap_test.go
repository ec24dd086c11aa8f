package bootstrap

import (
	"errors"
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
		Join:     Join{APIServerEndpoint: "10.0.0.1:6443", Token: "abcdef.0123456789abcdef", CACertHash: testPin},
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
		`--discovery-token-ca-cert-hash '` + testPin + `'`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("rendered script lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, isolation.BindingLabel) {
		t.Errorf("rendered script mentions the binding label:\n%s", got)
	}
	checkBash(t, got)
}

// testPin is a well-formed CA pin.
var testPin = "sha256:" + strings.Repeat("0f", 32)

// checkBash checks that bash can parse script.
func checkBash(t *testing.T, script string) {
	t.Helper()
	if sh, err := exec.LookPath("bash"); err == nil {
		cmd := exec.Command(sh, "-n")
		cmd.Stdin = strings.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("bash -n: %v\n%s\n%s", err, out, script)
		}
	}
}

// TestRenderCAPin checks that the default script pins the cluster CA, skips the check only when
// told so explicitly, and that a join with neither is a render error rather than a silent skip.
func TestRenderCAPin(t *testing.T) {
	const (
		pinFlag  = "--discovery-token-ca-cert-hash"
		skipFlag = "--discovery-token-unsafe-skip-ca-verification"
	)
	endpoint, token := "10.0.0.1:6443", "abcdef.0123456789abcdef"
	tests := []struct {
		name       string
		join       Join
		want       []string
		unwanted   []string
		wantErr    string
		wantErrIs  error
		wantNoJoin bool
	}{
		{name: "pinned", join: Join{APIServerEndpoint: endpoint, Token: token, CACertHash: testPin},
			want: []string{pinFlag + " '" + testPin + "'"}, unwanted: []string{skipFlag}},
		{name: "upper-case prefix", join: Join{APIServerEndpoint: endpoint, Token: token, CACertHash: "SHA256:" + strings.Repeat("0f", 32)},
			wantErr: "sha256:<64 hex digits>"},
		{name: "upper-case digits", join: Join{APIServerEndpoint: endpoint, Token: token, CACertHash: "sha256:" + strings.Repeat("0F", 32)},
			want: []string{pinFlag}, unwanted: []string{skipFlag}},
		{name: "explicitly insecure", join: Join{APIServerEndpoint: endpoint, Token: token, InsecureSkipCAVerification: true},
			want: []string{skipFlag}, unwanted: []string{pinFlag}},
		{name: "no pin is an error, not a skip", join: Join{APIServerEndpoint: endpoint, Token: token}, wantErrIs: ErrNoCAPin},
		{name: "both", join: Join{APIServerEndpoint: endpoint, Token: token, CACertHash: testPin, InsecureSkipCAVerification: true}, wantErr: "choose one"},
		{name: "short hash", join: Join{APIServerEndpoint: endpoint, Token: token, CACertHash: "sha256:00ff"}, wantErr: "sha256:<64 hex digits>"},
		{name: "other algorithm", join: Join{APIServerEndpoint: endpoint, Token: token, CACertHash: "sha1:" + strings.Repeat("ab", 20)}, wantErr: "sha256:<64 hex digits>"},
		{name: "not hex", join: Join{APIServerEndpoint: endpoint, Token: token, CACertHash: "sha256:" + strings.Repeat("zz", 32)}, wantErr: "sha256:<64 hex digits>"},
		{name: "no endpoint: the image joins", join: Join{}, wantNoJoin: true},
	}
	r, err := NewRenderer("")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.Render(Params{Join: tc.join, NodeName: "n1"})
			switch {
			case tc.wantErrIs != nil:
				if !errors.Is(err, tc.wantErrIs) {
					t.Fatalf("Render = %v, want %v", err, tc.wantErrIs)
				}
				return
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Render = %v, want an error containing %q", err, tc.wantErr)
				}
				return
			case err != nil:
				t.Fatalf("Render: %v", err)
			}
			if tc.wantNoJoin {
				if strings.Contains(got, "kubeadm join") || strings.Contains(got, skipFlag) {
					t.Errorf("script without an endpoint joins:\n%s", got)
				}
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("script lacks %q:\n%s", w, got)
				}
			}
			for _, u := range tc.unwanted {
				if strings.Contains(got, u) {
					t.Errorf("script has %q:\n%s", u, got)
				}
			}
			checkBash(t, got)
		})
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
