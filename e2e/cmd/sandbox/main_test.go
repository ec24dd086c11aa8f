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
// examples run: it prints one export line first; both example NodeClasses are applied; the warm
// pool of NodeClass metal holds a Ready node bound to no class before the Deployments are
// created; class1 claims that node at once (its Pods run sooner than an instance boots) and a
// replacement warm node boots and becomes Ready; each other example Pod runs on a node of its
// class, whose instance the Compute emulator received with its NodeClass's machine type, placed
// there by ipp; class2, four Pods of 1.5 CPUs on nodes of 4, runs on two nodes, two Pods each,
// both bound to the class by its labels; the webhook denies NodeClass metal to namespace
// default; and the NodeClasses' status, printed as `kubectl get nodeclasses` shows it, counts
// the example Pods, nodes and the Ready warm node.
func TestSandbox(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	var out syncBuffer
	// A boot delay, so that a Pod on a claimed warm node is seen to run before any instance
	// could have booted for it.
	const bootDelay = 3 * time.Second
	err := run(ctx, options{bootDelay: bootDelay, idleTTL: time.Minute, workers: 1, examples: true, exitWhenRunning: true, dir: t.TempDir(), verbosity: 2, metricsAddress: "127.0.0.1:0", placement: isolation.PlacementController}, &out)
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
	// The warm pool of NodeClass metal: one node, Ready and bound to no class, before the
	// example Deployments are created.
	warmNode := ""
	warmReadyAt, class1AppliedAt := -1, -1
	warmReady := regexp.MustCompile(`^\[[ 0-9.]+s\] Warm pool of NodeClass metal ready: node (ipp-warm-[0-9a-f]+) booted, joined and Ready, bound to no class \(` +
		regexp.QuoteMeta(isolation.WarmLabel+"=true, "+isolation.NodeClassNodeLabel+"=metal; no "+isolation.ClassLabel+" label") + `\)`)
	for i, l := range lines {
		if m := warmReady.FindStringSubmatch(l); m != nil {
			if warmNode != "" {
				t.Errorf("A second warm node reported Ready before the examples: %s", l)
			}
			warmNode, warmReadyAt = m[1], i
		}
		if strings.Contains(l, "Applied Deployment tenant-a/class1 ") {
			class1AppliedAt = i
		}
	}
	if warmNode == "" {
		t.Fatalf("No line of the warm node of NodeClass metal Ready and bound to no class")
	}
	if class1AppliedAt < warmReadyAt {
		t.Errorf("Deployment class1 applied (line %d) before the warm pool was Ready (line %d)", class1AppliedAt, warmReadyAt)
	}
	// class0 and class2 run in namespace default on NodeClass default, on nodes booted for
	// them; class1 in tenant-a on NodeClass metal, on the warm node it claimed, sooner than an
	// instance boots.
	namespaceOf := map[string]string{"class0": "default", "class1": "tenant-a", "class2": "default"}
	running := regexp.MustCompile(`Pod (\S+)/(class[012])-\S+ \(class (class[012])\) running on (ipp-[a-z0-9]+-[0-9a-f]+), ([0-9.]+)s after its creation`)
	count := 0
	for _, l := range lines {
		m := running.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		count++
		if m[2] != m[3] || namespaceOf[m[3]] != m[1] {
			t.Errorf("Pod of %s in namespace %s: %s", m[3], m[1], l)
		}
		if m[3] != "class1" {
			if !strings.HasPrefix(m[4], "ipp-"+m[3]+"-") {
				t.Errorf("Pod of %s ran on %s, not on a node booted for it: %s", m[3], m[4], l)
			}
			continue
		}
		if m[4] != warmNode {
			t.Errorf("Pod of class1 ran on %s, not on the warm node %s: %s", m[4], warmNode, l)
		}
		if took, err := time.ParseDuration(m[5] + "s"); err != nil || took >= bootDelay {
			t.Errorf("Pod of class1 on the claimed warm node took %ss from creation to Running, want less than the boot delay %v: %s", m[5], bootDelay, l)
		}
	}
	if count != 8 {
		t.Errorf("%d example Pods reported running, want 8", count)
	}
	// The claim, and the replacement: a warm node other than the claimed one, booted for
	// NodeClass metal, Ready and bound to no class.
	replacement := regexp.MustCompile(`(?m)^\[[ 0-9.]+s\] Replacement warm node (ipp-warm-[0-9a-f]+) of NodeClass metal booted, joined and Ready, bound to no class \(` +
		regexp.QuoteMeta(isolation.WarmLabel+"=true, "+isolation.NodeClassNodeLabel+"=metal") + `\), Ready [0-9.]+s after the claim: the pool is back to warm\.size 1$`)
	if m := replacement.FindStringSubmatch(out.String()); m == nil {
		t.Errorf("No line of a replacement warm node of NodeClass metal Ready")
	} else if m[1] == warmNode {
		t.Errorf("The replacement warm node is the claimed one, %s", m[1])
	} else if !regexp.MustCompile(`(?m)^.*Instance ` + m[1] + ` created in zone \S+ for NodeClass metal: machine type c3-standard-192-metal `).MatchString(out.String()) {
		t.Errorf("No instance created for the replacement warm node %s", m[1])
	}
	q := regexp.QuoteMeta
	for _, c := range []struct {
		what string
		re   *regexp.Regexp
	}{
		{"Node claimed by class1", regexp.MustCompile(`(?m)^.*Node ` + warmNode + ` claimed from the warm pool by class tenant-a/class1 \(NodeClass metal\), no boot: warm label removed and class labels written in one patch: ` +
			q(isolation.ClassLabel+"="+isolation.DefaultConfig().ClassKey("tenant-a", "class1")+", "+isolation.NamespaceLabel+"=tenant-a, "+isolation.ClassNameLabel+"=class1, "+isolation.NodeClassNodeLabel+"=metal") + `$`)},
		{"ipp's Claimed Event", regexp.MustCompile(`(?m)^.*Normal Claimed on Node ` + warmNode + `: Warm node ` + warmNode + ` of NodeClass metal bound to class "class1" of namespace "tenant-a"; a replacement is started$`)},
		{"class1's claim at once", regexp.MustCompile(`(?m)^.*Class tenant-a/class1 claimed warm node ` + warmNode + ` of NodeClass metal at once: creation to Running class1-\S+ [0-9.]+s, class1-\S+ [0-9.]+s, no boot waited \(an instance takes --boot-delay 3s to register\)$`)},
		{"class1 on the warm node, bound to it", regexp.MustCompile(`(?m)^.*Class tenant-a/class1 runs on 1 node\(s\), 1 of them bound to it by ipp:\n\s+` + warmNode + `: Pods class1-\S+, class1-\S+; bound to the class: `)},
	} {
		if !c.re.MatchString(out.String()) {
			t.Errorf("No line of %s", c.what)
		}
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
		// Each instance (class0's, class2's two and the two warm ones) joined with a token of
		// its own, approved by ipp.
		{"tokens minted", regexp.MustCompile(`(?m)^.*Join token ([a-z0-9]{6}) minted: IPP join token of instance ipp-(class[02]|warm)-`), 5},
		{"CSRs approved by ipp", regexp.MustCompile(`(?m)^.*CSR \S+ of system:bootstrap:[a-z0-9]{6} approved \(IPPJoinTokenApproved\)`), 5},
		// Both NodeClasses were accepted by the API server.
		{"NodeClass default applied", regexp.MustCompile(`(?m)^.*Applied NodeClass default \(machineType e2-standard-4, isolation Class,`), 1},
		{"NodeClass metal applied", regexp.MustCompile(`(?m)^.*Applied NodeClass metal \(machineType c3-standard-192-metal, isolation Class, .*warm\.size 1, namespaceSelector tenant-tier=untrusted\)`), 1},
		// The controller created each class's instance with its NodeClass's machine type, as the
		// Compute emulator received it.
		{"instance of NodeClass default", regexp.MustCompile(`(?m)^.*Instance ipp-class0-\S+ created in zone \S+ for NodeClass default: machine type e2-standard-4 `), 1},
		// NodeClass metal: the warm node that class1 claimed and its replacement; none for
		// class1 itself.
		{"warm instances of NodeClass metal", regexp.MustCompile(`(?m)^.*Instance ipp-warm-\S+ created in zone \S+ for NodeClass metal: machine type c3-standard-192-metal `), 2},
		{"instances of class2", regexp.MustCompile(`(?m)^.*Instance ipp-class2-\S+ created in zone \S+ for NodeClass default: machine type e2-standard-4 `), 2},
		// Each example Pod is gated at admission and placed by ipp's controller.
		{"Pods gated at admission", regexp.MustCompile(`(?m)^.*Pod \S+/class[012]-\S+ \(class class[012]\) gated \(ipp\.io/placement\), pinned to its class key`), 8},
		{"Pods placed by ipp", regexp.MustCompile(`(?m)^.*Pod \S+/class[02]-\S+ \(class class[02]\) placed by ipp on node ipp-class[02]-`), 6},
		{"Pods of class1 placed by ipp on the warm node", regexp.MustCompile(`(?m)^.*Pod tenant-a/class1-\S+ \(class class1\) placed by ipp on node ` + warmNode + ` `), 2},
		// The webhook denies NodeClass metal to a namespace outside its namespaceSelector.
		{"denial of metal in namespace default", regexp.MustCompile(`(?m)^.*Webhook denied a Pod of namespace default labelled ipp\.io/node-class=metal .*NodeClass "metal" may not be used in namespace "default"`), 1},
		// The NodeClasses' status as `kubectl get nodeclasses` shows it: default has three nodes
		// (class0's and class2's two), two classes and six Pods, no warm pool (WARM-SIZE
		// empty, as kubectl shows a missing spec.warm.size); metal two nodes
		// (class1's claimed one and the replacement warm one), one class (class1, counted from
		// the class labels of the warm node it claimed), two Pods, one warm node Ready of
		// warm.size 1; both Ready.
		{"kubectl get nodeclasses header", regexp.MustCompile(`(?m)^\s+NAME\s+NODES\s+CLASSES\s+PODS\s+WARM\s+WARM-SIZE\s+ISOLATION\s+READY\s+AGE$`), 1},
		{"status of NodeClass default", regexp.MustCompile(`(?m)^\s+default\s+3\s+2\s+6\s+0\s+Class\s+True\s+\S+$`), 1},
		{"status of NodeClass metal", regexp.MustCompile(`(?m)^\s+metal\s+2\s+1\s+2\s+1\s+1\s+Class\s+True\s+\S+$`), 1},
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
