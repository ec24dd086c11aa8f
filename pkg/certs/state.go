package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Keys of the two Secrets. The serving Secret (Options.SecretName) holds tls.crt, tls.key and
// ca.crt: tls.crt and tls.key make it a kubernetes.io/tls Secret that anything else can mount, and
// ca.crt is what clients must trust, like cert-manager's. The CA Secret (Options.CASecretName)
// holds the signing CA's ca.crt and ca.key; it is read only when something must be signed.
const (
	// KeyServingCert is the serving certificate (PEM).
	KeyServingCert = corev1.TLSCertKey
	// KeyServingKey is the serving certificate's private key (PEM).
	KeyServingKey = corev1.TLSPrivateKeyKey
	// KeyCABundle is, in the serving Secret, every CA that clients must trust (PEM), the signing
	// CA first: two CAs while the CA is being rotated. It is what the webhook configurations'
	// caBundle holds. In the CA Secret it is the signing CA's certificate alone.
	KeyCABundle = "ca.crt"
	// KeyCAKey is, in the CA Secret, the private key of the signing CA (PEM). Earlier versions kept
	// it in the serving Secret; a Manager moves it (see AnnotationCAKeyMovedAt).
	KeyCAKey = "ca.key"
	// AnnotationCAKeyMovedAt marks a serving Secret of the combined format of earlier versions
	// whose ca.key has been copied to the CA Secret, with the time (RFC 3339) of the copy. The
	// serving Secret keeps ca.key, the current signing key, for Options.Overlap after that, so
	// that replicas of the earlier version still find it during a rolling upgrade; then ca.key
	// and this annotation are removed.
	AnnotationCAKeyMovedAt = "ipp.io/ca-key-moved-at"
)

// errNeedCAKey is returned by plan when it must sign or make a CA but the CA Secret was not read:
// the caller reads it and plans again.
var errNeedCAKey = errors.New("the CA Secret must be read")

// state is what the two Secrets hold, parsed.
type state struct {
	// ca signs serving certificates: the bundle's first CA, with its key once the CA Secret has
	// been read. Nil when no CA is known, or the CA Secret was read and held no usable key for it.
	ca *keyPair
	// trusted is the CA bundle: ca first (when known), then older CAs still in their overlap.
	trusted []*x509.Certificate
	// serving is the serving certificate. Nil when the Secret has none that parses and matches
	// its key.
	serving *keyPair
	// keyLoaded reports whether the CA Secret was read: ca then has its key, or is nil.
	keyLoaded bool
}

// decodeServing parses the serving Secret's data: the bundle, whose first CA is the signing CA
// (without its key), and the serving certificate. Parts that are missing or broken come back nil
// or empty, so that the plan replaces them; decodeServing never fails.
func decodeServing(data map[string][]byte) *state {
	st := &state{}
	if bundle, err := parseCerts(data[KeyCABundle]); err == nil {
		for _, c := range bundle {
			if c.IsCA && !slices.ContainsFunc(st.trusted, c.Equal) {
				st.trusted = append(st.trusted, c)
			}
		}
	}
	if len(st.trusted) > 0 {
		st.ca = &keyPair{cert: st.trusted[0], certPEM: encodeCerts(st.trusted[:1])}
	}
	if pair, err := tls.X509KeyPair(data[KeyServingCert], data[KeyServingKey]); err == nil && pair.Leaf != nil {
		if key, err := parseKey(data[KeyServingKey]); err == nil {
			st.serving = &keyPair{cert: pair.Leaf, key: key, certPEM: data[KeyServingCert], keyPEM: data[KeyServingKey]}
		}
	}
	return st
}

// caPair parses a certificate bundle and a key into the CA in the bundle that the key signs for.
func caPair(certPEM, keyPEM []byte) *keyPair {
	certs, err := parseCerts(certPEM)
	if err != nil {
		return nil
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil
	}
	for _, c := range certs {
		if c.IsCA && matches(c, key) {
			return &keyPair{cert: c, key: key, certPEM: encodeCerts([]*x509.Certificate{c}), keyPEM: keyPEM}
		}
	}
	return nil
}

// withCA returns st completed from the CA Secret's data (nil if there is none) and legacyKey,
// the ca.key of a serving Secret in the combined format of earlier versions. The signing CA is,
// in this order: the bundle's first CA with legacyKey, if that is its key (the combined Secret
// was written last, by a replica of the earlier version); the bundle's first CA with the CA
// Secret's key; the CA Secret's CA if it is newer than every CA of the bundle, which then gets it
// in front (a rotation whose serving Secret write was lost in a crash; the change says so).
// Otherwise the key is lost: ca is nil and plan makes a new CA.
func (st *state) withCA(caData map[string][]byte, legacyKey []byte) (*state, []change) {
	next := &state{trusted: slices.Clone(st.trusted), serving: st.serving, keyLoaded: true}
	if len(next.trusted) > 0 {
		if legacy := caPair(encodeCerts(next.trusted[:1]), legacyKey); legacy != nil {
			next.ca = legacy
			return next, nil
		}
	}
	stored := caPair(caData[KeyCABundle], caData[KeyCAKey])
	switch {
	case stored == nil:
		return next, nil
	case len(next.trusted) > 0 && stored.cert.Equal(next.trusted[0]):
		next.ca = stored
		return next, nil
	case slices.ContainsFunc(next.trusted, func(c *x509.Certificate) bool { return !c.NotBefore.Before(stored.cert.NotBefore) }):
		// Not newer than the bundle: a stale CA Secret, not an unfinished rotation.
		return next, nil
	}
	next.ca = stored
	next.trusted = append([]*x509.Certificate{stored.cert}, next.trusted...)
	return next, []change{{changeBundle, "added the CA Secret's newer CA"}}
}

// decodeState parses data in the combined format of earlier versions, the serving Secret's keys
// and ca.key in one map, as the CA Secret had been read.
func decodeState(data map[string][]byte) *state {
	st, _ := decodeServing(data).withCA(nil, data[KeyCAKey])
	return st
}

// encodeServing returns the serving Secret's data of st.
func (st *state) encodeServing() map[string][]byte {
	return map[string][]byte{
		KeyServingCert: st.serving.certPEM,
		KeyServingKey:  st.serving.keyPEM,
		KeyCABundle:    encodeCerts(st.trusted),
	}
}

// encodeCA returns the CA Secret's data of st, whose CA Secret must have been read.
func (st *state) encodeCA() map[string][]byte {
	return map[string][]byte{
		KeyCABundle: st.ca.certPEM,
		KeyCAKey:    st.ca.keyPEM,
	}
}

// encode returns st in the combined format of earlier versions: the serving Secret's data and
// ca.key.
func (st *state) encode() map[string][]byte {
	data := st.encodeServing()
	data[KeyCAKey] = st.ca.keyPEM
	return data
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
	// changeSplit moves the CA key of a combined Secret; it makes no certificate.
	changeSplit changeKind = "split"
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

// plan returns the state that should be stored at now, given the current one (nil if neither
// Secret exists), what changed (empty if nothing), and when the state must be looked at again. It
// returns errNeedCAKey, and nothing else, when it must sign or make a CA but cur.keyLoaded is
// false; the caller reads the CA Secret and plans again.
//
// caInstalled reports whether every webhook configuration already trusts a CA; it is called only
// when the plan wants to switch serving to a new CA, and the switch waits until it returns true,
// so that the apiserver never sees a certificate it does not trust yet.
//
// The CA is rotated at two thirds of its lifetime with overlap: the new CA joins the bundle
// (serving stays on the old CA), serving switches to the new CA once the new bundle is installed
// and overlap has passed, and the old CA leaves the bundle overlap after that. A CA whose key is
// lost (the CA Secret deleted) is replaced the same way, as long as the bundle still trusts the
// serving certificate.
func plan(cfg planConfig, cur *state, now time.Time, caInstalled func(*x509.Certificate) bool) (*state, []change, time.Time, error) {
	next := &state{keyLoaded: true}
	if cur != nil {
		next.ca, next.serving, next.trusted, next.keyLoaded = cur.ca, cur.serving, slices.Clone(cur.trusted), cur.keyLoaded
	}
	var changes []change
	needKey := func() error {
		if !next.keyLoaded {
			return errNeedCAKey
		}
		return nil
	}

	switch {
	case next.ca == nil && slices.ContainsFunc(next.trusted, func(c *x509.Certificate) bool { return now.Before(c.NotAfter) }):
		// The key of the bundle's CA is lost, but the bundle still trusts what is served: a new
		// CA joins it, as in a rotation.
		if err := needKey(); err != nil {
			return nil, nil, time.Time{}, err
		}
		ca, err := newCA(now, cfg.caValidity)
		if err != nil {
			return nil, nil, time.Time{}, err
		}
		next.ca = ca
		next.trusted = append([]*x509.Certificate{ca.cert}, next.trusted...)
		changes = append(changes, change{changeCA, "created (no usable key for the previous CA)"})
	case next.ca == nil || !now.Before(next.ca.cert.NotAfter):
		if err := needKey(); err != nil {
			return nil, nil, time.Time{}, err
		}
		ca, err := newCA(now, cfg.caValidity)
		if err != nil {
			return nil, nil, time.Time{}, err
		}
		// Nothing to overlap with: start over.
		next.ca, next.trusted, next.serving = ca, []*x509.Certificate{ca.cert}, nil
		changes = append(changes, change{changeCA, "created"})
	case !now.Before(renewAt(next.ca.cert)):
		if err := needKey(); err != nil {
			return nil, nil, time.Time{}, err
		}
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
		if err := needKey(); err != nil {
			return nil, nil, time.Time{}, err
		}
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
	// Serving still on the previous CA may move to the new one only once the webhook
	// configurations trust it and overlap has passed; until then even a renewal waits (overlap is
	// shorter than the last third of the serving certificate's life).
	onCA := signedBy(s.cert, st.ca.cert)
	switch {
	case !trusted:
		return "not signed by a trusted CA"
	case !slices.Equal(certNames(s.cert), cfg.names):
		return fmt.Sprintf("names %v, want %v", certNames(s.cert), cfg.names)
	case !now.Before(s.cert.NotAfter):
		return "expired"
	case onCA && !now.Before(renewAt(s.cert)):
		return "due for renewal"
	case !onCA && !now.Before(issuedAt(st.ca.cert).Add(cfg.overlap)) && caInstalled(st.ca.cert):
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
