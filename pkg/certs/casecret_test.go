package certs

import (
	"context"
	"crypto/x509"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/klog/v2/ktesting"
	clocktesting "k8s.io/utils/clock/testing"
)

// dataKeys returns the keys of a Secret's data, sorted.
func dataKeys(s *corev1.Secret) []string {
	var keys []string
	for k := range s.Data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// secretGets returns the names of the Secrets that the actions read, wrote or listed by name.
func secretActions(client *fake.Clientset) []string {
	var out []string
	for _, a := range client.Actions() {
		if a.GetResource().Resource != "secrets" {
			continue
		}
		switch a := a.(type) {
		case k8stesting.GetAction:
			out = append(out, a.GetVerb()+" "+a.GetName())
		case k8stesting.CreateAction:
			m, _ := meta.Accessor(a.GetObject())
			out = append(out, a.GetVerb()+" "+m.GetName())
		case k8stesting.UpdateAction:
			m, _ := meta.Accessor(a.GetObject())
			out = append(out, a.GetVerb()+" "+m.GetName())
		case k8stesting.ListAction:
			out = append(out, a.GetVerb()+" "+a.GetListRestrictions().Fields.String())
		case k8stesting.WatchAction:
			out = append(out, a.GetVerb()+" "+a.GetWatchRestrictions().Fields.String())
		default:
			out = append(out, a.GetVerb())
		}
	}
	return out
}

// checkServedTrusted checks that every webhook's caBundle trusts what m serves, and that the
// serving Secret has no CA key.
func checkServedTrusted(t *testing.T, client *fake.Clientset, now time.Time, managers ...*Manager) {
	t.Helper()
	secret := getSecret(t, client)
	if _, ok := secret.Data[KeyCAKey]; ok {
		t.Fatalf("the serving Secret holds %s", KeyCAKey)
	}
	for _, m := range managers {
		leaf := served(t, m, secret, now)
		for i, bundle := range bundles(t, client) {
			roots := x509.NewCertPool()
			roots.AppendCertsFromPEM(bundle)
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, DNSName: "ipp.ipp-system.svc"}); err != nil {
				t.Fatalf("webhook %d's caBundle does not trust the served certificate: %v", i, err)
			}
		}
	}
}

// stepUntilOneCA syncs m every 20 minutes of the fake clock, checking trust at each step, until
// the bundle holds ca alone and serving is signed by it.
func stepUntilOneCA(t *testing.T, ctx context.Context, clk *clocktesting.FakeClock, client *fake.Clientset, m *Manager, ca *x509.Certificate) {
	t.Helper()
	for range 30 {
		st := decodeServing(getSecret(t, client).Data)
		if len(st.trusted) == 1 && st.trusted[0].Equal(ca) && signedBy(st.serving.cert, ca) {
			return
		}
		clk.Step(20 * time.Minute)
		if _, err := m.Sync(ctx); err != nil {
			t.Fatalf("Sync at t0+%v: %v", clk.Since(t0), err)
		}
		checkServedTrusted(t, client, clk.Now(), m)
	}
	t.Fatalf("ten hours on, the bundle still does not hold the new CA alone")
}

// TestManagerKeepsCAKeyApart checks that the CA's private key is only in the CA Secret, that the
// serving Secret (the one replicas watch and anything may mount) holds only what serving needs,
// and that the CA Secret is read only when something is signed, and never listed or watched.
func TestManagerKeepsCAKeyApart(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	clk := clocktesting.NewFakeClock(t0)
	client := newClient(webhookObjects()...)
	m := newTestManager(t, client, testOptions(clk))
	if _, err := m.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	serving := getSecret(t, client)
	if diff := cmp.Diff([]string{KeyCABundle, KeyServingCert, KeyServingKey}, dataKeys(serving)); diff != "" {
		t.Errorf("serving Secret keys (-want +got):\n%s", diff)
	}
	caSecret := getCASecret(t, client)
	if diff := cmp.Diff([]string{KeyCABundle, KeyCAKey}, dataKeys(caSecret)); diff != "" {
		t.Errorf("CA Secret keys (-want +got):\n%s", diff)
	}
	if caSecret.Type != corev1.SecretTypeOpaque {
		t.Errorf("CA Secret type %s, want %s", caSecret.Type, corev1.SecretTypeOpaque)
	}
	if ca := caOf(t, client); !ca.cert.Equal(pemCertsOf(t, serving.Data[KeyCABundle])[0]) {
		t.Errorf("the CA Secret's CA is not the bundle's signing CA")
	}
	checkServedTrusted(t, client, clk.Now(), m)

	// Nothing due: the CA Secret is not read.
	client.ClearActions()
	if _, err := m.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if got := secretActions(client); !slices.Equal(got, []string{"get " + DefaultSecretName}) {
		t.Errorf("idle sync: Secret actions %q, want only a get of the serving Secret", got)
	}

	// A renewal reads it, to sign, and writes only the serving Secret.
	first := served(t, m, serving, clk.Now())
	clk.SetTime(renewAt(first))
	client.ClearActions()
	if _, err := m.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	want := []string{"get " + DefaultSecretName, "get " + DefaultCASecretName, "update " + DefaultSecretName}
	if got := secretActions(client); !slices.Equal(got, want) {
		t.Errorf("renewal: Secret actions %q, want %q", got, want)
	}
	if served(t, m, getSecret(t, client), clk.Now()).Equal(first) {
		t.Errorf("the serving certificate was not renewed")
	}
	checkServedTrusted(t, client, clk.Now(), m)

	// Run watches the serving Secret alone, by name.
	runCtx, cancel := context.WithCancel(ctx)
	client.ClearActions()
	other := newTestManager(t, client, testOptions(clk))
	done := make(chan error, 1)
	go func() { done <- other.Run(runCtx) }()
	waitCtx, waitCancel := context.WithTimeout(ctx, 30*time.Second)
	defer waitCancel()
	if err := waitServing(waitCtx, other); err != nil {
		t.Fatalf("waiting for a serving certificate: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	var watched []string
	for _, a := range secretActions(client) {
		if strings.HasPrefix(a, "list") || strings.HasPrefix(a, "watch") {
			watched = append(watched, a)
		}
		if strings.Contains(a, DefaultCASecretName) {
			t.Errorf("Run with nothing due touched the CA Secret: %q", a)
		}
	}
	if len(watched) == 0 {
		t.Errorf("Run did not list or watch the serving Secret")
	}
	for _, a := range watched {
		if !strings.HasSuffix(a, " metadata.name="+DefaultSecretName) {
			t.Errorf("Run's informer did %q, want list and watch of the serving Secret by name only", a)
		}
	}
}

// TestManagerMigratesCombinedSecret upgrades from a serving Secret of the combined format, with
// ca.key beside the serving key: the key is copied to the CA Secret first, stays in the serving
// Secret for the rotation overlap so that replicas of the earlier version keep finding it, and is
// then removed, with nothing re-issued.
func TestManagerMigratesCombinedSecret(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	clk := clocktesting.NewFakeClock(t0)
	opts := testOptions(clk)
	old, _, _, err := plan(newTestManager(t, fake.NewClientset(), opts).cfg, nil, t0, nil)
	if err != nil {
		t.Fatal(err)
	}
	combined := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: DefaultSecretName, Namespace: "ipp-system", ResourceVersion: "1"},
		Type:       corev1.SecretTypeTLS,
		Data:       old.encode(),
	}
	client := newClient(append(webhookObjects(), combined)...)
	m := newTestManager(t, client, opts)
	var changes []string
	m.onIssue = func(c []string) { changes = append(changes, c...) }

	// An earlier-version replica reads the serving Secret as one state with its key; it must
	// find nothing to do.
	oldReplicaIdle := func() {
		t.Helper()
		st := decodeState(getSecret(t, client).Data)
		if st.ca == nil {
			t.Fatalf("t0+%v: a replica of the earlier version finds no CA key in the serving Secret", clk.Since(t0))
		}
		if _, cs, _, err := plan(m.cfg, st, clk.Now(), func(*x509.Certificate) bool { return true }); err != nil || len(cs) != 0 {
			t.Fatalf("t0+%v: a replica of the earlier version would change %q (%v)", clk.Since(t0), changeStrings(cs), err)
		}
	}

	clk.Step(time.Minute)
	if _, err := m.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if got := caOf(t, client); string(got.keyPEM) != string(old.ca.keyPEM) || !got.cert.Equal(old.ca.cert) {
		t.Fatalf("the CA Secret does not hold the combined Secret's CA and key")
	}
	serving := getSecret(t, client)
	if string(serving.Data[KeyCAKey]) != string(old.ca.keyPEM) {
		t.Errorf("ca.key left the serving Secret before the overlap")
	}
	movedAt := serving.Annotations[AnnotationCAKeyMovedAt]
	if movedAt != clk.Now().UTC().Format(time.RFC3339) {
		t.Errorf("annotation %s = %q, want the time of the copy", AnnotationCAKeyMovedAt, movedAt)
	}
	oldReplicaIdle()

	clk.Step(opts.Overlap - time.Second)
	if _, err := m.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if _, ok := getSecret(t, client).Data[KeyCAKey]; !ok {
		t.Errorf("ca.key left the serving Secret before the overlap")
	}
	oldReplicaIdle()

	clk.Step(time.Second)
	if _, err := m.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	serving = getSecret(t, client)
	if diff := cmp.Diff([]string{KeyCABundle, KeyServingCert, KeyServingKey}, dataKeys(serving)); diff != "" {
		t.Errorf("serving Secret keys after the overlap (-want +got):\n%s", diff)
	}
	if _, ok := serving.Annotations[AnnotationCAKeyMovedAt]; ok {
		t.Errorf("annotation %s left after the split", AnnotationCAKeyMovedAt)
	}
	if string(serving.Data[KeyServingCert]) != string(old.serving.certPEM) || string(serving.Data[KeyCABundle]) != string(encodeCerts(old.trusted)) {
		t.Errorf("the split re-issued the serving certificate or changed the bundle")
	}
	checkServedTrusted(t, client, clk.Now(), m)
	for _, c := range changes {
		if strings.HasPrefix(c, "serving: issued") || strings.HasPrefix(c, "ca: created") || strings.HasPrefix(c, "ca: rotated") {
			t.Errorf("the migration made a certificate: %q", c)
		}
	}

	// The next renewal signs with the moved key.
	clk.SetTime(renewAt(old.serving.cert))
	if _, err := m.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if leaf := served(t, m, getSecret(t, client), clk.Now()); leaf.Equal(old.serving.cert) || !signedBy(leaf, old.ca.cert) {
		t.Errorf("the renewal after the split is not signed by the moved CA")
	}
	checkServedTrusted(t, client, clk.Now(), m)
}

// TestManagerCASecretDeleted deletes the CA Secret: nothing reads it until something must be
// signed; then a new CA joins the bundle beside the old one, serving switches to it once the
// webhook configurations trust it, and the old CA leaves, with every step trusted.
func TestManagerCASecretDeleted(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	clk := clocktesting.NewFakeClock(t0)
	client := newClient(webhookObjects()...)
	m := newTestManager(t, client, testOptions(clk))
	if _, err := m.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	firstCA := caOf(t, client).cert
	first := served(t, m, getSecret(t, client), clk.Now())
	if err := client.CoreV1().Secrets("ipp-system").Delete(ctx, DefaultCASecretName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	clk.Step(time.Hour)
	if _, err := m.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	checkServedTrusted(t, client, clk.Now(), m)

	clk.SetTime(renewAt(first))
	if _, err := m.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	newCA := caOf(t, client).cert
	if newCA.Equal(firstCA) {
		t.Fatalf("the CA Secret was re-created with the old CA, whose key was lost")
	}
	st := decodeServing(getSecret(t, client).Data)
	if len(st.trusted) != 2 || !st.trusted[0].Equal(newCA) || !st.trusted[1].Equal(firstCA) {
		t.Fatalf("bundle after the loss: %d CAs, want the new then the old", len(st.trusted))
	}
	if !st.serving.cert.Equal(first) {
		t.Errorf("serving switched to the new CA before the webhook configurations trusted it")
	}
	checkServedTrusted(t, client, clk.Now(), m)
	stepUntilOneCA(t, ctx, clk, client, m, newCA)
}

// TestManagerCrashBetweenWrites fails the serving Secret's write after the CA Secret's, as a
// crash between the two would: at the first install and at a CA rotation. The next manager
// completes from what was stored, without making another CA, and every step is trusted.
func TestManagerCrashBetweenWrites(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	clk := clocktesting.NewFakeClock(t0)
	client := newClient(webhookObjects()...)
	var crash atomic.Bool
	errCrash := errors.New("crashed before writing the serving Secret")
	fail := func(action k8stesting.Action) (bool, runtime.Object, error) {
		var obj runtime.Object
		switch a := action.(type) {
		case k8stesting.CreateAction:
			obj = a.GetObject()
		case k8stesting.UpdateAction:
			obj = a.GetObject()
		}
		if m, err := meta.Accessor(obj); err == nil && m.GetName() == DefaultSecretName && crash.CompareAndSwap(true, false) {
			return true, nil, errCrash
		}
		return false, nil, nil
	}
	client.PrependReactor("create", "secrets", fail)
	client.PrependReactor("update", "secrets", fail)

	// First install.
	crash.Store(true)
	if _, err := newTestManager(t, client, testOptions(clk)).Sync(ctx); !errors.Is(err, errCrash) {
		t.Fatalf("Sync = %v, want the crash", err)
	}
	ca1 := caOf(t, client)
	if _, err := client.CoreV1().Secrets("ipp-system").Get(ctx, DefaultSecretName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the serving Secret exists after the crash: %v", err)
	}
	m := newTestManager(t, client, testOptions(clk))
	if _, err := m.Sync(ctx); err != nil {
		t.Fatalf("Sync after the crash: %v", err)
	}
	if got := caOf(t, client); string(got.keyPEM) != string(ca1.keyPEM) {
		t.Fatalf("the next start made another CA instead of taking up the stored one")
	}
	if cas := pemCertsOf(t, getSecret(t, client).Data[KeyCABundle]); len(cas) != 1 || !cas[0].Equal(ca1.cert) {
		t.Fatalf("bundle after the first install: %d CAs, want the stored CA", len(cas))
	}
	checkServedTrusted(t, client, clk.Now(), m)

	// CA rotation.
	clk.SetTime(renewAt(ca1.cert))
	crash.Store(true)
	if _, err := m.Sync(ctx); !errors.Is(err, errCrash) {
		t.Fatalf("Sync = %v, want the crash", err)
	}
	ca2 := caOf(t, client)
	if ca2.cert.Equal(ca1.cert) {
		t.Fatalf("the rotation did not store a new CA before the crash")
	}
	if cas := pemCertsOf(t, getSecret(t, client).Data[KeyCABundle]); len(cas) != 1 || !cas[0].Equal(ca1.cert) {
		t.Fatalf("the serving Secret changed despite the crash")
	}
	m = newTestManager(t, client, testOptions(clk))
	if _, err := m.Sync(ctx); err != nil {
		t.Fatalf("Sync after the crash: %v", err)
	}
	if got := caOf(t, client); string(got.keyPEM) != string(ca2.keyPEM) {
		t.Fatalf("the next start made a third CA instead of taking up the stored one")
	}
	st := decodeServing(getSecret(t, client).Data)
	if len(st.trusted) != 2 || !st.trusted[0].Equal(ca2.cert) || !st.trusted[1].Equal(ca1.cert) {
		t.Fatalf("bundle after the crashed rotation: %d CAs, want the new then the old", len(st.trusted))
	}
	checkServedTrusted(t, client, clk.Now(), m)
	stepUntilOneCA(t, ctx, clk, client, m, ca2.cert)
}
