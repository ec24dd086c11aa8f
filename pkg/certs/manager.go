package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/ipp-project/ipp/pkg/metrics"
)

// minWait is the shortest time between two syncs that have nothing to do, so that a switch that
// waits for the webhook configurations is polled rather than spun on.
const minWait = 2 * time.Second

// Manager keeps the serving and CA Secrets, the webhook configurations' caBundle and the
// certificate this replica serves up to date.
type Manager struct {
	client kubernetes.Interface
	opts   Options
	cfg    planConfig
	clock  clock.WithTicker
	queue  workqueue.TypedRateLimitingInterface[string]

	// current is the serving certificate that GetCertificate returns.
	current atomic.Pointer[tls.Certificate]
	// onIssue is called after each change this manager stored, for tests.
	onIssue func(changes []string)
}

// NewManager returns a Manager for opts, which must be Enabled and valid.
func NewManager(client kubernetes.Interface, opts Options) (*Manager, error) {
	if !opts.Enabled() {
		return nil, errors.New("self-managed TLS needs --tls-secret")
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	clk := opts.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Manager{
		client: client,
		opts:   opts,
		cfg: planConfig{
			names:           opts.names(),
			caValidity:      opts.CAValidity,
			servingValidity: opts.ServingValidity,
			overlap:         opts.Overlap,
		},
		clock: clk,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Second, time.Minute),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "certs", Clock: clk},
		),
	}, nil
}

// GetCertificate returns the serving certificate from the Secret, as last seen. It is meant for
// tls.Config.GetCertificate; it fails until the first certificate is loaded.
func (m *Manager) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := m.current.Load(); c != nil {
		return c, nil
	}
	return nil, fmt.Errorf("no serving certificate loaded yet from Secret %s/%s", m.opts.Namespace, m.opts.SecretName)
}

const queueKey = "tls"

// Run keeps everything up to date until ctx is done, then returns nil; failed syncs are logged
// and retried with back-off. It watches the one Secret, so that a certificate stored by another
// replica is served within moments, and syncs whenever the Secret changes, when a certificate is
// due, and every Resync.
func (m *Manager) Run(ctx context.Context) error {
	logger := klog.LoggerWithValues(klog.FromContext(ctx), "secret", klog.KRef(m.opts.Namespace, m.opts.SecretName))
	ctx = klog.NewContext(ctx, logger)

	factory := informers.NewSharedInformerFactoryWithOptions(m.client, 0,
		informers.WithNamespace(m.opts.Namespace),
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
			// One Secret: RBAC grants list/watch on it alone, by resourceNames.
			lo.FieldSelector = fields.OneTermEqualSelector("metadata.name", m.opts.SecretName).String()
		}))
	informer := factory.Core().V1().Secrets().Informer()
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { m.onSecret(ctx, obj) },
		UpdateFunc: func(_, obj any) { m.onSecret(ctx, obj) },
		DeleteFunc: func(any) { m.queue.Add(queueKey) },
	}); err != nil {
		return fmt.Errorf("watching Secret %s/%s: %w", m.opts.Namespace, m.opts.SecretName, err)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	go func() {
		<-ctx.Done()
		m.queue.ShutDown()
	}()
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		// Only a cancelled ctx ends the wait: a shutdown, not an error.
		return nil
	}
	m.queue.Add(queueKey)
	for m.processNext(ctx) {
	}
	return nil
}

func (m *Manager) processNext(ctx context.Context) bool {
	key, shutdown := m.queue.Get()
	if shutdown {
		return false
	}
	defer m.queue.Done(key)
	next, err := m.Sync(ctx)
	if err != nil {
		if ctx.Err() == nil {
			klog.FromContext(ctx).Error(err, "Syncing TLS failed; retrying")
		}
		m.queue.AddRateLimited(key)
		return true
	}
	m.queue.Forget(key)
	m.queue.AddAfter(key, next)
	return true
}

// onSecret serves the Secret's certificate and queues a sync.
func (m *Manager) onSecret(ctx context.Context, obj any) {
	if s, ok := obj.(*corev1.Secret); ok {
		m.load(ctx, s.Data[KeyServingCert], s.Data[KeyServingKey])
	}
	m.queue.Add(queueKey)
}

// load makes certPEM/keyPEM the certificate GetCertificate returns, if they parse and differ
// from the current one.
func (m *Manager) load(ctx context.Context, certPEM, keyPEM []byte) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil || pair.Leaf == nil {
		// Sync replaces a broken certificate; keep serving the last good one meanwhile.
		return
	}
	if cur := m.current.Load(); cur != nil && cur.Leaf.Equal(pair.Leaf) {
		return
	}
	m.current.Store(&pair)
	metrics.SetServingCertificateExpiry(pair.Leaf.NotAfter)
	klog.FromContext(ctx).Info("Serving certificate loaded", "serial", pair.Leaf.SerialNumber.Text(16), "notAfter", pair.Leaf.NotAfter, "issuer", pair.Leaf.Issuer.CommonName)
}

// Sync does one pass: it creates or updates the Secrets if anything is due, serves the
// certificate, and writes the CA bundle into the webhook configurations. It returns how long to
// wait before the next pass.
//
// It reads the CA Secret only when the pass must sign or make a CA, or split a serving Secret of
// the combined format. It writes the CA Secret before the serving Secret, so that a crash between
// the two leaves a CA Secret ahead of the serving Secret, which the next pass takes up
// (state.withCA), and never a serving certificate whose CA key is nowhere.
func (m *Manager) Sync(ctx context.Context) (time.Duration, error) {
	logger := klog.FromContext(ctx)
	webhooks := webhookConfigurations{m}
	caInstalled := func(ca *x509.Certificate) bool { return webhooks.trusts(ctx, ca) }

	var (
		final   *state
		recheck time.Time
	)
	// Conflict: another replica updated a Secret since we read it. AlreadyExists: another
	// replica created it first. Either way, start over from what it stored.
	err := retry.OnError(retry.DefaultRetry, func(err error) bool {
		return apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err)
	}, func() error {
		serving, err := m.getSecret(ctx, m.opts.SecretName)
		if err != nil {
			return err
		}
		cur := &state{}
		var legacyKey []byte
		if serving != nil {
			cur = decodeServing(serving.Data)
			legacyKey = serving.Data[KeyCAKey]
		}
		now := m.clock.Now()

		// A combined Secret is being split: the CA Secret is read on every pass until then.
		var (
			caSecret  *corev1.Secret
			caChanges []change
		)
		loadCA := func() error {
			if caSecret, err = m.getSecret(ctx, m.opts.CASecretName); err != nil {
				return err
			}
			var caData map[string][]byte
			if caSecret != nil {
				caData = caSecret.Data
			}
			cur, caChanges = cur.withCA(caData, legacyKey)
			return nil
		}
		if legacyKey != nil {
			if err := loadCA(); err != nil {
				return err
			}
		}
		next, changes, at, err := plan(m.cfg, cur, now, caInstalled)
		if errors.Is(err, errNeedCAKey) {
			if err := loadCA(); err != nil {
				return err
			}
			next, changes, at, err = plan(m.cfg, cur, now, caInstalled)
		}
		if err != nil {
			return err
		}
		changes = append(caChanges, changes...)

		// The CA Secret first.
		if next.keyLoaded {
			stored, err := m.storeSecret(ctx, caSecret, m.opts.CASecretName, "webhook-ca", corev1.SecretTypeOpaque, next.encodeCA(), nil)
			if err != nil {
				return err
			}
			if stored && caSecret == nil && legacyKey != nil {
				changes = append(changes, change{changeSplit, "copied the CA key to Secret " + m.opts.CASecretName})
			}
		}

		// Then the serving Secret. While a combined Secret is being split, it keeps the signing
		// key for Overlap after the copy, for replicas of the earlier version.
		data := next.encodeServing()
		var annotations map[string]*string
		if legacyKey != nil {
			movedAt, ok := time.Time{}, false
			if v := serving.Annotations[AnnotationCAKeyMovedAt]; v != "" {
				if t, err := time.Parse(time.RFC3339, v); err == nil {
					movedAt, ok = t, true
				}
			}
			switch {
			case !ok:
				stamp := now.UTC().Format(time.RFC3339)
				annotations = map[string]*string{AnnotationCAKeyMovedAt: &stamp}
				data[KeyCAKey] = next.ca.keyPEM
				at = earliest(at, now.Add(m.cfg.overlap))
			case now.Before(movedAt.Add(m.cfg.overlap)):
				data[KeyCAKey] = next.ca.keyPEM
				at = earliest(at, movedAt.Add(m.cfg.overlap))
			default:
				annotations = map[string]*string{AnnotationCAKeyMovedAt: nil}
				changes = append(changes, change{changeSplit, "removed the CA key from Secret " + m.opts.SecretName})
			}
		}
		if _, err := m.storeSecret(ctx, serving, m.opts.SecretName, "webhook-tls", corev1.SecretTypeTLS, data, annotations); err != nil {
			return err
		}
		final, recheck = next, at
		if len(changes) == 0 {
			return nil
		}
		logger.Info("Stored TLS certificates", "changes", strings.Join(changeStrings(changes), "; "),
			"caNotAfter", next.ca.cert.NotAfter, "servingNotAfter", next.serving.cert.NotAfter, "trustedCAs", len(next.trusted))
		for _, c := range changes {
			if c.kind == changeCA || c.kind == changeServing {
				metrics.IncCertificateRotations(string(c.kind))
			}
		}
		if m.onIssue != nil {
			m.onIssue(changeStrings(changes))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	m.load(ctx, final.serving.certPEM, final.serving.keyPEM)
	if err := webhooks.ensure(ctx, final.bundle()); err != nil {
		return 0, err
	}

	wait := recheck.Sub(m.clock.Now())
	return min(max(wait, minWait), m.opts.Resync), nil
}

// earliest returns the earlier of a and b.
func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// getSecret reads the named Secret of the namespace; nil if there is none.
func (m *Manager) getSecret(ctx context.Context, name string) (*corev1.Secret, error) {
	secret, err := m.client.CoreV1().Secrets(m.opts.Namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading Secret %s/%s: %w", m.opts.Namespace, name, err)
	}
	return secret, nil
}

// storeSecret makes the named Secret hold data: it creates it if cur is nil, and otherwise
// updates cur, at the resourceVersion read, if its data or annotations differ. Keys of cur that
// data does not name are removed, but for those of other writers (anything but ca.crt, ca.key,
// tls.crt and tls.key). annotations are set, or removed where nil. It reports whether it wrote.
func (m *Manager) storeSecret(ctx context.Context, cur *corev1.Secret, name, component string, typ corev1.SecretType, data map[string][]byte, annotations map[string]*string) (bool, error) {
	secrets := m.client.CoreV1().Secrets(m.opts.Namespace)
	if cur == nil {
		secret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Name:      name,
				Namespace: m.opts.Namespace,
				Labels:    map[string]string{"app.kubernetes.io/name": "ipp", "app.kubernetes.io/component": component},
			},
			Type: typ,
			Data: data,
		}
		for k, v := range annotations {
			if v != nil {
				metav1.SetMetaDataAnnotation(&secret.ObjectMeta, k, *v)
			}
		}
		if _, err := secrets.Create(ctx, secret, metav1.CreateOptions{FieldManager: FieldManager}); err != nil {
			return false, fmt.Errorf("creating Secret %s/%s: %w", m.opts.Namespace, name, err)
		}
		return true, nil
	}
	if cur.Type != typ && cur.Type != corev1.SecretTypeOpaque && cur.Type != "" {
		return false, fmt.Errorf("Secret %s/%s has type %s, want %s; delete it or choose another name", m.opts.Namespace, name, cur.Type, typ)
	}
	secret := cur.DeepCopy()
	if secret.Data == nil {
		secret.Data = map[string][]byte{}
	}
	changed := false
	for _, k := range []string{KeyServingCert, KeyServingKey, KeyCABundle, KeyCAKey} {
		v, want := data[k]
		old, have := secret.Data[k]
		switch {
		case want && (!have || !bytes.Equal(old, v)):
			secret.Data[k] = v
			changed = true
		case !want && have:
			delete(secret.Data, k)
			changed = true
		}
	}
	for k, v := range annotations {
		old, have := secret.Annotations[k]
		switch {
		case v != nil && (!have || old != *v):
			metav1.SetMetaDataAnnotation(&secret.ObjectMeta, k, *v)
			changed = true
		case v == nil && have:
			delete(secret.Annotations, k)
			changed = true
		}
	}
	if !changed {
		return false, nil
	}
	if _, err := secrets.Update(ctx, secret, metav1.UpdateOptions{FieldManager: FieldManager}); err != nil {
		return false, fmt.Errorf("updating Secret %s/%s: %w", m.opts.Namespace, name, err)
	}
	return true, nil
}
