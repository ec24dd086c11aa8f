package main

import (
	"bytes"
	"context"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/ipp-project/ipp/pkg/isolation"
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

// TestSandbox runs the sandbox as `make sandbox` does (--placement=controller), until the
// examples run: it prints one export line first; both example NodeClasses are applied; each
// example Pod runs on a node of its class, whose instance the Compute emulator received with its
// NodeClass's machine type, placed there by ipp; class2, four Pods of 1.5 CPUs on nodes of 4,
// runs on two nodes, two Pods each, both bound to the class by its labels; the webhook denies
// NodeClass metal to namespace default; and the NodeClasses' status, printed as `kubectl get
// nodeclasses` shows it, counts the example Pods and nodes.
func TestSandbox(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	var out syncBuffer
	err := run(ctx, options{bootDelay: 0, idleTTL: time.Minute, workers: 1, examples: true, exitWhenRunning: true, dir: t.TempDir(), verbosity: 2, metricsAddress: "127.0.0.1:0", placement: isolation.PlacementController}, &out)
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
	// class0 and class2 run in namespace default on NodeClass default, class1 in tenant-a on
	// NodeClass metal.
	namespaceOf := map[string]string{"class0": "default", "class1": "tenant-a", "class2": "default"}
	running := regexp.MustCompile(`Pod (\S+)/(class[012])-\S+ \(class (class[012])\) running on (ipp-class[012])-`)
	count := 0
	for _, l := range lines {
		if m := running.FindStringSubmatch(l); m != nil {
			count++
			if m[2] != m[3] || "ipp-"+m[3] != m[4] || namespaceOf[m[3]] != m[1] {
				t.Errorf("Pod of %s in namespace %s ran on %s: %s", m[3], m[1], m[4], l)
			}
		}
	}
	if count != 8 {
		t.Errorf("%d example Pods reported running, want 8", count)
	}
	// class2 runs on two nodes, two Pods on each, each node bound to the class by its labels.
	summary := regexp.MustCompile(`(?m)^.*Class default/class2 runs on 2 node\(s\), 2 of them bound to it by ipp:\n` +
		`\s+(ipp-class2-[0-9a-f]+): Pods class2-\S+, class2-\S+; bound to the class: (.*)\n` +
		`\s+(ipp-class2-[0-9a-f]+): Pods class2-\S+, class2-\S+; bound to the class: (.*)$`)
	if m := summary.FindStringSubmatch(out.String()); m == nil {
		t.Errorf("No report of class2 on two nodes, two Pods each, both bound to it")
	} else {
		key := isolation.DefaultConfig().ClassKey("default", "class2")
		for _, labels := range []string{m[2], m[4]} {
			for _, want := range []string{isolation.ClassLabel + "=" + key, isolation.NamespaceLabel + "=default", isolation.ClassNameLabel + "=class2", isolation.NodeClassNodeLabel + "=default"} {
				if !strings.Contains(labels, want) {
					t.Errorf("Node of class2 has labels %q, want %s among them", labels, want)
				}
			}
		}
		if m[1] == m[3] {
			t.Errorf("class2 reported twice on node %s", m[1])
		}
	}
	for _, c := range []struct {
		what string
		re   *regexp.Regexp
		want int
	}{
		// Each example class's instance joined with a token of its own, approved by ipp.
		{"tokens minted", regexp.MustCompile(`(?m)^.*Join token ([a-z0-9]{6}) minted: IPP join token of instance ipp-class[012]-`), 4},
		{"CSRs approved by ipp", regexp.MustCompile(`(?m)^.*CSR \S+ of system:bootstrap:[a-z0-9]{6} approved \(IPPJoinTokenApproved\)`), 4},
		// Both NodeClasses were accepted by the API server.
		{"NodeClass default applied", regexp.MustCompile(`(?m)^.*Applied NodeClass default \(machineType e2-standard-4, isolation Class,`), 1},
		{"NodeClass metal applied", regexp.MustCompile(`(?m)^.*Applied NodeClass metal \(machineType c3-standard-192-metal, isolation Class, .*namespaceSelector tenant-tier=untrusted\)`), 1},
		// The controller created each class's instance with its NodeClass's machine type, as the
		// Compute emulator received it.
		{"instance of NodeClass default", regexp.MustCompile(`(?m)^.*Instance ipp-class0-\S+ created in zone \S+ for NodeClass default: machine type e2-standard-4 `), 1},
		{"instance of NodeClass metal", regexp.MustCompile(`(?m)^.*Instance ipp-class1-\S+ created in zone \S+ for NodeClass metal: machine type c3-standard-192-metal `), 1},
		{"instances of class2", regexp.MustCompile(`(?m)^.*Instance ipp-class2-\S+ created in zone \S+ for NodeClass default: machine type e2-standard-4 `), 2},
		// Each example Pod is gated at admission and placed by ipp's controller.
		{"Pods gated at admission", regexp.MustCompile(`(?m)^.*Pod \S+/class[012]-\S+ \(class class[012]\) gated \(ipp\.io/placement\), pinned to its class key`), 8},
		{"Pods placed by ipp", regexp.MustCompile(`(?m)^.*Pod \S+/class[012]-\S+ \(class class[012]\) placed by ipp on node ipp-class[012]-`), 8},
		// The webhook denies NodeClass metal to a namespace outside its namespaceSelector.
		{"denial of metal in namespace default", regexp.MustCompile(`(?m)^.*Webhook denied a Pod of namespace default labelled ipp\.io/node-class=metal .*NodeClass "metal" may not be used in namespace "default"`), 1},
		// The NodeClasses' status as `kubectl get nodeclasses` shows it: default has three nodes
		// (class0's and class2's two), two classes and six Pods; metal one node, one class and two
		// Pods; both Ready.
		{"kubectl get nodeclasses header", regexp.MustCompile(`(?m)^\s+NAME\s+NODES\s+CLASSES\s+PODS\s+WARM\s+WARM-SIZE\s+ISOLATION\s+READY\s+AGE$`), 1},
		{"status of NodeClass default", regexp.MustCompile(`(?m)^\s+default\s+3\s+2\s+6\s+0\s+<none>\s+Class\s+True\s+\S+$`), 1},
		{"status of NodeClass metal", regexp.MustCompile(`(?m)^\s+metal\s+1\s+1\s+2\s+0\s+<none>\s+Class\s+True\s+\S+$`), 1},
	} {
		if n := len(c.re.FindAllString(out.String(), -1)); n < c.want {
			t.Errorf("%d lines of %s, want at least %d", n, c.what, c.want)
		}
	}
}

// TestNeedsMoreThanOneNode: of the examples, only class2 needs more than one emulated node, so
// only it is left out under --placement=admission.
func TestNeedsMoreThanOneNode(t *testing.T) {
	objs, err := decodeExamples()
	if err != nil {
		t.Fatal(err)
	}
	var grows []string
	for _, obj := range objs {
		if d, ok := obj.(*appsv1.Deployment); ok && needsMoreThanOneNode(d) != "" {
			grows = append(grows, d.Name)
		}
	}
	if !slices.Equal(grows, []string{"class2"}) {
		t.Errorf("Examples that need more than one node: %v, want [class2]", grows)
	}
}
