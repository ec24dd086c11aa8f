package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the sandbox's concurrent printing.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestSandbox runs the sandbox as `make sandbox` does, until the examples run: it prints one
// export line first, and each example Pod runs on its class's dedicated node.
func TestSandbox(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	var out syncBuffer
	err := run(ctx, options{bootDelay: 0, idleTTL: time.Minute, workers: 1, examples: true, exitWhenRunning: true, dir: t.TempDir(), verbosity: 2, metricsAddress: "127.0.0.1:0"}, &out)
	t.Logf("Sandbox output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if !regexp.MustCompile(`^export KUBECONFIG=/\S+/kubeconfig$`).MatchString(lines[0]) {
		t.Errorf("First line %q is not export KUBECONFIG=<path>", lines[0])
	}
	if n := strings.Count(out.String(), "export KUBECONFIG="); n != 1 {
		t.Errorf("%d export lines, want 1", n)
	}
	running := regexp.MustCompile(`Pod default/(class[01])-\S+ \(class (class[01])\) running on (ipp-class[01])-`)
	count := 0
	for _, l := range lines {
		if m := running.FindStringSubmatch(l); m != nil {
			count++
			if m[1] != m[2] || "ipp-"+m[2] != m[3] {
				t.Errorf("Pod of %s ran on %s: %s", m[2], m[3], l)
			}
		}
	}
	if count != 4 {
		t.Errorf("%d example Pods reported running, want 4", count)
	}
	// Each example class's instance joined with a token of its own, approved by ipp; the example
	// NodeClass was accepted by the API server.
	for _, c := range []struct {
		what string
		re   *regexp.Regexp
		want int
	}{
		{"tokens minted", regexp.MustCompile(`(?m)^.*Join token ([a-z0-9]{6}) minted: IPP join token of instance ipp-class[01]-`), 2},
		{"CSRs approved by ipp", regexp.MustCompile(`(?m)^.*CSR \S+ of system:bootstrap:[a-z0-9]{6} approved \(IPPJoinTokenApproved\)`), 2},
		{"NodeClasses applied", regexp.MustCompile(`(?m)^.*Applied NodeClass metal \(machineType n2-standard-8, isolation Class by default`), 1},
	} {
		if n := len(c.re.FindAllString(out.String(), -1)); n < c.want {
			t.Errorf("%d %s, want at least %d", n, c.what, c.want)
		}
	}
}
