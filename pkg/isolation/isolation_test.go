package isolation

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
)

// TestNodeNameGolden pins the mapping from (cluster, scope, namespace, class) to a dedicated node
// name. If this test fails, an upgrade would move classes to new nodes: do not update the golden
// values without a migration plan.
func TestNodeNameGolden(t *testing.T) {
	tests := []struct {
		cluster   string
		scope     Scope
		namespace string
		class     string
		want      string
	}{
		{"ipp", ScopeNamespace, "default", "class0", "ipp-class0-cb543558de22"},
		{"ipp", ScopeNamespace, "default", "class1", "ipp-class1-d49a56a7aa4f"},
		{"ipp", ScopeNamespace, "team-a", "class0", "ipp-class0-1b5442993e86"},
		{"ipp", ScopeCluster, "default", "class0", "ipp-class0-38d61b2b6db5"},
		{"prod-eu", ScopeNamespace, "default", "class0", "ipp-class0-776ea6a95a42"},
		{"ipp", ScopeNamespace, "default", "My.Class_A", "ipp-my-class-a-70020435c168"},
		{"ipp", ScopeNamespace, "default", "---", "ipp-class-23ebf98da927"},
		{"ipp", ScopeNamespace, "default", strings.Repeat("a", 63), "ipp-" + strings.Repeat("a", 46) + "-fa4d3723f255"},
	}
	for _, tt := range tests {
		t.Run(tt.cluster+"/"+string(tt.scope)+"/"+tt.namespace+"/"+tt.class, func(t *testing.T) {
			got := NodeName(tt.cluster, tt.scope, tt.namespace, tt.class)
			if got != tt.want {
				t.Errorf("NodeName(%q, %q, %q, %q) = %q, want %q", tt.cluster, tt.scope, tt.namespace, tt.class, got, tt.want)
			}
		})
	}
}

func TestNodeNameIsValidAndDistinct(t *testing.T) {
	classes := []string{"a", "A", "a.b", "a_b", "a-b", "a--b", "-a", "a-", "0", "Z9", ".", "_",
		strings.Repeat("x", 63), strings.Repeat("x", 62) + "y", strings.Repeat("A.", 31) + "B",
		strings.Repeat("a", 46) + "-b", strings.Repeat("a", 46) + "-c"}
	namespaces := []string{"default", "team-a", "team-b"}
	seen := map[string]string{}
	for _, scope := range []Scope{ScopeNamespace, ScopeCluster} {
		for _, ns := range namespaces {
			for _, c := range classes {
				name := NodeName("ipp", scope, ns, c)
				if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
					t.Errorf("NodeName(%q, %q) = %q is not a DNS-1123 label: %v", ns, c, name, errs)
				}
				key := string(scope) + "/" + ns + "/" + c
				if scope == ScopeCluster {
					key = string(scope) + "/" + c
				}
				if other, ok := seen[name]; ok && other != key {
					t.Errorf("NodeName collision: %s and %s both give %q", other, key, name)
				}
				seen[name] = key
			}
		}
	}
	if NodeName("a", ScopeCluster, "x", "c") == NodeName("b", ScopeCluster, "x", "c") {
		t.Errorf("different clusters gave the same node name")
	}
	if NodeName("a", ScopeCluster, "x", "c") != NodeName("a", ScopeCluster, "y", "c") {
		t.Errorf("cluster scope depends on the namespace")
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{name: "default", mutate: func(*Config) {}},
		{name: "autoscaler", mutate: func(c *Config) { c.Mode = ModeAutoscaler }},
		{name: "bad mode", mutate: func(c *Config) { c.Mode = "fast" }, wantErr: `invalid --mode "fast": must be one of dedicated, autoscaler`},
		{name: "bad scope", mutate: func(c *Config) { c.ClassScope = "pod" }, wantErr: `invalid --class-scope "pod": must be one of namespace, cluster`},
		{name: "bad pod label", mutate: func(c *Config) { c.PodLabel = "a b" }, wantErr: `invalid --pod-label "a b"`},
		{name: "bad node label", mutate: func(c *Config) { c.NodeLabel = "" }, wantErr: `invalid --node-label ""`},
		{name: "bad taint", mutate: func(c *Config) { c.NodeTaint = "-x" }, wantErr: `invalid --node-taint "-x"`},
		{name: "empty cluster", mutate: func(c *Config) { c.ClusterName = "" }, wantErr: `invalid --cluster-name: must not be empty`},
		{name: "bad cluster", mutate: func(c *Config) { c.ClusterName = "Prod" }, wantErr: `invalid --cluster-name "Prod"`},
		{name: "bad exempt", mutate: func(c *Config) { c.ExemptNamespaces = sets.New("Kube") }, wantErr: `invalid --exempt-namespaces entry "Kube"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mutate(&c)
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.wantErr)):
				t.Fatalf("Validate() = %v, want an error starting with %q", err, tt.wantErr)
			}
		})
	}
}

// TestClassKeyGolden pins the class key: changing it would unbind every class from its nodes on
// upgrade.
func TestClassKeyGolden(t *testing.T) {
	for _, tt := range []struct {
		scope            Scope
		namespace, class string
	}{
		{ScopeNamespace, "default", "class0"},
		{ScopeNamespace, "team-a", "class0"},
		{ScopeCluster, "team-a", "class0"},
		{ScopeNamespace, "default", strings.Repeat("a", 63)},
		{ScopeNamespace, "default", "---"},
	} {
		got := ClassKey("ipp", tt.scope, tt.namespace, tt.class)
		if errs := validation.IsValidLabelValue(got); len(errs) > 0 {
			t.Errorf("ClassKey(%q, %q) = %q, not a label value: %v", tt.namespace, tt.class, got, errs)
		}
		hexPart := got[strings.LastIndexByte(got, '-')+1:]
		if len(hexPart) < 32 {
			t.Errorf("ClassKey(%q, %q) = %q holds %d bits of hash, want at least 128", tt.namespace, tt.class, got, 4*len(hexPart))
		}
	}
	if got, want := ClassKey("ipp", ScopeNamespace, "default", "class0"), "class0-85be5d4217f9e2d35e2a617d7a845831"; got != want {
		t.Errorf("ClassKey golden = %q, want %q", got, want)
	}
	if a, b := ClassKey("ipp", ScopeNamespace, "a", "x"), ClassKey("ipp", ScopeNamespace, "b", "x"); a == b {
		t.Errorf("two namespaces share the class key %q", a)
	}
	if a, b := ClassKey("ipp", ScopeCluster, "a", "x"), ClassKey("ipp", ScopeCluster, "b", "x"); a != b {
		t.Errorf("cluster scope: %q != %q", a, b)
	}
}

func TestInstanceName(t *testing.T) {
	r := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	for _, class := range []string{"a", strings.Repeat("x", 63), "My.Class", "---"} {
		got := InstanceName(class, r)
		if errs := validation.IsDNS1123Label(got); len(errs) > 0 {
			t.Errorf("InstanceName(%q) = %q: %v", class, got, errs)
		}
		if !strings.HasSuffix(got, "-0102030405060708") {
			t.Errorf("InstanceName(%q) = %q, want the random suffix", class, got)
		}
	}
}
