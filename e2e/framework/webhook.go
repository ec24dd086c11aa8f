package framework

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
)

// Paths the webhook server is registered under.
const (
	MutatePath   = "/mutate"
	ValidatePath = "/validate"
)

// DefaultExemptNamespaces are the namespaces the webhook configurations leave out: the control
// plane's and IPP's own, so that IPP can start while its webhook is down.
var DefaultExemptNamespaces = []string{metav1.NamespaceSystem, "ipp-system"}

// WebhookOptions configure RegisterWebhook.
type WebhookOptions struct {
	// Name names the MutatingWebhookConfiguration and ValidatingWebhookConfiguration; default "ipp".
	Name string
	// ExemptNamespaces are excluded by namespaceSelector on kubernetes.io/metadata.name;
	// nil means DefaultExemptNamespaces.
	ExemptNamespaces []string
	// NamespaceRequirements are ANDed with the exemption in the namespaceSelector, e.g. to give
	// a second webhook its own namespaces.
	NamespaceRequirements []metav1.LabelSelectorRequirement
	// ProbeNamespace is where dry-run Pods are created to check that the apiserver calls the
	// webhook; default "default". The namespaceSelector must select it.
	ProbeNamespace string
	// ProbeLabels label the dry-run Pods.
	ProbeLabels map[string]string
	// SkipUpdatesBy is a username whose Pod UPDATEs both webhooks leave out, by a matchCondition,
	// as deploy/base/webhooks.yaml leaves out the ipp ServiceAccount's placements (which the
	// ValidatingAdmissionPolicy ipp-pods restricts instead); empty: none.
	SkipUpdatesBy string
}

// Webhook is an admission webhook registered with the apiserver for Pods, CREATE and UPDATE.
type Webhook struct {
	// Server serves the handler, with a certificate for 127.0.0.1 signed by the control plane's
	// CA; nil for a webhook served elsewhere (RegisterWebhookURL).
	Server *httptest.Server
	// MutatingName and ValidatingName name the two configurations.
	MutatingName, ValidatingName string

	cp    *ControlPlane
	mu    sync.Mutex
	calls map[string]int
}

// RegisterWebhook serves handler over HTTPS from this process and registers it as
// RegisterWebhookURL does. It returns once the apiserver has called both paths for a dry-run Pod,
// so the next Pod created goes through them.
func (cp *ControlPlane) RegisterWebhook(ctx context.Context, handler http.Handler, opts WebhookOptions) (_ *Webhook, err error) {
	kp, err := cp.CA.ServingCert("ipp-webhook", []net.IP{net.IPv4(127, 0, 0, 1)}, []string{"localhost"})
	if err != nil {
		return nil, err
	}
	tlsCert, err := kp.TLSCertificate()
	if err != nil {
		return nil, err
	}
	w := &Webhook{cp: cp, calls: map[string]int{}}
	w.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.mu.Lock()
		w.calls[r.URL.Path]++
		w.mu.Unlock()
		handler.ServeHTTP(rw, r)
	}))
	w.Server.TLS = &tls.Config{Certificates: []tls.Certificate{tlsCert}, MinVersion: tls.VersionTLS12}
	w.Server.StartTLS()
	defer func() {
		if err != nil {
			w.Server.Close()
		}
	}()
	called := func(*corev1.Pod, error) bool { return w.Calls(MutatePath) > 0 && w.Calls(ValidatePath) > 0 }
	if err := cp.register(ctx, w, w.Server.URL, opts, called); err != nil {
		return nil, err
	}
	return w, nil
}

// RegisterWebhookURL registers a webhook served at baseURL (https, with a certificate signed by
// the control plane's CA): a MutatingWebhookConfiguration calling <baseURL>/mutate and a
// ValidatingWebhookConfiguration calling <baseURL>/validate, both with the CA bundle,
// failurePolicy Fail, sideEffects None, rules Pods CREATE and UPDATE, a namespaceSelector that
// exempts opts.ExemptNamespaces by their immutable kubernetes.io/metadata.name label (and
// opts.NamespaceRequirements), no objectSelector, admissionReviewVersions v1 and a 5 s timeout.
// A new configuration reaches the admission chain some tens of milliseconds after it is created:
// RegisterWebhookURL creates dry-run Pods in opts.ProbeNamespace until effective, given each
// one's result, reports that the webhook has answered it.
func (cp *ControlPlane) RegisterWebhookURL(ctx context.Context, baseURL string, opts WebhookOptions, effective func(*corev1.Pod, error) bool) (*Webhook, error) {
	w := &Webhook{cp: cp, calls: map[string]int{}}
	if err := cp.register(ctx, w, baseURL, opts, effective); err != nil {
		return nil, err
	}
	return w, nil
}

// register creates the two configurations and probes with dry-run Pods until done, given each
// probe's result, holds.
func (cp *ControlPlane) register(ctx context.Context, w *Webhook, baseURL string, opts WebhookOptions, done func(*corev1.Pod, error) bool) error {
	if opts.Name == "" {
		opts.Name = "ipp"
	}
	if opts.ExemptNamespaces == nil {
		opts.ExemptNamespaces = DefaultExemptNamespaces
	}
	if opts.ProbeNamespace == "" {
		opts.ProbeNamespace = metav1.NamespaceDefault
	}
	w.MutatingName, w.ValidatingName = opts.Name, opts.Name
	selector := &metav1.LabelSelector{MatchExpressions: append([]metav1.LabelSelectorRequirement{{
		Key:      corev1.LabelMetadataName,
		Operator: metav1.LabelSelectorOpNotIn,
		Values:   opts.ExemptNamespaces,
	}}, opts.NamespaceRequirements...)}
	rules := []admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
		Rule: admissionregistrationv1.Rule{
			APIGroups:   []string{""},
			APIVersions: []string{"v1"},
			Resources:   []string{"pods"},
			Scope:       ptr.To(admissionregistrationv1.NamespacedScope),
		},
	}}
	var conditions []admissionregistrationv1.MatchCondition
	if opts.SkipUpdatesBy != "" {
		conditions = []admissionregistrationv1.MatchCondition{{
			Name:       "not-ipp-placement",
			Expression: fmt.Sprintf("!(request.operation == 'UPDATE' && request.userInfo.username == %q)", opts.SkipUpdatesBy),
		}}
	}
	clientConfig := func(path string) admissionregistrationv1.WebhookClientConfig {
		return admissionregistrationv1.WebhookClientConfig{URL: ptr.To(baseURL + path), CABundle: cp.CA.CertPEM}
	}
	mutating := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: opts.Name},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "pods.mutate.ipp.io",
			ClientConfig:            clientConfig(MutatePath),
			Rules:                   rules,
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			NamespaceSelector:       selector,
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          ptr.To[int32](5),
			MatchConditions:         conditions,
		}},
	}
	validating := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: opts.Name},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    "pods.validate.ipp.io",
			ClientConfig:            clientConfig(ValidatePath),
			Rules:                   rules,
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			NamespaceSelector:       selector,
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          ptr.To[int32](5),
			MatchConditions:         conditions,
		}},
	}
	ar := cp.Client.AdmissionregistrationV1()
	if _, err := ar.MutatingWebhookConfigurations().Create(ctx, mutating, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating MutatingWebhookConfiguration %s: %w", opts.Name, err)
	}
	if _, err := ar.ValidatingWebhookConfigurations().Create(ctx, validating, metav1.CreateOptions{}); err != nil {
		_ = ar.MutatingWebhookConfigurations().Delete(ctx, opts.Name, metav1.DeleteOptions{})
		return fmt.Errorf("creating ValidatingWebhookConfiguration %s: %w", opts.Name, err)
	}
	if err := w.waitEffective(ctx, opts, done); err != nil {
		_ = w.deleteConfigurations(ctx)
		return err
	}
	return nil
}

// waitEffective creates dry-run Pods until done holds.
func (w *Webhook) waitEffective(ctx context.Context, opts WebhookOptions, done func(*corev1.Pod, error) bool) error {
	probe := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "ipp-webhook-probe-" + rand.String(6), Labels: opts.ProbeLabels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "probe", Image: PauseImage}}},
	}
	var last error
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		var created *corev1.Pod
		created, last = w.cp.Client.CoreV1().Pods(opts.ProbeNamespace).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return done(created, last), nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the apiserver to call webhook %s (last dry-run: %v): %w", w.MutatingName, last, err)
	}
	return nil
}

// Calls returns how many requests the server received on path.
func (w *Webhook) Calls(path string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.calls[path]
}

// Unregister deletes the two configurations and stops the server, if it serves one.
func (w *Webhook) Unregister(ctx context.Context) error {
	err := w.deleteConfigurations(ctx)
	if w.Server != nil {
		w.Server.Close()
	}
	return err
}

func (w *Webhook) deleteConfigurations(ctx context.Context) error {
	ar := w.cp.Client.AdmissionregistrationV1()
	var errs []error
	if err := ar.MutatingWebhookConfigurations().Delete(ctx, w.MutatingName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("deleting MutatingWebhookConfiguration %s: %w", w.MutatingName, err))
	}
	if err := ar.ValidatingWebhookConfigurations().Delete(ctx, w.ValidatingName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("deleting ValidatingWebhookConfiguration %s: %w", w.ValidatingName, err))
	}
	return errors.Join(errs...)
}

// PauseImage is the image the framework puts in Pods it makes; nothing pulls it.
const PauseImage = "registry.k8s.io/pause:3.10"
