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
// export line first; both example NodeClasses are applied; each example Pod runs on its class's
// dedicated node, whose instance the Compute emulator received with its NodeClass's machine type;
// the webhook denies NodeClass metal to namespace default; and the NodeClasses' status, printed as
// `kubectl get nodeclasses` shows it, counts the example Pods.
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
	if !regexp.MustCompile(`(?m)^\[[ 0-9.]+s\] Compute emulator at http://127\.0\.0\.1:\d+ \(project \S+, zone \S+\)`).MatchString(out.String()) {
		t.Errorf("No line with the Compute emulator's address, project and zone")
	}
	// class0 runs in namespace default on NodeClass default, class1 in tenant-a on NodeClass metal.
	namespaceOf := map[string]string{"class0": "default", "class1": "tenant-a"}
	running := regexp.MustCompile(`Pod (\S+)/(class[01])-\S+ \(class (class[01])\) running on (ipp-class[01])-`)
	count := 0
	for _, l := range lines {
		if m := running.FindStringSubmatch(l); m != nil {
			count++
			if m[2] != m[3] || "ipp-"+m[3] != m[4] || namespaceOf[m[3]] != m[1] {
				t.Errorf("Pod of %s in namespace %s ran on %s: %s", m[3], m[1], m[4], l)
			}
		}
	}
	if count != 4 {
		t.Errorf("%d example Pods reported running, want 4", count)
	}
	for _, c := range []struct {
		what string
		re   *regexp.Regexp
		want int
	}{
		// Each example class's instance joined with a token of its own, approved by ipp.
		{"tokens minted", regexp.MustCompile(`(?m)^.*Join token ([a-z0-9]{6}) minted: IPP join token of instance ipp-class[01]-`), 2},
		{"CSRs approved by ipp", regexp.MustCompile(`(?m)^.*CSR \S+ of system:bootstrap:[a-z0-9]{6} approved \(IPPJoinTokenApproved\)`), 2},
		// Both NodeClasses were accepted by the API server.
		{"NodeClass default applied", regexp.MustCompile(`(?m)^.*Applied NodeClass default \(machineType e2-standard-4, isolation Class,`), 1},
		{"NodeClass metal applied", regexp.MustCompile(`(?m)^.*Applied NodeClass metal \(machineType c3-standard-192-metal, isolation Class, .*namespaceSelector tenant-tier=untrusted\)`), 1},
		// The controller created each class's instance with its NodeClass's machine type, as the
		// Compute emulator received it.
		{"instance of NodeClass default", regexp.MustCompile(`(?m)^.*Instance ipp-class0-\S+ created in zone \S+ for NodeClass default: machine type e2-standard-4 `), 1},
		{"instance of NodeClass metal", regexp.MustCompile(`(?m)^.*Instance ipp-class1-\S+ created in zone \S+ for NodeClass metal: machine type c3-standard-192-metal `), 1},
		// The webhook denies NodeClass metal to a namespace outside its namespaceSelector.
		{"denial of metal in namespace default", regexp.MustCompile(`(?m)^.*Webhook denied a Pod of namespace default labelled ipp\.io/node-class=metal .*NodeClass "metal" may not be used in namespace "default"`), 1},
		// The NodeClasses' status as `kubectl get nodeclasses` shows it: one node, one class and
		// two Pods each, Ready.
		{"kubectl get nodeclasses header", regexp.MustCompile(`(?m)^\s+NAME\s+NODES\s+CLASSES\s+PODS\s+ISOLATION\s+READY\s+AGE$`), 1},
		{"status of NodeClass default", regexp.MustCompile(`(?m)^\s+default\s+1\s+1\s+2\s+Class\s+True\s+\S+$`), 1},
		{"status of NodeClass metal", regexp.MustCompile(`(?m)^\s+metal\s+1\s+1\s+2\s+Class\s+True\s+\S+$`), 1},
	} {
		if n := len(c.re.FindAllString(out.String(), -1)); n < c.want {
			t.Errorf("%d lines of %s, want at least %d", n, c.what, c.want)
		}
	}
}
