package controller

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"

	"github.com/ipp-project/ipp/pkg/approver"
	"github.com/ipp-project/ipp/pkg/cloudprovider"
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
	if got, ok, fresh := f.c.NodeOfJoinToken(id, t0); !ok || !fresh || got != n {
		t.Errorf("NodeOfJoinToken(%s) = %q, %v, %v; want %s", id, got, ok, fresh, n)
	}
	if _, ok, _ := f.c.NodeOfJoinToken("zzzzzz", t0); ok {
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

// tokenSecret returns the Secret of a join token of cluster, created at created.
func tokenSecret(t *testing.T, id, cluster string, created time.Time) *corev1.Secret {
	t.Helper()
	s, err := jointoken.Secret(jointoken.Token{ID: id, Secret: "0123456789abcdef"}, cluster, "ipp-x", created.Add(testRegTimeout))
	if err != nil {
		t.Fatal(err)
	}
	s.CreationTimestamp = metav1.NewTime(created)
	return s
}

func TestOrphanJoinTokens(t *testing.T) {
	transient := cloudprovider.NewError(cloudprovider.KindTransient, "create", "Timeout", errors.New("timeout"))
	for _, tc := range []struct {
		name string
		// setup brings the fixture (minting tokens, at t0) to the moment of the List, and
		// returns the name of the token Secret the List is about.
		setup       func(f *fixture) string
		wantDeleted bool
		wantReason  string
	}{
		{
			name: "minted, then a crash before Create",
			setup: func(f *fixture) string {
				f.addPod(f.pod("p1", "a", t0))
				f.list()
				f.provider.FailNext("create", transient)
				if _, err := f.sync(f.nodeName("a")); err == nil {
					f.t.Fatal("sync with a failing Create succeeded")
				}
				name := mintedSecret(f)
				f.withTokens(map[string]string{}) // the restart forgets the creation in progress
				f.clock.Step(time.Minute)
				return name
			},
			wantDeleted: true,
			wantReason:  "no instance carries it and no creation in progress holds it",
		},
		{
			name: "creation in flight",
			setup: func(f *fixture) string {
				f.addPod(f.pod("p1", "a", t0))
				f.list()
				f.provider.FailNext("create", transient)
				if _, err := f.sync(f.nodeName("a")); err == nil {
					f.t.Fatal("sync with a failing Create succeeded")
				}
				f.clock.Step(time.Minute)
				return mintedSecret(f)
			},
		},
		{
			name: "token of a live instance",
			setup: func(f *fixture) string {
				f.provider.Add(cloudprovider.Instance{NodeName: f.nodeName("a"), State: cloudprovider.StateRunning, CreatedAt: t0, JoinTokenID: "aaaaaa"})
				f.addSecret(tokenSecret(f.t, "aaaaaa", f.cfg.ClusterName, t0))
				f.clock.Step(time.Minute)
				return jointoken.SecretName("aaaaaa")
			},
		},
		{
			name: "token of a live instance created by this controller",
			setup: func(f *fixture) string {
				f.addPod(f.pod("p1", "a", t0))
				f.list()
				f.mustSync(f.nodeName("a"))
				f.withTokens(map[string]string{}) // forget the creation: only the instance holds it
				f.clock.Step(time.Minute)
				return mintedSecret(f)
			},
		},
		{
			name: "instance deleted behind IPP's back",
			setup: func(f *fixture) string {
				f.provider.Add(cloudprovider.Instance{NodeName: f.nodeName("a"), State: cloudprovider.StateRunning, CreatedAt: t0, JoinTokenID: "aaaaaa"})
				f.addSecret(tokenSecret(f.t, "aaaaaa", f.cfg.ClusterName, t0))
				f.list()
				f.provider.SetState(f.nodeName("a"), cloudprovider.StateTerminated)
				f.clock.Step(time.Minute)
				return jointoken.SecretName("aaaaaa")
			},
			wantDeleted: true,
			wantReason:  "no instance carries it",
		},
		{
			name: "token of another cluster",
			setup: func(f *fixture) string {
				f.addSecret(tokenSecret(f.t, "aaaaaa", "other", t0))
				f.clock.Step(time.Minute)
				return jointoken.SecretName("aaaaaa")
			},
		},
		{
			name: "minted while the List runs",
			setup: func(f *fixture) string {
				f.clock.Step(time.Minute)
				f.addSecret(tokenSecret(f.t, "aaaaaa", f.cfg.ClusterName, f.clock.Now()))
				return jointoken.SecretName("aaaaaa")
			},
		},
		{
			name: "a bootstrap token that is not IPP's",
			setup: func(f *fixture) string {
				s := tokenSecret(f.t, "aaaaaa", f.cfg.ClusterName, t0)
				delete(s.Labels, jointoken.LabelManagedBy)
				f.addSecret(s)
				f.clock.Step(time.Minute)
				return s.Name
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.BufferLogs(true)))
			f.ctx = klog.NewContext(f.ctx, logger)
			f.withTokens(map[string]string{})
			name := tc.setup(f)
			f.actions()

			f.list()

			var want []string
			if tc.wantDeleted {
				want = []string{"delete secrets/" + name}
			}
			diff(t, "kube actions", want, f.actions())
			logs := logger.GetSink().(ktesting.Underlier).GetBuffer().String()
			if logged := strings.Contains(logs, "Deleted orphan join token"); logged != tc.wantDeleted {
				t.Errorf("logged a deletion = %v, want %v; logs:\n%s", logged, tc.wantDeleted, logs)
			}
			if tc.wantDeleted && !strings.Contains(logs, tc.wantReason) {
				t.Errorf("logs do not give the reason %q:\n%s", tc.wantReason, logs)
			}
		})
	}
}

// TestOrphanJoinTokenMintedDuringList checks that a token minted while a List ran is kept by that
// List and deleted by the next, once nothing holds it.
func TestOrphanJoinTokenMintedDuringList(t *testing.T) {
	f := newFixture(t)
	f.withTokens(map[string]string{})
	f.addSecret(tokenSecret(t, "aaaaaa", f.cfg.ClusterName, t0))
	f.list()
	diff(t, "kube actions of the List during which it was minted", []string(nil), f.actions())
	f.clock.Step(testResync)
	f.list()
	diff(t, "kube actions of the next List", []string{"delete secrets/" + jointoken.SecretName("aaaaaa")}, f.actions())
}

// mintedSecret returns the name of the one join token Secret in kube-system.
func mintedSecret(f *fixture) string {
	f.t.Helper()
	secrets, err := f.kube.CoreV1().Secrets(metav1.NamespaceSystem).List(f.ctx, metav1.ListOptions{})
	if err != nil || len(secrets.Items) != 1 {
		f.t.Fatalf("Secrets in kube-system: %v, %v", secrets, err)
	}
	return secrets.Items[0].Name
}

func (f *fixture) addSecret(s *corev1.Secret) {
	f.t.Helper()
	if _, err := f.kube.CoreV1().Secrets(s.Namespace).Create(f.ctx, s, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
	f.kube.ClearActions()
}

// The approver's view of the instances is the controller.
var _ approver.Instances = (*Controller)(nil)

type nodeOfJoinToken struct {
	NodeName  string
	OK, Fresh bool
}

// TestNodeOfJoinTokenFresh checks that the approver's view of a join token is fresh only from a
// List that started at or after notBefore, and that such a List sees an instance deleted behind
// the controller's back.
func TestNodeOfJoinTokenFresh(t *testing.T) {
	f := newFixture(t)
	f.withTokens(map[string]string{})
	n := f.nodeName("a")
	f.provider.Add(cloudprovider.Instance{NodeName: n, State: cloudprovider.StateRunning, CreatedAt: t0, JoinTokenID: "aaaaaa"})
	ask := func(notBefore time.Time) nodeOfJoinToken {
		name, ok, fresh := f.c.NodeOfJoinToken("aaaaaa", notBefore)
		return nodeOfJoinToken{name, ok, fresh}
	}

	diff(t, "before any List", nodeOfJoinToken{}, ask(t0.Add(-time.Hour)))
	f.list() // started at t0
	diff(t, "List started at notBefore", nodeOfJoinToken{n, true, true}, ask(t0))
	diff(t, "List started before notBefore", nodeOfJoinToken{}, ask(t0.Add(time.Nanosecond)))

	// The instance is deleted behind the controller's back; its CSR is created a second later.
	f.clock.Step(time.Second)
	f.provider.SetState(n, cloudprovider.StateTerminated)
	csrCreated := f.clock.Now()
	diff(t, "the List before the deletion", nodeOfJoinToken{}, ask(csrCreated))
	f.list() // started at csrCreated
	diff(t, "a List that started after the CSR", nodeOfJoinToken{"", false, true}, ask(csrCreated))
}

// TestRequestList checks that RequestList makes the resync loop List at once, without the
// resync period passing on the clock.
func TestRequestList(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(f.ctx)
	synced := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.c.pollInstances(ctx, synced)
	}()
	defer func() {
		cancel()
		<-done
	}()
	<-synced
	waitLists := func(want int) {
		t.Helper()
		err := wait.PollUntilContextTimeout(ctx, time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
			return f.provider.CallCount("list") >= want, nil
		})
		if err != nil {
			t.Fatalf("waiting for List %d: %v (%d Lists)", want, err, f.provider.CallCount("list"))
		}
	}
	waitLists(1)
	f.c.RequestList()
	waitLists(2)
	f.c.RequestList()
	waitLists(3)
	// No clock step happened: every List after the first was requested.
	diff(t, "clock", t0, f.clock.Now())
}

// TestNewTokenHasNewKey: a creation retried with a replacement token (the first one had used
// half its life) is sent with a new idempotency key, since the cloud refuses a key it saw with
// other user data (EC2: IdempotentParameterMismatch), and the old token is deleted.
func TestNewTokenHasNewKey(t *testing.T) {
	f := newFixture(t)
	f.withTokens(map[string]string{})
	n := f.nodeName("a")
	f.addPod(f.pod("p1", "a", t0))
	f.list()
	f.provider.FailNext("create", cloudprovider.NewError(cloudprovider.KindTransient, "create", "Timeout", errors.New("reply lost")))
	if _, err := f.sync(n); err == nil {
		t.Fatal("sync with a failing Create succeeded")
	}
	first, _ := f.c.mintedToken(f.c.nodeStateOf(n))
	if first == nil {
		t.Fatal("no token minted for the failed creation")
	}
	// Still in the same registration-timeout epoch, but past half the token's life.
	f.clock.Step(testRegTimeout/2 + time.Second)
	f.mustSync(n)
	var keys []string
	for _, c := range f.provider.Calls() {
		if c.Op == "create" {
			keys = append(keys, c.Key)
		}
	}
	if len(keys) != 2 || keys[0] == keys[1] {
		t.Errorf("Create keys %q: want two, the retry with a new token under a new key", keys)
	}
	if _, err := f.kube.CoreV1().Secrets(metav1.NamespaceSystem).Get(f.ctx, jointoken.SecretName(first.ID), metav1.GetOptions{}); err == nil {
		t.Errorf("the replaced token %s still exists", first.ID)
	}
}
