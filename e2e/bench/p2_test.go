package bench

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ipp-project/ipp/e2e/framework"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/webhook"
)

// TestGenerateLoad runs the load generator briefly against webhook.Serve: every answer must
// count, and a server that answers with the wrong UID, a denial or no patch must count errors.
func TestGenerateLoad(t *testing.T) {
	ca, err := framework.NewCA("ipp-bench-test-ca")
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.ServingCert("ipp-webhook", []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := kp.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	// P2's bodies against a webhook of each placement: /validate must allow what /mutate made.
	for _, placement := range isolation.Placements {
		t.Run(placement, func(t *testing.T) {
			iso := P2Config{Placement: isolation.Placement(placement)}.webhookConfig()
			mutate, validate, err := p2Bodies(iso)
			if err != nil {
				t.Fatal(err)
			}
			url, stop, err := serveWebhook(t.Context(), iso, &cert)
			if err != nil {
				t.Fatal(err)
			}
			defer stop()
			for _, c := range []struct {
				path string
				body []byte
				h2   bool
			}{{webhook.MutatePath, mutate, false}, {webhook.ValidatePath, validate, false}, {webhook.MutatePath, mutate, true}} {
				run, err := generateLoad(t.Context(), url+c.path, c.body, ca.CertPool(), 2, c.h2, 0, 50*time.Millisecond, 200*time.Millisecond, os.Getpid())
				if err != nil {
					t.Fatal(err)
				}
				if run.Requests == 0 || run.Errors != 0 {
					t.Errorf("%s (HTTP/2 %v): %d requests, %d errors; want some and none", c.path, c.h2, run.Requests, run.Errors)
				}
			}
		})
	}

	// Wrong answers: a stale UID, a denial, /validate's answer (no patch) to /mutate.
	mutate, _, err := p2Bodies(isolation.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	for name, answer := range map[string]string{
		"stale uid": `{"response":{"uid":"` + p2UID + `","allowed":true,"patch":"W10="}}`,
		"denial":    `{"response":{"uid":"UID","allowed":false,"patch":"W10="}}`,
		"no patch":  `{"response":{"uid":"UID","allowed":true}}`,
	} {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			in := make([]byte, r.ContentLength)
			_, _ = r.Body.Read(in)
			uid := string(in[strings.Index(string(in), `"uid":"`)+7:][:len(p2UID)])
			_, _ = w.Write([]byte(strings.Replace(answer, "UID", uid, 1)))
		}))
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		srv.Listener.Close()
		if srv.Listener, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		srv.StartTLS()
		run, err := generateLoad(t.Context(), srv.URL+webhook.MutatePath, mutate, ca.CertPool(), 1, false, 0, 0, 100*time.Millisecond, os.Getpid())
		srv.Close()
		if err != nil {
			t.Fatal(err)
		}
		if run.Requests != 0 || run.Errors == 0 {
			t.Errorf("%s: %d requests counted, %d errors; want none and some", name, run.Requests, run.Errors)
		}
	}
}
