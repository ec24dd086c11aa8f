package certs

import (
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func testPlanConfig() planConfig {
	return planConfig{
		names:           []string{"ipp.ipp-system.svc", "ipp.ipp-system.svc.cluster.local"},
		caValidity:      3000 * time.Hour,
		servingValidity: 90 * time.Hour,
		overlap:         time.Hour,
	}
}

func trustedOnly(ca *x509.Certificate) func(*x509.Certificate) bool {
	return func(c *x509.Certificate) bool { return c.Equal(ca) }
}

// TestPlanTimeline walks one state through its life on a fake clock: creation, serving renewals,
// a CA rotation with overlap, and recovery from a broken Secret.
func TestPlanTimeline(t *testing.T) {
	cfg := testPlanConfig()
	var (
		st        *state
		now       = t0
		recheck   time.Time
		installed = map[string]bool{} // CA serials the webhook configurations trust
		firstCA   *x509.Certificate
	)
	caInstalled := func(ca *x509.Certificate) bool { return installed[ca.SerialNumber.String()] }
	step := func(t *testing.T, at time.Time, want []string) {
		t.Helper()
		now = at
		next, cs, rc, err := plan(cfg, st, now, caInstalled)
		changes := changeStrings(cs)
		if len(changes) == 0 {
			changes = nil
		}
		if err != nil {
			t.Fatalf("plan at %v: %v", now, err)
		}
		if diff := cmp.Diff(want, changes); diff != "" {
			t.Fatalf("changes at t0+%v (-want +got):\n%s", now.Sub(t0), diff)
		}
		if !rc.After(now) && len(changes) > 0 {
			// After a change nothing is due at once, except waiting on the webhook configurations.
			t.Fatalf("recheck %v is not after now %v", rc, now)
		}
		st, recheck = next, rc
		// Check the invariants of every stored state.
		if !st.trusted[0].Equal(st.ca.cert) {
			t.Errorf("bundle does not start with the signing CA")
		}
		ok := false
		for _, c := range st.trusted {
			ok = ok || signedBy(st.serving.cert, c)
		}
		if !ok {
			t.Errorf("serving certificate is not signed by any CA of the bundle")
		}
		if st.serving.cert.NotAfter.Before(now) || st.ca.cert.NotAfter.Before(now) {
			t.Errorf("an expired certificate is stored")
		}
	}

	step(t, t0, []string{"ca: created", "serving: issued (none)"})
	firstCA = st.ca.cert
	installed[firstCA.SerialNumber.String()] = true
	servingRenew := renewAt(st.serving.cert)
	if !recheck.Equal(servingRenew) {
		t.Fatalf("recheck = %v, want the serving renewal time %v", recheck, servingRenew)
	}
	// 59 hours in: nothing to do. 60 hours in: two thirds of 90h, renewal.
	step(t, t0.Add(59*time.Hour), nil)
	step(t, servingRenew, []string{"serving: issued (due for renewal)"})
	if !st.ca.cert.Equal(firstCA) {
		t.Fatalf("renewing the serving certificate changed the CA")
	}

	// Renew serving until the CA is due: two thirds of 3000h.
	caRenew := renewAt(firstCA)
	for recheck.Before(caRenew) {
		step(t, recheck, []string{"serving: issued (due for renewal)"})
	}
	oldServing := st.serving.cert
	step(t, caRenew, []string{"ca: rotated"})
	if len(st.trusted) != 2 || !st.trusted[1].Equal(firstCA) || !st.serving.cert.Equal(oldServing) {
		t.Fatalf("after the CA rotation: %d trusted CAs, serving changed=%v; want old and new CA, same serving", len(st.trusted), !st.serving.cert.Equal(oldServing))
	}
	rotatedCA := st.ca.cert
	if want := issuedAt(rotatedCA).Add(cfg.overlap); !recheck.Equal(want) {
		t.Fatalf("recheck = %v, want the end of the overlap %v", recheck, want)
	}
	// The overlap has passed but the webhook configurations do not trust the new CA yet: wait.
	step(t, recheck, nil)
	step(t, recheck.Add(10*time.Minute), nil)
	installed[rotatedCA.SerialNumber.String()] = true
	step(t, now.Add(time.Second), []string{"serving: issued (switching to the new CA)"})
	if !signedBy(st.serving.cert, rotatedCA) || len(st.trusted) != 2 {
		t.Fatalf("after the switch: serving signed by new CA=%v, %d trusted; want true, 2", signedBy(st.serving.cert, rotatedCA), len(st.trusted))
	}
	if want := issuedAt(st.serving.cert).Add(cfg.overlap); !recheck.Equal(want) {
		t.Fatalf("recheck = %v, want overlap after the switch %v", recheck, want)
	}
	step(t, recheck.Add(-time.Second), nil)
	step(t, recheck, []string{"bundle: dropped the previous CA"})
	if len(st.trusted) != 1 || !st.trusted[0].Equal(rotatedCA) {
		t.Fatalf("after the overlap: %d trusted CAs, want the new CA alone", len(st.trusted))
	}

	// Broken or stale Secrets are repaired.
	t.Run("names changed", func(t *testing.T) {
		cfg2 := cfg
		cfg2.names = append([]string{"10.0.0.1"}, cfg.names...)
		_, cs, _, err := plan(cfg2, st, now, trustedOnly(st.ca.cert))
		if err != nil {
			t.Fatal(err)
		}
		changes := changeStrings(cs)
		if len(changes) != 1 || !strings.HasPrefix(changes[0], "serving: issued (names") {
			t.Errorf("changes = %q, want one serving issue for the names", changes)
		}
	})
	t.Run("CA key lost", func(t *testing.T) {
		// The CA Secret is gone: a new CA joins the bundle as in a rotation; what is served
		// stays until the switch.
		data := st.encode()
		delete(data, KeyCAKey)
		next, cs, _, err := plan(cfg, decodeState(data), now, trustedOnly(st.ca.cert))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"ca: created (no usable key for the previous CA)"}, changeStrings(cs)); diff != "" {
			t.Errorf("changes (-want +got):\n%s", diff)
		}
		if len(next.trusted) != 2 || !next.trusted[1].Equal(st.ca.cert) || !next.serving.cert.Equal(st.serving.cert) {
			t.Errorf("after a lost key: %d trusted CAs, serving changed=%v; want the new and the old CA, same serving", len(next.trusted), !next.serving.cert.Equal(st.serving.cert))
		}
	})
	t.Run("CA Secret not read", func(t *testing.T) {
		// Planning from the serving Secret alone: nothing to sign, nothing to read; something
		// to sign, errNeedCAKey.
		pub := decodeServing(st.encodeServing())
		if _, cs, _, err := plan(cfg, pub, now, trustedOnly(st.ca.cert)); err != nil || len(cs) != 0 {
			t.Errorf("plan with nothing due = %q, %v; want no change, no error", changeStrings(cs), err)
		}
		if _, _, _, err := plan(cfg, pub, renewAt(st.serving.cert), trustedOnly(st.ca.cert)); !errors.Is(err, errNeedCAKey) {
			t.Errorf("plan with a renewal due = %v, want errNeedCAKey", err)
		}
		if _, _, _, err := plan(cfg, &state{}, now, nil); !errors.Is(err, errNeedCAKey) {
			t.Errorf("plan with no serving Secret = %v, want errNeedCAKey", err)
		}
	})
	t.Run("CA expired", func(t *testing.T) {
		_, cs, _, err := plan(cfg, st, st.ca.cert.NotAfter, trustedOnly(st.ca.cert))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"ca: created", "serving: issued (none)"}, changeStrings(cs)); diff != "" {
			t.Errorf("changes (-want +got):\n%s", diff)
		}
	})
	t.Run("serving signed by an unknown CA", func(t *testing.T) {
		other, err := newCA(now, cfg.caValidity)
		if err != nil {
			t.Fatal(err)
		}
		foreign, err := newServing(now, cfg.servingValidity, cfg.names, other)
		if err != nil {
			t.Fatal(err)
		}
		bad := &state{ca: st.ca, trusted: st.trusted, serving: foreign, keyLoaded: true}
		_, cs, _, err := plan(cfg, bad, now, trustedOnly(st.ca.cert))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"serving: issued (not signed by a trusted CA)"}, changeStrings(cs)); diff != "" {
			t.Errorf("changes (-want +got):\n%s", diff)
		}
	})
}

// TestPlanNoChangeIsStable checks that a plan with nothing to do returns the same certificates,
// so that replicas which agree write nothing.
func TestPlanNoChangeIsStable(t *testing.T) {
	cfg := testPlanConfig()
	st, _, _, err := plan(cfg, nil, t0, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []time.Duration{0, time.Minute, 59 * time.Hour} {
		next, changes, _, err := plan(cfg, decodeState(st.encode()), t0.Add(d), trustedOnly(st.ca.cert))
		if err != nil {
			t.Fatal(err)
		}
		if len(changes) != 0 || !next.serving.cert.Equal(st.serving.cert) || !next.ca.cert.Equal(st.ca.cert) {
			t.Errorf("at t0+%v: changes %q, want none and the same certificates", d, changes)
		}
	}
}
