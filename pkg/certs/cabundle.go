package certs

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
)

// webhookConfigurations reads and writes the caBundle of every webhook entry of the named
// Mutating- and ValidatingWebhookConfigurations. An empty name leaves that kind alone.
type webhookConfigurations struct {
	m *Manager
}

// webhookKind is one of the two configurations: its kind and name, and how to read the client
// configurations of its webhook entries and write them back.
type webhookKind struct {
	// kind is MutatingWebhookConfiguration or ValidatingWebhookConfiguration; logKey is the same
	// with a lower-case first letter.
	kind, logKey, name string
	// get reads the configuration. The client configurations point into what it read, which
	// update writes back.
	get func(ctx context.Context) (clientConfigs []*admissionregistrationv1.WebhookClientConfig, update func(context.Context) error, err error)
}

// webhookClient is the part of a Mutating- or ValidatingWebhookConfigurations client that
// webhookConfigurations uses.
type webhookClient[T any] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Update(ctx context.Context, cfg T, opts metav1.UpdateOptions) (T, error)
}

func newWebhookKind[T any](kind, logKey, name string, client webhookClient[T], clientConfigs func(T) []*admissionregistrationv1.WebhookClientConfig) webhookKind {
	return webhookKind{kind: kind, logKey: logKey, name: name, get: func(ctx context.Context) ([]*admissionregistrationv1.WebhookClientConfig, func(context.Context) error, error) {
		cfg, err := client.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, nil, err
		}
		update := func(ctx context.Context) error {
			_, err := client.Update(ctx, cfg, metav1.UpdateOptions{FieldManager: FieldManager})
			return err
		}
		return clientConfigs(cfg), update, nil
	}}
}

// kinds returns the configurations that have a name, mutating first.
func (w webhookConfigurations) kinds() []webhookKind {
	client := w.m.client.AdmissionregistrationV1()
	var out []webhookKind
	if name := w.m.opts.MutatingWebhookConfiguration; name != "" {
		out = append(out, newWebhookKind("MutatingWebhookConfiguration", "mutatingWebhookConfiguration", name, client.MutatingWebhookConfigurations(),
			func(cfg *admissionregistrationv1.MutatingWebhookConfiguration) []*admissionregistrationv1.WebhookClientConfig {
				return clientConfigs(cfg.Webhooks, func(wh *admissionregistrationv1.MutatingWebhook) *admissionregistrationv1.WebhookClientConfig {
					return &wh.ClientConfig
				})
			}))
	}
	if name := w.m.opts.ValidatingWebhookConfiguration; name != "" {
		out = append(out, newWebhookKind("ValidatingWebhookConfiguration", "validatingWebhookConfiguration", name, client.ValidatingWebhookConfigurations(),
			func(cfg *admissionregistrationv1.ValidatingWebhookConfiguration) []*admissionregistrationv1.WebhookClientConfig {
				return clientConfigs(cfg.Webhooks, func(wh *admissionregistrationv1.ValidatingWebhook) *admissionregistrationv1.WebhookClientConfig {
					return &wh.ClientConfig
				})
			}))
	}
	return out
}

// clientConfigs returns the client configuration of each of webhooks, as cc finds it in one.
func clientConfigs[W any](webhooks []W, cc func(*W) *admissionregistrationv1.WebhookClientConfig) []*admissionregistrationv1.WebhookClientConfig {
	out := make([]*admissionregistrationv1.WebhookClientConfig, 0, len(webhooks))
	for i := range webhooks {
		out = append(out, cc(&webhooks[i]))
	}
	return out
}

// trusts reports whether every webhook entry of both configurations has ca in its caBundle. A
// configuration that cannot be read counts as not trusting it.
func (w webhookConfigurations) trusts(ctx context.Context, ca *x509.Certificate) bool {
	for _, k := range w.kinds() {
		ccs, _, err := k.get(ctx)
		if err != nil {
			return false
		}
		for _, cc := range ccs {
			if !bundleHas(cc.CABundle, ca) {
				return false
			}
		}
	}
	return true
}

// ensure writes bundle into every webhook entry of both configurations that does not hold it
// already. Each update carries the resourceVersion it read and is retried on conflict, so a
// concurrent edit (kubectl apply, the other replica) is never overwritten blindly.
func (w webhookConfigurations) ensure(ctx context.Context, bundle []byte) error {
	logger := klog.FromContext(ctx)
	for _, k := range w.kinds() {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			ccs, update, err := k.get(ctx)
			if err != nil {
				return err
			}
			changed := false
			for _, cc := range ccs {
				changed = setBundle(cc, bundle) || changed
			}
			if !changed {
				return nil
			}
			if err := update(ctx); err != nil {
				return err
			}
			logger.Info("Updated caBundle", k.logKey, k.name, "webhooks", len(ccs))
			return nil
		})
		if err != nil {
			return fmt.Errorf("writing caBundle of %s %s: %w", k.kind, k.name, err)
		}
	}
	return nil
}

func bundleHas(bundle []byte, ca *x509.Certificate) bool {
	certs, err := parseCerts(bundle)
	if err != nil {
		return false
	}
	for _, c := range certs {
		if c.Equal(ca) {
			return true
		}
	}
	return false
}

func setBundle(cc *admissionregistrationv1.WebhookClientConfig, bundle []byte) bool {
	if bytes.Equal(cc.CABundle, bundle) {
		return false
	}
	cc.CABundle = bytes.Clone(bundle)
	return true
}
