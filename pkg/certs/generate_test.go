package certs

import (
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestGenerate(t *testing.T) {
	ca, err := newCA(t0, 1000*time.Hour)
	if err != nil {
		t.Fatalf("newCA: %v", err)
	}
	if !ca.cert.IsCA || ca.cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA: IsCA=%v KeyUsage=%v, want a signing CA", ca.cert.IsCA, ca.cert.KeyUsage)
	}
	if got, want := ca.cert.NotBefore, t0.Add(-maxBackdate); !got.Equal(want) {
		t.Errorf("CA NotBefore = %v, want %v", got, want)
	}
	if got := issuedAt(ca.cert); !got.Equal(t0) {
		t.Errorf("issuedAt(CA) = %v, want %v", got, t0)
	}
	if !matches(ca.cert, ca.key) {
		t.Errorf("CA key does not match its certificate")
	}

	tests := []struct {
		name         string
		validity     time.Duration
		names        []string
		wantNotAfter time.Time
		wantDNS      []string
		wantIPs      []string
		wantCN       string
	}{
		{
			name:         "service names",
			validity:     100 * time.Hour,
			names:        []string{"ipp.ipp-system.svc", "ipp.ipp-system.svc.cluster.local"},
			wantNotAfter: t0.Add(100 * time.Hour),
			wantDNS:      []string{"ipp.ipp-system.svc", "ipp.ipp-system.svc.cluster.local"},
			wantCN:       "ipp.ipp-system.svc",
		},
		{
			name:         "an IP address and a validity beyond the CA's",
			validity:     5000 * time.Hour,
			names:        []string{"127.0.0.1", "ipp.ipp-system.svc"},
			wantNotAfter: ca.cert.NotAfter,
			wantDNS:      []string{"ipp.ipp-system.svc"},
			wantIPs:      []string{"127.0.0.1"},
			wantCN:       "ipp.ipp-system.svc",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := newServing(t0, tc.validity, tc.names, ca)
			if err != nil {
				t.Fatalf("newServing: %v", err)
			}
			var ips []string
			for _, ip := range s.cert.IPAddresses {
				ips = append(ips, ip.String())
			}
			got := []any{s.cert.DNSNames, ips, s.cert.Subject.CommonName, s.cert.NotAfter.UTC(), s.cert.IsCA}
			want := []any{tc.wantDNS, tc.wantIPs, tc.wantCN, tc.wantNotAfter, false}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("serving certificate (-want +got):\n%s", diff)
			}
			roots := x509.NewCertPool()
			roots.AddCert(ca.cert)
			for _, n := range tc.names {
				opts := x509.VerifyOptions{Roots: roots, CurrentTime: t0, DNSName: n}
				if ip := net.ParseIP(n); ip != nil {
					opts.DNSName = ip.String()
				}
				if _, err := s.cert.Verify(opts); err != nil {
					t.Errorf("Verify for %s: %v", n, err)
				}
			}
		})
	}
	if _, err := newServing(t0, time.Hour, nil, ca); err == nil {
		t.Errorf("newServing with no names succeeded")
	}
}

func TestBackdate(t *testing.T) {
	for _, validity := range []time.Duration{21 * time.Second, 42 * time.Second, 10 * time.Minute, 20 * time.Minute, time.Hour, 90 * 24 * time.Hour} {
		ca, err := newCA(t0, validity)
		if err != nil {
			t.Fatal(err)
		}
		if got := issuedAt(ca.cert); got.Sub(t0).Abs() > time.Second {
			t.Errorf("validity %v: issuedAt = t0%+v, want t0 (within x509's second)", validity, got.Sub(t0))
		}
		if b := t0.Sub(ca.cert.NotBefore); b <= 0 || b > maxBackdate {
			t.Errorf("validity %v: backdated by %v, want (0, %v]", validity, b, maxBackdate)
		}
	}
}

func TestDecodeStateRoundTrip(t *testing.T) {
	cfg := testPlanConfig()
	st, _, _, err := plan(cfg, nil, t0, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := decodeState(st.encode())
	if got.ca == nil || !got.ca.cert.Equal(st.ca.cert) || got.serving == nil || !got.serving.cert.Equal(st.serving.cert) || len(got.trusted) != 1 {
		t.Fatalf("decodeState(encode()) lost data: %+v", got)
	}

	broken := []struct {
		name string
		edit func(map[string][]byte)
		// wantCA and wantServing say which parts survive.
		wantCA, wantServing bool
	}{
		{"empty", func(d map[string][]byte) { clear(d) }, false, false},
		{"garbage CA key", func(d map[string][]byte) { d[KeyCAKey] = []byte("not a key") }, false, true},
		{"serving key of another pair", func(d map[string][]byte) { d[KeyServingKey] = d[KeyCAKey] }, true, false},
		{"serving cert truncated", func(d map[string][]byte) { d[KeyServingCert] = d[KeyServingCert][:40] }, true, false},
	}
	for _, tc := range broken {
		t.Run(tc.name, func(t *testing.T) {
			data := st.encode()
			tc.edit(data)
			got := decodeState(data)
			if (got.ca != nil) != tc.wantCA || (got.serving != nil) != tc.wantServing {
				t.Errorf("decodeState: ca=%v serving=%v, want ca=%v serving=%v", got.ca != nil, got.serving != nil, tc.wantCA, tc.wantServing)
			}
		})
	}
}
