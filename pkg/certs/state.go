package certs

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Keys of the TLS Secret. tls.crt and tls.key make it a kubernetes.io/tls Secret that anything
// else can mount; ca.crt is what clients must trust, like cert-manager's.
const (
	// KeyServingCert is the serving certificate (PEM).
	KeyServingCert = corev1.TLSCertKey
	// KeyServingKey is the serving certificate's private key (PEM).
	KeyServingKey = corev1.TLSPrivateKeyKey
	// KeyCABundle is every CA that clients must trust (PEM), the signing CA first. It holds two
	// CAs while the CA is being rotated, and is what the webhook configurations' caBundle holds.
	KeyCABundle = "ca.crt"
	// KeyCAKey is the private key of the signing CA (PEM): the CA in ca.crt whose public key it
	// matches.
	KeyCAKey = "ca.key"
)

// state is what the Secret holds, parsed.
type state struct {
	// ca signs serving certificates. Nil when the Secret has no usable CA.
	ca *keyPair
	// trusted is the CA bundle: ca first, then older CAs still in their overlap.
	trusted []*x509.Certificate
	// serving is the serving certificate. Nil when the Secret has none that parses and matches
	// its key.
	serving *keyPair
}

// decodeState parses a Secret's data. Parts that are missing or broken come back nil, so that the
// plan replaces them; decodeState never fails.
func decodeState(data map[string][]byte) *state {
	st := &state{}
	if bundle, err := parseCerts(data[KeyCABundle]); err == nil {
		if key, err := parseKey(data[KeyCAKey]); err == nil {
			for _, c := range bundle {
				if c.IsCA && matches(c, key) {
					st.ca = &keyPair{cert: c, key: key, certPEM: encodeCerts([]*x509.Certificate{c}), keyPEM: data[KeyCAKey]}
					break
				}
			}
		}
		if st.ca != nil {
			st.trusted = []*x509.Certificate{st.ca.cert}
			for _, c := range bundle {
				if c.IsCA && !c.Equal(st.ca.cert) {
					st.trusted = append(st.trusted, c)
				}
			}
		}
	}
	if pair, err := tls.X509KeyPair(data[KeyServingCert], data[KeyServingKey]); err == nil && pair.Leaf != nil {
		if key, err := parseKey(data[KeyServingKey]); err == nil {
			st.serving = &keyPair{cert: pair.Leaf, key: key, certPEM: data[KeyServingCert], keyPEM: data[KeyServingKey]}
		}
	}
	return st
}

// encode returns the Secret data of st.
func (st *state) encode() map[string][]byte {
	return map[string][]byte{
		KeyServingCert: st.serving.certPEM,
		KeyServingKey:  st.serving.keyPEM,
		KeyCABundle:    encodeCerts(st.trusted),
		KeyCAKey:       st.ca.keyPEM,
	}
}

// bundle returns the PEM CA bundle for the webhook configurations.
func (st *state) bundle() []byte {
	return encodeCerts(st.trusted)
}

// signedBy reports whether cert's signature verifies with ca's key.
func signedBy(cert, ca *x509.Certificate) bool {
	return cert.CheckSignatureFrom(ca) == nil
}

// planConfig is what the plan needs from Options.
type planConfig struct {
	names           []string // sorted
	caValidity      time.Duration
	servingValidity time.Duration
	overlap         time.Duration
}

// changeKind says what a change touched.
type changeKind string

const (
	changeCA      changeKind = "ca"
	changeServing changeKind = "serving"
	changeBundle  changeKind = "bundle"
)

// change is one thing plan changed, for the log and the metrics.
type change struct {
	kind   changeKind
	detail string
}

func (c change) String() string { return string(c.kind) + ": " + c.detail }

// changeStrings returns the changes as strings, for the log.
func changeStrings(changes []change) []string {
	out := make([]string, len(changes))
	for i, c := range changes {
		out[i] = c.String()
	}
	return out
}

// plan returns the state that should be stored at now, given the current one (nil if there is
// no Secret), what changed (empty if nothing), and when the state must be looked at again.
//
// caInstalled reports whether every webhook configuration already trusts a CA; it is called only
// when the plan wants to switch serving to a new CA, and the switch waits until it returns true,
// so that the apiserver never sees a certificate it does not trust yet.
//
// The CA is rotated at two thirds of its lifetime with overlap: the new CA joins the bundle
// (serving stays on the old CA), serving switches to the new CA once the new bundle is installed
// and overlap has passed, and the old CA leaves the bundle overlap after that.
func plan(cfg planConfig, cur *state, now time.Time, caInstalled func(*x509.Certificate) bool) (*state, []change, time.Time, error) {
	next := &state{}
	if cur != nil {
		next.ca, next.serving, next.trusted = cur.ca, cur.serving, slices.Clone(cur.trusted)
	}
	var changes []change

	switch {
	case next.ca == nil || !now.Before(next.ca.cert.NotAfter):
		ca, err := newCA(now, cfg.caValidity)
		if err != nil {
			return nil, nil, time.Time{}, err
		}
		// Nothing to overlap with: start over.
		next.ca, next.trusted, next.serving = ca, []*x509.Certificate{ca.cert}, nil
		changes = append(changes, change{changeCA, "created"})
	case !now.Before(renewAt(next.ca.cert)):
		ca, err := newCA(now, cfg.caValidity)
		if err != nil {
			return nil, nil, time.Time{}, err
		}
		next.ca = ca
		next.trusted = append([]*x509.Certificate{ca.cert}, next.trusted...)
		changes = append(changes, change{changeCA, "rotated"})
	}
	// Drop expired CAs from the bundle.
	trusted := next.trusted[:1]
	for _, c := range next.trusted[1:] {
		if now.Before(c.NotAfter) {
			trusted = append(trusted, c)
		} else {
			changes = append(changes, change{changeBundle, "dropped an expired CA"})
		}
	}
	next.trusted = trusted

	if reason := servingReason(cfg, next, now, caInstalled); reason != "" {
		serving, err := newServing(now, cfg.servingValidity, cfg.names, next.ca)
		if err != nil {
			return nil, nil, time.Time{}, err
		}
		next.serving = serving
		changes = append(changes, change{changeServing, "issued (" + reason + ")"})
	}

	// Serving is on the current CA: once every server has had overlap to pick it up, the
	// previous CA leaves the bundle.
	if len(next.trusted) > 1 && signedBy(next.serving.cert, next.ca.cert) && !now.Before(issuedAt(next.serving.cert).Add(cfg.overlap)) {
		next.trusted = next.trusted[:1]
		changes = append(changes, change{changeBundle, "dropped the previous CA"})
	}

	return next, changes, recheckAt(cfg, next), nil
}

// servingReason says why serving must be issued now, or "" if it need not.
func servingReason(cfg planConfig, st *state, now time.Time, caInstalled func(*x509.Certificate) bool) string {
	s := st.serving
	if s == nil {
		return "none"
	}
	trusted := false
	for _, c := range st.trusted {
		if signedBy(s.cert, c) {
			trusted = true
			break
		}
	}
	switch {
	case !trusted:
		return "not signed by a trusted CA"
	case !slices.Equal(certNames(s.cert), cfg.names):
		return fmt.Sprintf("names %v, want %v", certNames(s.cert), cfg.names)
	case !now.Before(s.cert.NotAfter):
		return "expired"
	case !now.Before(renewAt(s.cert)):
		return "due for renewal"
	case !signedBy(s.cert, st.ca.cert) && !now.Before(issuedAt(st.ca.cert).Add(cfg.overlap)) && caInstalled(st.ca.cert):
		return "switching to the new CA"
	}
	return ""
}

// recheckAt returns the earliest time at which plan may have something to do for st.
func recheckAt(cfg planConfig, st *state) time.Time {
	t := renewAt(st.ca.cert)
	earliest := func(u time.Time) {
		if u.Before(t) {
			t = u
		}
	}
	earliest(renewAt(st.serving.cert))
	if !signedBy(st.serving.cert, st.ca.cert) {
		// Waiting to switch serving to the new CA.
		earliest(issuedAt(st.ca.cert).Add(cfg.overlap))
	} else if len(st.trusted) > 1 {
		// Waiting to drop the previous CA.
		earliest(issuedAt(st.serving.cert).Add(cfg.overlap))
	}
	for _, c := range st.trusted[1:] {
		earliest(c.NotAfter)
	}
	return t
}
