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

// trusts reports whether every webhook entry of both configurations has ca in its caBundle. A
// configuration that cannot be read counts as not trusting it.
func (w webhookConfigurations) trusts(ctx context.Context, ca *x509.Certificate) bool {
	client := w.m.client.AdmissionregistrationV1()
	if name := w.m.opts.MutatingWebhookConfiguration; name != "" {
		cfg, err := client.MutatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, wh := range cfg.Webhooks {
			if !bundleHas(wh.ClientConfig.CABundle, ca) {
				return false
			}
		}
	}
	if name := w.m.opts.ValidatingWebhookConfiguration; name != "" {
		cfg, err := client.ValidatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, wh := range cfg.Webhooks {
			if !bundleHas(wh.ClientConfig.CABundle, ca) {
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
	client := w.m.client.AdmissionregistrationV1()
	if name := w.m.opts.MutatingWebhookConfiguration; name != "" {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cfg, err := client.MutatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			changed := false
			for i := range cfg.Webhooks {
				changed = setBundle(&cfg.Webhooks[i].ClientConfig, bundle) || changed
			}
			if !changed {
				return nil
			}
			if _, err := client.MutatingWebhookConfigurations().Update(ctx, cfg, metav1.UpdateOptions{}); err != nil {
				return err
			}
			logger.Info("Updated caBundle", "mutatingWebhookConfiguration", name, "webhooks", len(cfg.Webhooks))
			return nil
		})
		if err != nil {
			return fmt.Errorf("writing caBundle of MutatingWebhookConfiguration %s: %w", name, err)
		}
	}
	if name := w.m.opts.ValidatingWebhookConfiguration; name != "" {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cfg, err := client.ValidatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			changed := false
			for i := range cfg.Webhooks {
				changed = setBundle(&cfg.Webhooks[i].ClientConfig, bundle) || changed
			}
			if !changed {
				return nil
			}
			if _, err := client.ValidatingWebhookConfigurations().Update(ctx, cfg, metav1.UpdateOptions{}); err != nil {
				return err
			}
			logger.Info("Updated caBundle", "validatingWebhookConfiguration", name, "webhooks", len(cfg.Webhooks))
			return nil
		})
		if err != nil {
			return fmt.Errorf("writing caBundle of ValidatingWebhookConfiguration %s: %w", name, err)
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
