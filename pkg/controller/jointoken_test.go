package controller

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/jointoken"
)

// withTokens rebuilds the fixture's controller minting join tokens, with issued as the record
// of approved CSRs.
func (f *fixture) withTokens(issued map[string]string) {
	f.t.Helper()
	f.pods, f.nodes = NewInformerFactories(f.kube, f.cfg)
	c, err := New(f.kube, f.pods.Core().V1().Pods(), f.nodes.Core().V1().Nodes(), f.provider, f.recorder, Options{
		Config:         f.cfg,
		IdleTTL:        testIdleTTL,
		ProviderResync: testResync,
		Clock:          f.clock,
		MintJoinTokens: true,
		Issued:         func(id, node string) bool { return issued[id] == node },
	})
	if err != nil {
		f.t.Fatalf("New: %v", err)
	}
	f.t.Cleanup(c.queue.ShutDown)
	f.c = c
	f.refresh()
}

func TestJoinTokenMintedBeforeCreate(t *testing.T) {
	f := newFixture(t)
	issued := map[string]string{}
	f.withTokens(issued)
	n := f.nodeName("a")
	f.addPod(f.pod("p1", "a", t0))
	f.list()
	f.mustSync(n)
	f.events()

	acts := f.actions()
	if len(acts) != 1 || !strings.HasPrefix(acts[0], "create secrets") {
		t.Fatalf("kube actions %q, want one Secret create", acts)
	}
	secrets, err := f.kube.CoreV1().Secrets(metav1.NamespaceSystem).List(f.ctx, metav1.ListOptions{})
	if err != nil || len(secrets.Items) != 1 {
		t.Fatalf("Secrets in kube-system: %v, %v", secrets, err)
	}
	s := secrets.Items[0]
	id, ok := jointoken.IDOfSecret(&s)
	if !ok || s.Type != corev1.SecretTypeBootstrapToken || s.StringData["expiration"] != t0.Add(testRegTimeout).Format(time.RFC3339) {
		t.Fatalf("minted Secret %+v", s)
	}
	diff(t, "extra groups", jointoken.Group+","+jointoken.ClusterGroup(f.cfg.ClusterName), s.StringData["auth-extra-groups"])
	diff(t, "cluster label", f.cfg.ClusterName, s.Labels[jointoken.LabelCluster])
	spec := f.provider.specs[0]
	diff(t, "token id in the spec", id, spec.JoinTokenID)
	diff(t, "token in the spec", id+"."+s.StringData["token-secret"], spec.JoinToken)
	inst := f.liveInstances()[0]
	diff(t, "token id on the instance", id, inst.JoinTokenID)
	if got, ok, synced := f.c.NodeOfJoinToken(id); !ok || !synced || got != n {
		t.Errorf("NodeOfJoinToken(%s) = %q, %v, %v; want %s", id, got, ok, synced, n)
	}
	if _, ok, _ := f.c.NodeOfJoinToken("zzzzzz"); ok {
		t.Error("NodeOfJoinToken of an unknown token found an instance")
	}

	// A Node with the instance's providerID but no certificate issued with its token is not bound.
	f.clock.Step(time.Minute)
	f.addNode(f.node(n, inst.ProviderID, f.clock.Now()))
	after := f.mustSync(n)
	diff(t, "kube actions without credentials", []string(nil), f.actions())
	diff(t, "events without credentials", []string{"Warning UntrustedNode"}, f.events())
	if after <= 0 || after > credentialsRecheck {
		t.Errorf("requeue after %v, want within %v", after, credentialsRecheck)
	}
	if _, ok := f.getNode(n).Labels[isolation.BindingLabel]; ok {
		t.Fatal("bound a Node whose credentials were not issued for its instance")
	}
	// A certificate issued with the token for another name does not count either.
	issued[id] = "someone-else"
	f.mustSync(n)
	diff(t, "kube actions with another name's credentials", []string(nil), f.actions())

	// Once the instance's CSR is approved for the Node's name, it is bound.
	issued[id] = n
	f.mustSync(n)
	diff(t, "binding label", n, f.getNode(n).Labels[isolation.BindingLabel])
}

func TestJoinTokenDeletedWithInstance(t *testing.T) {
	f := newFixture(t)
	f.withTokens(map[string]string{})
	n := f.nodeName("a")
	p := f.addPod(f.pod("p1", "a", t0))
	f.list()
	f.mustSync(n)
	f.actions()
	id := f.liveInstances()[0].JoinTokenID
	f.deletePod(p)
	f.clock.Step(testRegTimeout + time.Second)
	f.mustSync(n)

	diff(t, "kube actions", []string{"delete secrets/" + jointoken.SecretName(id)}, f.actions())
	diff(t, "live instances", 0, len(f.liveInstances()))
}
