package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/klog/v2/ktesting"
	clocktesting "k8s.io/utils/clock/testing"
)

// newClient returns a fake clientset that, unlike the plain fake, enforces resourceVersions as
// the apiserver does: every create and update gets a new resourceVersion, and an update whose
// resourceVersion is not the stored one fails with Conflict. The fake's reactors run under one
// lock, so the check and the store are atomic.
func newClient(objects ...runtime.Object) *fake.Clientset {
	client := fake.NewClientset(objects...)
	var rv int64 = 1000
	client.PrependReactor("create", "*", func(action k8stesting.Action) (bool, runtime.Object, error) {
		obj := action.(k8stesting.CreateAction).GetObject()
		m, err := meta.Accessor(obj)
		if err != nil {
			return false, nil, nil
		}
		rv++
		m.SetResourceVersion(strconv.FormatInt(rv, 10))
		return false, nil, nil // let the tracker store it
	})
	client.PrependReactor("update", "*", func(action k8stesting.Action) (bool, runtime.Object, error) {
		ua := action.(k8stesting.UpdateAction)
		m, err := meta.Accessor(ua.GetObject())
		if err != nil {
			return false, nil, nil
		}
		stored, err := client.Tracker().Get(ua.GetResource(), ua.GetNamespace(), m.GetName())
		if err != nil {
			return true, nil, err
		}
		sm, _ := meta.Accessor(stored)
		if sm.GetResourceVersion() != m.GetResourceVersion() {
			return true, nil, apierrors.NewConflict(ua.GetResource().GroupResource(), m.GetName(), nil)
		}
		rv++
		m.SetResourceVersion(strconv.FormatInt(rv, 10))
		return false, nil, nil
	})
	return client
}

func webhookObjects() []runtime.Object {
	svc := func() admissionregistrationv1.WebhookClientConfig {
		path := "/x"
		return admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Namespace: "ipp-system", Name: "ipp", Path: &path}}
	}
	return []runtime.Object{
		&admissionregistrationv1.MutatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: "ipp", ResourceVersion: "1"},
			Webhooks: []admissionregistrationv1.MutatingWebhook{
				{Name: "mutate.ipp.ipp-project.io", ClientConfig: svc()},
				{Name: "other.ipp.ipp-project.io", ClientConfig: svc()},
			},
		},
		&admissionregistrationv1.ValidatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: "ipp", ResourceVersion: "1"},
			Webhooks: []admissionregistrationv1.ValidatingWebhook{
				{Name: "validate.ipp.ipp-project.io", ClientConfig: svc()},
			},
		},
	}
}

func testOptions(clk *clocktesting.FakeClock) Options {
	o := NewOptions()
	o.SecretName = DefaultSecretName
	o.Namespace = "ipp-system"
	o.CAValidity = 3000 * time.Hour
	o.ServingValidity = 90 * time.Hour
	o.Overlap = time.Hour
	o.Clock = clk
	return *o
}

func newTestManager(t *testing.T, client *fake.Clientset, opts Options) *Manager {
	t.Helper()
	m, err := NewManager(client, opts)
	if err != nil {
		t.Fatalf("NewManager: %v", err)
	}
	return m
}

func getSecret(t *testing.T, client *fake.Clientset) *corev1.Secret {
	t.Helper()
	s, err := client.CoreV1().Secrets("ipp-system").Get(context.Background(), DefaultSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading the Secret: %v", err)
	}
	return s
}

// getCASecret returns the CA Secret.
func getCASecret(t *testing.T, client *fake.Clientset) *corev1.Secret {
	t.Helper()
	s, err := client.CoreV1().Secrets("ipp-system").Get(context.Background(), DefaultCASecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading the CA Secret: %v", err)
	}
	return s
}

// caOf returns the CA in the CA Secret, with its key.
func caOf(t *testing.T, client *fake.Clientset) *keyPair {
	t.Helper()
	data := getCASecret(t, client).Data
	ca := caPair(data[KeyCABundle], data[KeyCAKey])
	if ca == nil {
		t.Fatalf("the CA Secret holds no CA with its key")
	}
	return ca
}

// pemCertsOf parses a PEM bundle.
func pemCertsOf(t *testing.T, data []byte) []*x509.Certificate {
	t.Helper()
	certs, err := parseCerts(data)
	if err != nil {
		t.Fatal(err)
	}
	return certs
}

// bundles returns the caBundle of every webhook entry, mutating first.
func bundles(t *testing.T, client *fake.Clientset) [][]byte {
	t.Helper()
	ctx := context.Background()
	mw, err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "ipp", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vw, err := client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "ipp", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, w := range mw.Webhooks {
		out = append(out, w.ClientConfig.CABundle)
	}
	for _, w := range vw.Webhooks {
		out = append(out, w.ClientConfig.CABundle)
	}
	return out
}

// served returns the leaf that m serves, checking that it verifies for the service name against
// the Secret's CA bundle at the clock's time.
func served(t *testing.T, m *Manager, secret *corev1.Secret, now time.Time) *x509.Certificate {
	t.Helper()
	c, err := m.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatalf("GetCertificate: %v", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(secret.Data[KeyCABundle]) {
		t.Fatalf("Secret's %s holds no certificate", KeyCABundle)
	}
	if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, DNSName: "ipp.ipp-system.svc"}); err != nil {
		t.Fatalf("served certificate does not verify against the Secret's CA bundle: %v", err)
	}
	return c.Leaf
}

func TestManagerSyncCreatesAndPatches(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	clk := clocktesting.NewFakeClock(t0)
	client := newClient(webhookObjects()...)
	m := newTestManager(t, client, testOptions(clk))

	if _, err := m.GetCertificate(nil); err == nil {
		t.Errorf("GetCertificate before the first sync succeeded")
	}
	wait, err := m.Sync(ctx)
	if err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if wait != time.Minute {
		t.Errorf("wait = %v, want the resync period", wait)
	}
	secret := getSecret(t, client)
	if secret.Type != corev1.SecretTypeTLS {
		t.Errorf("Secret type = %s, want %s", secret.Type, corev1.SecretTypeTLS)
	}
	served(t, m, secret, clk.Now())
	for i, b := range bundles(t, client) {
		if string(b) != string(secret.Data[KeyCABundle]) {
			t.Errorf("webhook %d caBundle differs from the Secret's CA bundle", i)
		}
	}

	// A second sync with nothing due writes nothing.
	client.ClearActions()
	if _, err := m.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	for _, a := range client.Actions() {
		if a.GetVerb() != "get" {
			t.Errorf("idle sync did %s %s", a.GetVerb(), a.GetResource().Resource)
		}
	}

	// Someone resets one caBundle (a kubectl replace, say): the next sync puts it back.
	vw, _ := client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "ipp", metav1.GetOptions{})
	vw.Webhooks[0].ClientConfig.CABundle = nil
	if _, err := client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Update(ctx, vw, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if b := bundles(t, client)[2]; string(b) != string(secret.Data[KeyCABundle]) {
		t.Errorf("reset caBundle was not restored")
	}
}

func TestManagerMissingWebhookConfiguration(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	clk := clocktesting.NewFakeClock(t0)
	client := newClient(webhookObjects()[0]) // no ValidatingWebhookConfiguration
	m := newTestManager(t, client, testOptions(clk))
	_, err := m.Sync(ctx)
	if err == nil || !strings.Contains(err.Error(), "ValidatingWebhookConfiguration ipp") || !apierrors.IsNotFound(err) {
		t.Fatalf("Sync error = %v, want NotFound naming ValidatingWebhookConfiguration ipp", err)
	}
	// The Secret and the certificate are in place regardless, so the webhook can serve.
	served(t, m, getSecret(t, client), clk.Now())

	// With that configuration left alone, the sync succeeds.
	opts := testOptions(clk)
	opts.ValidatingWebhookConfiguration = ""
	m = newTestManager(t, client, opts)
	if _, err := m.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

// TestManagerRace starts two managers at once on an empty cluster, many times over: they must
// agree on one CA and one serving certificate, and exactly one of them creates the Secret.
func TestManagerRace(t *testing.T) {
	for i := range 20 {
		_, ctx := ktesting.NewTestContext(t)
		clk := clocktesting.NewFakeClock(t0)
		client := newClient(webhookObjects()...)
		var (
			mu      sync.Mutex
			created int
		)
		managers := []*Manager{newTestManager(t, client, testOptions(clk)), newTestManager(t, client, testOptions(clk))}
		for _, m := range managers {
			m.onIssue = func(changes []string) {
				mu.Lock()
				defer mu.Unlock()
				for _, c := range changes {
					if c == "ca: created" {
						created++
					}
				}
			}
		}
		start := make(chan struct{})
		errs := make(chan error, len(managers))
		for _, m := range managers {
			go func() {
				<-start
				_, err := m.Sync(ctx)
				errs <- err
			}()
		}
		close(start)
		for range managers {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: Sync: %v", i, err)
			}
		}
		// The one whose CA Secret was created first stores it; the other takes that CA up.
		if created > 1 {
			t.Fatalf("round %d: %d managers stored a new CA, want at most 1", i, created)
		}
		secret := getSecret(t, client)
		if cas := pemCertsOf(t, secret.Data[KeyCABundle]); len(cas) != 1 || !cas[0].Equal(caOf(t, client).cert) {
			t.Fatalf("round %d: the bundle holds %d CAs, want the CA Secret's alone", i, len(cas))
		}
		a, b := served(t, managers[0], secret, clk.Now()), served(t, managers[1], secret, clk.Now())
		if !a.Equal(b) {
			t.Fatalf("round %d: the two managers serve different certificates", i)
		}
		for j, bundle := range bundles(t, client) {
			if string(bundle) != string(secret.Data[KeyCABundle]) {
				t.Fatalf("round %d: webhook %d caBundle differs from the Secret's", i, j)
			}
		}
	}
}

// TestManagerRotation moves a fake clock through a CA rotation with two managers syncing in
// turn: the webhook configurations trust the new CA before any replica serves a certificate it
// signed, and trust the old one until overlap after the switch.
func TestManagerRotation(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	clk := clocktesting.NewFakeClock(t0)
	client := newClient(webhookObjects()...)
	a, b := newTestManager(t, client, testOptions(clk)), newTestManager(t, client, testOptions(clk))
	syncBoth := func() {
		t.Helper()
		for _, m := range []*Manager{a, b} {
			if _, err := m.Sync(ctx); err != nil {
				t.Fatalf("Sync at t0+%v: %v", clk.Since(t0), err)
			}
		}
	}
	// checkTrusted checks that every caBundle verifies what both managers serve.
	checkTrusted := func() {
		t.Helper()
		for _, m := range []*Manager{a, b} {
			leaf := served(t, m, getSecret(t, client), clk.Now())
			for i, bundle := range bundles(t, client) {
				roots := x509.NewCertPool()
				roots.AppendCertsFromPEM(bundle)
				if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: clk.Now(), DNSName: "ipp.ipp-system.svc"}); err != nil {
					t.Fatalf("t0+%v: webhook %d's caBundle does not trust the served certificate: %v", clk.Since(t0), i, err)
				}
			}
		}
	}
	caCount := func() int {
		certs, err := parseCerts(getSecret(t, client).Data[KeyCABundle])
		if err != nil {
			t.Fatal(err)
		}
		return len(certs)
	}

	syncBoth()
	checkTrusted()
	firstCA := decodeServing(getSecret(t, client).Data).ca.cert

	// Step through time, 30 hours at a time (the serving certificate lives 90) until shortly
	// before the CA's renewal, then 20 minutes at a time past it and the two overlaps.
	fine := renewAt(firstCA).Add(-2 * time.Hour)
	end := renewAt(firstCA).Add(4 * time.Hour)
	var sawTwo, switched bool
	for clk.Now().Before(end) {
		if clk.Now().Add(30 * time.Hour).Before(fine) {
			clk.Step(30 * time.Hour)
		} else {
			clk.Step(20 * time.Minute)
		}
		syncBoth()
		checkTrusted()
		st := decodeServing(getSecret(t, client).Data)
		if caCount() == 2 {
			sawTwo = true
		}
		if !st.ca.cert.Equal(firstCA) && signedBy(st.serving.cert, st.ca.cert) {
			switched = true
		}
	}
	if !sawTwo || !switched {
		t.Fatalf("rotation did not happen: saw two CAs=%v, switched=%v", sawTwo, switched)
	}
	if n := caCount(); n != 1 {
		t.Fatalf("%d CAs in the bundle after the overlap, want 1", n)
	}
	if st := decodeServing(getSecret(t, client).Data); st.ca.cert.Equal(firstCA) {
		t.Fatalf("the CA was not rotated")
	}
}

// TestManagerRunPicksUpSecretChanges runs a manager and changes the Secret behind its back, as
// another replica would: the new certificate is served without a restart.
func TestManagerRunPicksUpSecretChanges(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	clk := clocktesting.NewFakeClock(t0)
	client := newClient(webhookObjects()...)
	m := newTestManager(t, client, testOptions(clk))
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	waitCtx, waitCancel := context.WithTimeout(ctx, 30*time.Second)
	defer waitCancel()
	if err := waitServing(waitCtx, m); err != nil {
		t.Fatalf("waiting for a serving certificate: %v", err)
	}
	first := served(t, m, getSecret(t, client), clk.Now())

	// Another replica renews the serving certificate.
	other := newTestManager(t, client, testOptions(clk))
	clk.SetTime(renewAt(first))
	if _, err := other.Sync(ctx); err != nil {
		t.Fatalf("other Sync: %v", err)
	}
	renewed := served(t, other, getSecret(t, client), clk.Now())
	if renewed.Equal(first) {
		t.Fatalf("the other replica did not renew")
	}
	err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		c, err := m.GetCertificate(nil)
		return err == nil && c.Leaf.Equal(renewed), nil
	})
	if err != nil {
		t.Fatalf("the running manager never served the renewed certificate: %v", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*Options)
		wantErr string
	}{
		{"defaults with a secret", func(*Options) {}, ""},
		{"bad secret name", func(o *Options) { o.SecretName = "Bad_Name" }, "--tls-secret"},
		{"bad CA secret name", func(o *Options) { o.CASecretName = "Bad_Name" }, "--tls-ca-secret"},
		{"no CA secret", func(o *Options) { o.CASecretName = "" }, "--tls-ca-secret"},
		{"CA key in the watched Secret", func(o *Options) { o.CASecretName = o.SecretName }, "must differ from --tls-secret"},
		{"empty namespace", func(o *Options) { o.Namespace = "" }, "--tls-secret-namespace"},
		{"bad extra name", func(o *Options) { o.ExtraNames = []string{"not a name"} }, "--tls-extra-names"},
		{"IP extra name", func(o *Options) { o.ExtraNames = []string{"127.0.0.1", "::1", "webhook.example.com"} }, ""},
		{"serving longer than CA", func(o *Options) { o.ServingValidity = o.CAValidity }, "--tls-serving-validity"},
		{"overlap too long", func(o *Options) { o.Overlap = o.ServingValidity / 2 }, "--tls-rotation-overlap"},
		{"zero CA validity", func(o *Options) { o.CAValidity = 0 }, "--tls-ca-validity"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := NewOptions()
			o.SecretName = DefaultSecretName
			tc.edit(o)
			err := o.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Errorf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Validate error = %v, want one naming %s", err, tc.wantErr)
			}
		})
	}
	if _, err := NewManager(fake.NewClientset(), *NewOptions()); err == nil {
		t.Errorf("NewManager without --tls-secret succeeded")
	}
}

// waitServing waits until m serves a certificate or ctx is done.
func waitServing(ctx context.Context, m *Manager) error {
	return wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(context.Context) (bool, error) {
		_, err := m.GetCertificate(nil)
		return err == nil, nil
	})
}
