package controller

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	core "k8s.io/client-go/testing"
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
	f.pods, f.nodes = newInformerFactories(f.kube, f.cfg)
	c, err := newWithInformers(f.kube, f.pods.Core().V1().Pods(), f.nodes.Core().V1().Nodes(), f.provider, f.recorder, Options{
		Config:           f.cfg,
		IdleTTL:          testIdleTTL,
		ProviderResync:   testResync,
		Clock:            f.clock,
		MintJoinTokens:   true,
		JournalNamespace: testJournalNamespace,
		Issued:           func(id, node string) bool { return issued[id] == node },
	}.with(f))
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

	// The journal entry comes first, so that a crash after the Secret's creation leaves a record.
	secrets, err := f.kube.CoreV1().Secrets(metav1.NamespaceSystem).List(f.ctx, metav1.ListOptions{})
	if err != nil || len(secrets.Items) != 1 {
		t.Fatalf("Secrets in kube-system: %v, %v", secrets, err)
	}
	entry := `{"node":"` + n + `","minted":"2026-01-01T00:00:00Z","nodeClass":"default","namespace":"team","class":"a"}`
	key := f.cfg.ClusterName + "." + f.provider.specs[0].JoinTokenID
	diff(t, "kube actions", []string{
		"patch configmaps/" + JournalName + " merge " + mergePatch(map[string]any{"data": map[string]any{key: entry}}),
		"create configmaps",
		"create secrets",
	}, f.actions())
	diff(t, "journal", map[string]string{key: entry}, f.journalData())
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

// addToken adds what a controller of cluster leaves when it mints token id at minted: the
// journal entry and, with secret, the token's Secret.
func (f *fixture) addToken(cluster, id string, minted time.Time, secret bool) {
	f.t.Helper()
	if err := f.journalOf(cluster).record(f.ctx, id, journalValue{NodeName: "ipp-x"}, minted); err != nil {
		f.t.Fatal(err)
	}
	f.kube.ClearActions()
	if secret {
		f.addSecret(tokenSecret(f.t, id, cluster, minted))
	}
}

func TestOrphanJoinTokens(t *testing.T) {
	transient := cloudprovider.NewError(cloudprovider.KindTransient, "create", "Timeout", errors.New("timeout"))
	for _, tc := range []struct {
		name string
		// setup brings the fixture (minting tokens, at t0) to the moment of the List, and
		// returns the id of the token the List is about.
		setup func(f *fixture) string
		// wantForgotten: the List deletes the token's Secret (which may be gone already) and
		// removes its journal entry.
		wantForgotten bool
		// wantDeleted: the Secret was there, and the deletion is logged with wantReason.
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
				id := mintedToken(f)
				f.withTokens(map[string]string{}) // the restart forgets the creation in progress
				f.clock.Step(time.Minute)
				return id
			},
			wantForgotten: true,
			wantDeleted:   true,
			wantReason:    "no instance carries it and no creation in progress holds it",
		},
		{
			name: "recorded, then a crash before the Secret was created",
			setup: func(f *fixture) string {
				f.addToken(f.cfg.ClusterName, "aaaaaa", t0, false)
				f.clock.Step(time.Minute)
				return "aaaaaa"
			},
			wantForgotten: true,
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
				return mintedToken(f)
			},
		},
		{
			name: "token of a live instance",
			setup: func(f *fixture) string {
				f.provider.Add(cloudprovider.Instance{NodeName: f.nodeName("a"), State: cloudprovider.StateRunning, CreatedAt: t0, JoinTokenID: "aaaaaa"})
				f.addToken(f.cfg.ClusterName, "aaaaaa", t0, true)
				f.clock.Step(time.Minute)
				return "aaaaaa"
			},
		},
		{
			name: "token of a live instance, used",
			setup: func(f *fixture) string {
				// The approver deleted the Secret; the entry stays while the instance lives.
				f.provider.Add(cloudprovider.Instance{NodeName: f.nodeName("a"), State: cloudprovider.StateRunning, CreatedAt: t0, JoinTokenID: "aaaaaa"})
				f.addToken(f.cfg.ClusterName, "aaaaaa", t0, false)
				f.clock.Step(time.Minute)
				return "aaaaaa"
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
				return mintedToken(f)
			},
		},
		{
			name: "instance deleted behind IPP's back",
			setup: func(f *fixture) string {
				f.provider.Add(cloudprovider.Instance{NodeName: f.nodeName("a"), State: cloudprovider.StateRunning, CreatedAt: t0, JoinTokenID: "aaaaaa"})
				f.addToken(f.cfg.ClusterName, "aaaaaa", t0, true)
				f.list()
				f.provider.SetState(f.nodeName("a"), cloudprovider.StateTerminated)
				f.clock.Step(time.Minute)
				return "aaaaaa"
			},
			wantForgotten: true,
			wantDeleted:   true,
			wantReason:    "no instance carries it",
		},
		{
			name: "instance gone after its token was used",
			setup: func(f *fixture) string {
				f.provider.Add(cloudprovider.Instance{NodeName: f.nodeName("a"), State: cloudprovider.StateRunning, CreatedAt: t0, JoinTokenID: "aaaaaa"})
				f.addToken(f.cfg.ClusterName, "aaaaaa", t0, false)
				f.list()
				f.provider.SetState(f.nodeName("a"), cloudprovider.StateTerminated)
				f.clock.Step(time.Minute)
				return "aaaaaa"
			},
			wantForgotten: true,
		},
		{
			name: "token of another cluster",
			setup: func(f *fixture) string {
				f.addToken("other", "aaaaaa", t0, true)
				f.clock.Step(time.Minute)
				return "aaaaaa"
			},
		},
		{
			name: "minted while the List runs",
			setup: func(f *fixture) string {
				f.clock.Step(time.Minute)
				f.addToken(f.cfg.ClusterName, "aaaaaa", f.clock.Now(), true)
				return "aaaaaa"
			},
		},
		{
			name: "a bootstrap token not in the journal",
			setup: func(f *fixture) string {
				// kubeadm's, say: the controller knows only the tokens it recorded.
				f.addSecret(tokenSecret(f.t, "aaaaaa", f.cfg.ClusterName, t0))
				f.clock.Step(time.Minute)
				return "aaaaaa"
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.BufferLogs(true)))
			f.ctx = klog.NewContext(f.ctx, logger)
			f.withTokens(map[string]string{})
			id := tc.setup(f)
			f.actions()
			cluster := f.cfg.ClusterName
			if tc.name == "token of another cluster" {
				cluster = "other"
			}
			key := cluster + "." + id
			_, hadSecret := f.secrets()[jointoken.SecretName(id)]
			_, hadEntry := f.journalData()[key]

			f.list()

			var want []string
			if tc.wantForgotten {
				want = []string{
					"delete secrets/" + jointoken.SecretName(id),
					"patch configmaps/" + JournalName + " merge " + mergePatch(map[string]any{"data": map[string]any{key: nil}}),
				}
			}
			diff(t, "kube actions", want, f.actions())
			if _, kept := f.journalData()[key]; kept != (hadEntry && !tc.wantForgotten) {
				t.Errorf("journal entry %s kept = %v, want %v", key, kept, hadEntry && !tc.wantForgotten)
			}
			if _, kept := f.secrets()[jointoken.SecretName(id)]; kept != (hadSecret && !tc.wantDeleted) {
				t.Errorf("Secret kept = %v, want %v", kept, hadSecret && !tc.wantDeleted)
			}
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
	f.addToken(f.cfg.ClusterName, "aaaaaa", t0, true)
	f.list()
	diff(t, "kube actions of the List during which it was minted", []string(nil), f.actions())
	f.clock.Step(testResync)
	f.list()
	diff(t, "kube actions of the next List", []string{
		"delete secrets/" + jointoken.SecretName("aaaaaa"),
		"patch configmaps/" + JournalName + ` merge {"data":{"ipp.aaaaaa":null}}`,
	}, f.actions())
}

// TestOrphanJoinTokenDeleteFails checks that a token whose Secret could not be deleted stays in
// the journal, that the List still succeeds, and that the next List deletes it.
func TestOrphanJoinTokenDeleteFails(t *testing.T) {
	f := newFixture(t)
	f.withTokens(map[string]string{})
	f.addToken(f.cfg.ClusterName, "aaaaaa", t0, true)
	f.clock.Step(time.Minute)
	failed := false
	f.kube.PrependReactor("delete", "secrets", func(core.Action) (bool, runtime.Object, error) {
		if failed {
			return false, nil, nil
		}
		failed = true
		return true, nil, apierrors.NewServiceUnavailable("try later")
	})

	f.list()
	diff(t, "kube actions of the failed deletion", []string{"delete secrets/" + jointoken.SecretName("aaaaaa")}, f.actions())
	diff(t, "journal after the failed deletion", []string{"ipp.aaaaaa"}, slices.Sorted(maps.Keys(f.journalData())))

	f.clock.Step(testResync)
	f.list()
	diff(t, "kube actions of the next List", []string{
		"delete secrets/" + jointoken.SecretName("aaaaaa"),
		"patch configmaps/" + JournalName + ` merge {"data":{"ipp.aaaaaa":null}}`,
	}, f.actions())
	diff(t, "journal", map[string]string{}, f.journalData())
	diff(t, "Secrets", map[string]bool{}, f.secrets())
}

// TestControllerNeverReadsSecrets runs the life of join tokens (minted, used, deleted with their
// instance, orphaned by a crash and by an instance deleted behind IPP's back) and checks that the
// controller never gets, lists or watches a Secret: RBAC cannot grant that for IPP's tokens alone.
func TestControllerNeverReadsSecrets(t *testing.T) {
	f := newFixture(t)
	var reads []string
	f.kube.PrependReactor("*", "secrets", func(a core.Action) (bool, runtime.Object, error) {
		if v := a.GetVerb(); v != "create" && v != "delete" {
			reads = append(reads, v+" "+a.GetNamespace())
		}
		return false, nil, nil
	})
	f.kube.PrependWatchReactor("secrets", func(a core.Action) (bool, watch.Interface, error) {
		reads = append(reads, "watch "+a.GetNamespace())
		return false, nil, nil
	})
	issued := map[string]string{}
	f.withTokens(issued)
	a, b, c := f.nodeName("a"), f.nodeName("b"), f.nodeName("c")
	transient := cloudprovider.NewError(cloudprovider.KindTransient, "create", "Timeout", errors.New("timeout"))

	// a is created, joins with its token, is bound, and is deleted behind IPP's back.
	f.addPod(f.pod("pa", "a", t0))
	// b is created and reaped after its Pod goes.
	pb := f.addPod(f.pod("pb", "b", t0))
	// c's creation fails, and the controller restarts before it retries.
	f.addPod(f.pod("pc", "c", t0))
	f.list()
	f.mustSync(a)
	f.mustSync(b)
	f.provider.FailNext("create", transient)
	if _, err := f.sync(c); err == nil {
		t.Fatal("sync with a failing Create succeeded")
	}
	instA := f.liveInstances()[0]
	if instA.NodeName != a {
		instA = f.liveInstances()[1]
	}
	f.addNode(f.node(a, instA.ProviderID, t0))
	issued[instA.JoinTokenID] = a
	if err := f.kube.CoreV1().Secrets(metav1.NamespaceSystem).Delete(f.ctx, jointoken.SecretName(instA.JoinTokenID), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err) // as the approver does
	}
	f.mustSync(a)
	diff(t, "binding label", a, f.getNode(a).Labels[isolation.BindingLabel])

	f.withTokens(issued) // the restart
	f.deletePod(pb)
	f.clock.Step(testRegTimeout + time.Second)
	f.list()
	f.mustSync(b)
	f.provider.SetState(a, cloudprovider.StateTerminated)
	f.clock.Step(testResync)
	f.list()
	f.clock.Step(testResync)
	f.list()

	diff(t, "reads of Secrets", []string(nil), reads)
	for _, act := range f.kube.Actions() {
		if act.GetResource().Resource == "secrets" && act.GetVerb() != "create" && act.GetVerb() != "delete" {
			t.Errorf("action on Secrets: %v", act)
		}
	}
	diff(t, "Secrets left", map[string]bool{}, f.secrets())
	diff(t, "journal left", map[string]string{}, f.journalData())
}

// mintedToken returns the id of the one join token in the journal.
func mintedToken(f *fixture) string {
	f.t.Helper()
	data := f.journalData()
	if len(data) != 1 {
		f.t.Fatalf("journal %v, want one token", data)
	}
	for k := range data {
		_, id, _ := strings.Cut(k, ".")
		return id
	}
	return ""
}

func (f *fixture) addSecret(s *corev1.Secret) {
	f.t.Helper()
	if _, err := f.kube.CoreV1().Secrets(s.Namespace).Create(f.ctx, s, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
	f.kube.ClearActions()
}

// secrets returns the names of the Secrets in kube-system, from the clientset's tracker, so
// that the read is not among its actions.
func (f *fixture) secrets() map[string]bool {
	f.t.Helper()
	obj, err := f.kube.Tracker().List(corev1.SchemeGroupVersion.WithResource("secrets"), corev1.SchemeGroupVersion.WithKind("Secret"), metav1.NamespaceSystem)
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[string]bool{}
	for _, s := range obj.(*corev1.SecretList).Items {
		out[s.Name] = true
	}
	return out
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
	waitLists := f.pollInstances()
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

// TestRequestListCutsFailureBackoffShort: after failed Lists have grown the back-off, a request
// (a CSR waiting for a fresh List) starts a List failedListGap after the failed one, not after
// the whole back-off.
func TestRequestListCutsFailureBackoffShort(t *testing.T) {
	f := newFixture(t)
	waitLists := f.pollInstances()
	waitLists(1)
	// stepUntil moves the clock in small steps until the provider has been listed want times,
	// giving the resync loop a moment after each step, and returns how far the clock moved.
	stepUntil := func(want int) time.Duration {
		t.Helper()
		start := f.clock.Now()
		for f.provider.CallCount("list") < want {
			if f.clock.Since(start) > time.Minute {
				t.Fatalf("no List %d within a minute of the clock (%d Lists)", want, f.provider.CallCount("list"))
			}
			f.clock.Step(50 * time.Millisecond)
			_ = wait.PollUntilContextTimeout(f.ctx, time.Millisecond, 20*time.Millisecond, true, func(context.Context) (bool, error) {
				return f.provider.CallCount("list") >= want, nil
			})
		}
		return f.clock.Since(start)
	}
	unavailable := cloudprovider.NewError(cloudprovider.KindTransient, "list", "Unavailable", errors.New("503"))
	for range 3 {
		f.provider.FailNext("list", unavailable)
	}
	// Lists 2, 3 and 4 fail; the back-off after them grows to 1 s, 2 s and about 4 s.
	f.c.RequestList()
	stepUntil(2)
	after2, after3 := stepUntil(3), stepUntil(4)
	if after3 < after2+after2/2 {
		t.Errorf("the back-off after failed Lists did not grow: %v, then %v", after2, after3)
	}
	// A request now starts List 5 failedListGap after List 4, not after the whole back-off.
	f.c.RequestList()
	if took := stepUntil(5); took > 2*failedListGap {
		t.Errorf("a requested List came %v after a failed one, want about %v (not the back-off)", took, failedListGap)
	}
}

// pollInstances runs the controller's provider resync loop until the test ends, and returns a
// function that waits until the provider has been listed want times.
func (f *fixture) pollInstances() (waitLists func(want int)) {
	ctx, cancel := context.WithCancel(f.ctx)
	synced := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.c.pollInstances(ctx, synced)
	}()
	f.t.Cleanup(func() {
		cancel()
		<-done
	})
	<-synced
	return func(want int) {
		f.t.Helper()
		err := wait.PollUntilContextTimeout(ctx, time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
			return f.provider.CallCount("list") >= want, nil
		})
		if err != nil {
			f.t.Fatalf("waiting for List %d: %v (%d Lists)", want, err, f.provider.CallCount("list"))
		}
	}
}
