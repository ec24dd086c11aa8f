package app

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestControllerFlagDefaults(t *testing.T) {
	cmd := newControllerCommand()
	if err := cmd.ParseFlags(nil); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, name := range []string{"idle-ttl", "registration-timeout", "provider-resync", "workers", "kubeconfig",
		"leader-elect", "leader-elect-lease-duration", "leader-elect-renew-deadline", "leader-elect-retry-period",
		"leader-elect-id", "retry-base-delay", "retry-max-delay", "mode", "provider", "bootstrap-template", "v",
		"namespace-create-qps", "namespace-create-burst"} {
		f := cmd.Flags().Lookup(name)
		if f == nil {
			t.Errorf("flag --%s missing", name)
			continue
		}
		got[name] = f.DefValue
	}
	want := map[string]string{
		"idle-ttl": "10m0s", "registration-timeout": "0s", "provider-resync": "30s", "workers": "4", "kubeconfig": "",
		"leader-elect": "true", "leader-elect-lease-duration": "15s", "leader-elect-renew-deadline": "10s",
		"leader-elect-retry-period": "2s", "leader-elect-id": "ipp-controller", "retry-base-delay": "1s",
		"retry-max-delay": "5m0s", "mode": "dedicated", "provider": "gce", "bootstrap-template": "", "v": "0",
		"namespace-create-qps": "0.2", "namespace-create-burst": "20",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("flag defaults mismatch (-want +got):\n%s", d)
	}
}

func TestControllerRefusesBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"autoscaler mode", []string{"--mode=autoscaler"}, "nothing to do in --mode=autoscaler"},
		{"zero idle TTL", []string{"--idle-ttl=0"}, "--idle-ttl"},
		{"negative registration timeout", []string{"--registration-timeout=-1s"}, "--registration-timeout"},
		{"no workers", []string{"--workers=0"}, "--workers"},
		{"base delay above cap", []string{"--retry-base-delay=10m"}, "--retry-base-delay"},
		{"negative creation rate", []string{"--namespace-create-qps=-1"}, "--namespace-create-qps -1"},
		{"infinite creation rate", []string{"--namespace-create-qps=inf"}, "0 turns the limit off"},
		{"creation burst 0", []string{"--namespace-create-burst=0"}, "--namespace-create-burst 0"},
		{"renew deadline above lease", []string{"--leader-elect-renew-deadline=20s"}, "--leader-elect-lease-duration"},
		{"invalid isolation flag", []string{"--pod-label=not a label"}, "--pod-label"},
		{"unknown provider", []string{"--kubeconfig=" + kubeconfigFile(t), "--provider=nimbus"}, `invalid --provider "nimbus"`},
		{"missing kubeconfig", []string{"--kubeconfig=" + filepath.Join(t.TempDir(), "none")}, "--kubeconfig"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := newControllerCommand()
			cmd.SetArgs(tc.args)
			cmd.SetOut(new(strings.Builder))
			cmd.SetErr(new(strings.Builder))
			err := cmd.Execute()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Execute() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestRunControllerRefusesAutoscalerMode(t *testing.T) {
	iso := newIsolationOptions()
	iso.mode = "autoscaler"
	cfg, err := iso.complete()
	if err != nil {
		t.Fatal(err)
	}
	if err := runController(t.Context(), cfg, newControllerOptions()); !errors.Is(err, errNotDedicated) {
		t.Errorf("runController = %v, want errNotDedicated", err)
	}
}

func TestControllerOptionsValidate(t *testing.T) {
	o := newControllerOptions()
	if err := o.validate(); err != nil {
		t.Errorf("defaults invalid: %v", err)
	}
	o.leaderElection.Enabled = false
	o.leaderElection.Namespace = ""
	o.idleTTL = time.Second
	if err := o.validate(); err != nil {
		t.Errorf("leader election off should ignore its other flags: %v", err)
	}
	// Minting join tokens, the namespace holds the token journal too.
	o.provider.join.APIServerEndpoint = "10.0.0.1:6443"
	o.provider.join.CACertHash = "sha256:" + strings.Repeat("ab", 32)
	if err := o.validate(); err == nil || !strings.Contains(err.Error(), "--leader-elect-namespace") {
		t.Errorf("validate() = %v, want an error about --leader-elect-namespace, where the join token journal lives", err)
	}
}

// kubeconfigFile writes a kubeconfig for a server that is never contacted.
func kubeconfigFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	const cfg = `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: https://127.0.0.1:1
contexts:
- name: c
  context:
    cluster: c
    user: u
current-context: c
users:
- name: u
  user:
    token: t
`
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
