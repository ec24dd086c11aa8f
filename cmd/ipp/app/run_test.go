package app

import (
	"strings"
	"testing"
)

func TestRunCommandBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "bad mode", args: []string{"run", "--mode=bogus"}, want: `invalid --mode "bogus"`},
		{name: "no certificate", args: []string{"run"}, want: "missing --tls-cert-file"},
		{name: "bad idle ttl", args: []string{"run", "--tls-cert-file=c", "--tls-private-key-file=k", "--idle-ttl=0s"}, want: "invalid --idle-ttl 0s"},
		{name: "bad workers", args: []string{"run", "--tls-cert-file=c", "--tls-private-key-file=k", "--workers=0"}, want: "invalid --workers 0"},
		{name: "unknown provider", args: []string{"run", "--tls-cert-file=c", "--tls-private-key-file=k", "--provider=azure"}, want: `invalid --provider "azure"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stderr := runMain(t, tt.args...)
			if code == 0 {
				t.Fatalf("Main(%q) = 0, want non-zero", tt.args)
			}
			lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
			if last := lines[len(lines)-1]; !strings.Contains(last, tt.want) {
				t.Errorf("last line of stderr %q does not contain %q", last, tt.want)
			}
		})
	}
}
