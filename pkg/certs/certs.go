// Package certs gives the IPP webhook its TLS without external tools: it creates a CA and a
// serving certificate, writes the CA into the webhook configurations' caBundle, and rotates both
// before they expire, with no restart.
//
// Two Secrets hold them. The serving Secret (tls.crt, tls.key and the CA bundle ca.crt) is what
// every replica watches and serves from. The CA Secret (the signing CA's ca.crt and ca.key) is
// read through the API only when something must be signed, and never watched or mounted, so that
// the CA's private key is not in the memory or on the disk of a replica that only serves. Writes
// go to the CA Secret first and to the serving Secret second; a CA Secret that is ahead of the
// serving Secret (a crash between the two) is taken up by the next sync. A serving Secret of the
// combined format of earlier versions, with ca.key, is split: the key is copied to the CA Secret
// and removed from the serving Secret Overlap later (AnnotationCAKeyMovedAt).
//
// All replicas run a Manager. They agree through the Secrets alone, with optimistic concurrency:
// the first to create a Secret wins and the others read it, and every later change is an update
// at the resourceVersion that was read, retried from a fresh read on conflict. Every decision is
// recomputed from the Secrets and the clock, so nothing lives only in memory.
//
// The serving certificate is renewed at two thirds of its lifetime. The CA lives longer and is
// rotated with overlap: the new CA joins the bundle first, the serving certificate switches to
// it once both webhook configurations trust it and Overlap has passed, and the old CA leaves the
// bundle Overlap after that.
package certs

import (
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/clock"
)

// FieldManager names the webhook's TLS management in the managedFields of what it writes: its
// Secrets and the caBundle of the webhook configurations.
const FieldManager = "ipp-webhook-tls"

// Defaults of Options.
const (
	DefaultNamespace       = "ipp-system"
	DefaultSecretName      = "ipp-webhook-tls"
	DefaultCASecretName    = "ipp-webhook-ca"
	DefaultServiceName     = "ipp"
	DefaultWebhookConfig   = "ipp"
	DefaultCAValidity      = 5 * 365 * 24 * time.Hour
	DefaultServingValidity = 90 * 24 * time.Hour
	DefaultOverlap         = 10 * time.Minute
	DefaultResync          = time.Minute
)

// Options configure self-managed TLS.
type Options struct {
	// SecretName is the Secret that holds the serving certificate and the CA bundle, which
	// every replica watches and serves from. Empty disables self-managed TLS (the webhook then
	// serves --tls-cert-file, such as a cert-manager Secret).
	SecretName string
	// CASecretName is the Secret that holds the signing CA and its private key, read only to
	// sign; never watched, and never to be mounted.
	CASecretName string
	// Namespace is the namespace of the Secret and of the Service.
	Namespace string
	// ServiceName is the webhook's Service; the serving certificate is for
	// <service>.<namespace>.svc and <service>.<namespace>.svc.cluster.local.
	ServiceName string
	// ExtraNames are more DNS names or IP addresses for the serving certificate, such as the
	// address in a webhook configuration's url.
	ExtraNames []string
	// MutatingWebhookConfiguration and ValidatingWebhookConfiguration are the configurations
	// whose every webhook entry gets the CA bundle. Empty leaves that kind alone.
	MutatingWebhookConfiguration   string
	ValidatingWebhookConfiguration string
	// CAValidity and ServingValidity are the certificates' lifetimes; each is renewed at two
	// thirds of it. ServingValidity must be shorter than CAValidity.
	CAValidity      time.Duration
	ServingValidity time.Duration
	// Overlap is how long both CAs are trusted on each side of the switch of the serving
	// certificate to a new CA. It must exceed the time the apiserver takes to see a webhook
	// configuration change and the replicas to see a Secret change (seconds).
	Overlap time.Duration
	// Resync is how often the webhook configurations are checked even when nothing is due, so
	// that a caBundle overwritten by someone else is put back.
	Resync time.Duration
	// Clock tells the time; nil means the real clock.
	Clock clock.WithTicker
}

// NewOptions returns the defaults, with self-managed TLS disabled. The namespace defaults to
// $POD_NAMESPACE when set (the Deployment passes it from the downward API).
func NewOptions() *Options {
	ns := os.Getenv("POD_NAMESPACE")
	if ns == "" {
		ns = DefaultNamespace
	}
	return &Options{
		Namespace:                      ns,
		CASecretName:                   DefaultCASecretName,
		ServiceName:                    DefaultServiceName,
		MutatingWebhookConfiguration:   DefaultWebhookConfig,
		ValidatingWebhookConfiguration: DefaultWebhookConfig,
		CAValidity:                     DefaultCAValidity,
		ServingValidity:                DefaultServingValidity,
		Overlap:                        DefaultOverlap,
		Resync:                         DefaultResync,
	}
}

// AddFlags adds the self-managed TLS flags to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.SecretName, "tls-secret", o.SecretName, "Self-managed TLS: the Secret (in --tls-secret-namespace) where ipp creates and rotates its own CA and serving certificate, and serves from. Empty (the default) serves --tls-cert-file instead. Not both.")
	fs.StringVar(&o.CASecretName, "tls-ca-secret", o.CASecretName, "Self-managed TLS: the Secret (in --tls-secret-namespace) that holds the CA's certificate and private key. ipp reads it through the API only to sign or rotate, never watches it, and it must never be mounted into a Pod; --tls-secret holds only what serving needs.")
	fs.StringVar(&o.Namespace, "tls-secret-namespace", o.Namespace, "Namespace of --tls-secret and of --tls-service. Defaults to $POD_NAMESPACE, else ipp-system.")
	fs.StringVar(&o.ServiceName, "tls-service", o.ServiceName, "Self-managed TLS: the webhook's Service; the serving certificate is for <service>.<namespace>.svc and <service>.<namespace>.svc.cluster.local.")
	fs.StringSliceVar(&o.ExtraNames, "tls-extra-names", o.ExtraNames, "Self-managed TLS: more DNS names or IP addresses for the serving certificate, comma-separated (for a webhook configuration that uses a url).")
	fs.StringVar(&o.MutatingWebhookConfiguration, "mutating-webhook-configuration", o.MutatingWebhookConfiguration, "Self-managed TLS: MutatingWebhookConfiguration whose webhooks get the CA bundle. Empty leaves it alone.")
	fs.StringVar(&o.ValidatingWebhookConfiguration, "validating-webhook-configuration", o.ValidatingWebhookConfiguration, "Self-managed TLS: ValidatingWebhookConfiguration whose webhooks get the CA bundle. Empty leaves it alone.")
	fs.DurationVar(&o.CAValidity, "tls-ca-validity", o.CAValidity, "Self-managed TLS: lifetime of the CA. It is rotated, with overlap, at two thirds of it.")
	fs.DurationVar(&o.ServingValidity, "tls-serving-validity", o.ServingValidity, "Self-managed TLS: lifetime of the serving certificate. It is renewed at two thirds of it. Must be shorter than --tls-ca-validity.")
	fs.DurationVar(&o.Overlap, "tls-rotation-overlap", o.Overlap, "Self-managed TLS: how long the old and the new CA are both trusted on each side of a CA rotation.")
}

// Enabled reports whether self-managed TLS is on.
func (o *Options) Enabled() bool { return o.SecretName != "" }

// Validate reports the first option that is not valid, naming its flag.
func (o *Options) Validate() error {
	for _, f := range []struct{ flag, value string }{
		{"--tls-secret", o.SecretName},
		{"--tls-ca-secret", o.CASecretName},
		{"--tls-secret-namespace", o.Namespace},
		{"--tls-service", o.ServiceName},
	} {
		if errs := validation.IsDNS1123Subdomain(f.value); f.value != "" && len(errs) > 0 {
			return fmt.Errorf("invalid %s %q: %s", f.flag, f.value, strings.Join(errs, "; "))
		}
	}
	if o.Namespace == "" {
		return fmt.Errorf("invalid --tls-secret-namespace: must not be empty")
	}
	if o.ServiceName == "" {
		return fmt.Errorf("invalid --tls-service: must not be empty")
	}
	if o.CASecretName == "" {
		return fmt.Errorf("invalid --tls-ca-secret: must not be empty")
	}
	if o.CASecretName == o.SecretName {
		return fmt.Errorf("invalid --tls-ca-secret %q: must differ from --tls-secret, which every replica watches", o.CASecretName)
	}
	if errs := validation.IsDNS1123Label(o.ServiceName); len(errs) > 0 {
		return fmt.Errorf("invalid --tls-service %q: %s", o.ServiceName, strings.Join(errs, "; "))
	}
	for _, n := range o.ExtraNames {
		if net.ParseIP(n) != nil {
			continue
		}
		if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
			return fmt.Errorf("invalid --tls-extra-names entry %q: must be an IP address or a DNS name: %s", n, strings.Join(errs, "; "))
		}
	}
	if o.CAValidity <= 0 {
		return fmt.Errorf("invalid --tls-ca-validity %s: must be positive", o.CAValidity)
	}
	if o.ServingValidity <= 0 || o.ServingValidity >= o.CAValidity {
		return fmt.Errorf("invalid --tls-serving-validity %s: must be positive and shorter than --tls-ca-validity (%s)", o.ServingValidity, o.CAValidity)
	}
	if o.Overlap < 0 || o.Overlap >= o.ServingValidity/3 {
		return fmt.Errorf("invalid --tls-rotation-overlap %s: must be at least 0 and shorter than a third of --tls-serving-validity", o.Overlap)
	}
	return nil
}

// names returns the serving certificate's names, sorted.
func (o *Options) names() []string {
	svc := o.ServiceName + "." + o.Namespace + ".svc"
	names := []string{svc, svc + ".cluster.local"}
	for _, n := range o.ExtraNames {
		if ip := net.ParseIP(n); ip != nil {
			n = ip.String()
		}
		names = append(names, n)
	}
	slices.Sort(names)
	return slices.Compact(names)
}
