package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/ipp-project/ipp/pkg/admission"
	"github.com/ipp-project/ipp/pkg/admission/admissiontest"
	"github.com/ipp-project/ipp/pkg/internal/cputime"
	"github.com/ipp-project/ipp/pkg/isolation"
)

// testServer is Serve running on 127.0.0.1:0.
type testServer struct {
	addr   string
	client *http.Client
	roots  *x509.CertPool
	cancel context.CancelFunc
	done   chan error
}

// startServer runs Serve with opts (Listener filled in) until the test ends. Every cert in trust is
// trusted by the client.
func startServer(t *testing.T, cfg isolation.Config, opts ServerOptions, trust ...testCert) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts.Listener = ln
	roots := x509.NewCertPool()
	for _, c := range trust {
		roots.AddCert(c.x509)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &testServer{
		addr:   ln.Addr().String(),
		roots:  roots,
		cancel: cancel,
		done:   make(chan error, 1),
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}},
	}
	go func() { s.done <- Serve(ctx, cfg, opts) }()
	t.Cleanup(func() {
		// Idle HTTP/2 connections would make the graceful shutdown wait for its GOAWAY timeout.
		s.client.CloseIdleConnections()
		cancel()
		if err := <-s.done; err != nil {
			t.Errorf("Serve() = %v after cancel, want nil", err)
		}
	})
	return s
}

func (s *testServer) url(path string) string { return "https://" + s.addr + path }

// serveFiles starts Serve with cert written to files in a temporary directory.
func serveFiles(t *testing.T, cfg isolation.Config) (*testServer, testCert) {
	dir := t.TempDir()
	c := newTestCert(t, "webhook")
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	c.writePair(t, certFile, keyFile)
	return startServer(t, cfg, ServerOptions{CertFile: certFile, KeyFile: keyFile}, c), c
}

func decodeReview(t *testing.T, body []byte) *admissionv1.AdmissionReview {
	t.Helper()
	out := &admissionv1.AdmissionReview{}
	if err := json.Unmarshal(body, out); err != nil {
		t.Fatalf("decoding response %q: %v", body, err)
	}
	return out
}

func TestServeHTTPContract(t *testing.T) {
	var mu sync.Mutex
	var observed []Observation
	dir := t.TempDir()
	c := newTestCert(t, "webhook")
	c.writePair(t, filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	s := startServer(t, isolation.DefaultConfig(), ServerOptions{
		CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"),
		Observer: func(o Observation) { mu.Lock(); observed = append(observed, o); mu.Unlock() },
	}, c)

	ipp := admissiontest.Review(admissiontest.Request("uid-ipp", "default", admissiontest.Pod("class0")))
	stray := admissiontest.Pod("")
	stray.Spec.Tolerations = append(stray.Spec.Tolerations, corev1.Toleration{Operator: corev1.TolerationOpExists})
	strayReview := admissiontest.Review(admissiontest.Request("uid-stray", "default", stray))
	v1beta1 := bytes.Replace(ipp, []byte(`"admission.k8s.io/v1"`), []byte(`"admission.k8s.io/v1beta1"`), 1)

	tests := []struct {
		name, method, path string
		body               io.Reader
		contentLength      int64 // -1: unknown (chunked)
		wantCode           int
		wantBody           string // substring
		wantUID            string
		wantAllowed        bool
		wantPatch          bool
	}{
		{name: "mutate echoes the uid and patches", method: "POST", path: "/mutate", body: bytes.NewReader(ipp), wantCode: 200, wantUID: "uid-ipp", wantAllowed: true, wantPatch: true},
		{name: "validate echoes the uid and denies the unpinned Pod", method: "POST", path: "/validate", body: bytes.NewReader(ipp), wantCode: 200, wantUID: "uid-ipp", wantBody: "lacks a toleration"},
		{name: "validate denies a stray toleration", method: "POST", path: "/validate", body: bytes.NewReader(strayReview), wantCode: 200, wantUID: "uid-stray", wantBody: `toleration {key: \"\", operator: \"Exists\"`},
		{name: "mutate leaves the stray Pod alone", method: "POST", path: "/mutate", body: bytes.NewReader(strayReview), wantCode: 200, wantUID: "uid-stray", wantAllowed: true},
		{name: "undecodable object is a denial inside a 200", method: "POST", path: "/mutate", body: strings.NewReader(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"default","object":{"spec":{"tolerations":7}}}}`), wantCode: 200, wantUID: "u1", wantBody: "decoding request.object as a Pod"},
		{name: "not JSON is 400", method: "POST", path: "/mutate", body: strings.NewReader("hello"), wantCode: 400, wantBody: "not a JSON AdmissionReview"},
		{name: "not an AdmissionReview is 400", method: "POST", path: "/validate", body: strings.NewReader(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"}}`), wantCode: 400, wantBody: `not an admission.k8s.io/v1 AdmissionReview: apiVersion "v1", kind "Pod"`},
		{name: "v1beta1 is 400", method: "POST", path: "/validate", body: bytes.NewReader(v1beta1), wantCode: 400, wantBody: `apiVersion "admission.k8s.io/v1beta1"`},
		{name: "no request is 400", method: "POST", path: "/mutate", body: strings.NewReader(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), wantCode: 400, wantBody: "AdmissionReview has no request"},
		{name: "empty body is 400", method: "POST", path: "/mutate", body: http.NoBody, wantCode: 400, wantBody: "request body is empty"},
		{name: "over 3 MiB is 413", method: "POST", path: "/mutate", body: bytes.NewReader(make([]byte, MaxBodyBytes+1)), wantCode: 413, wantBody: "over the limit"},
		{name: "over 3 MiB without a length is 413", method: "POST", path: "/validate", body: io.MultiReader(bytes.NewReader(make([]byte, MaxBodyBytes)), strings.NewReader("x")), contentLength: -1, wantCode: 413, wantBody: "over the limit"},
		{name: "exactly 3 MiB is read (and is not JSON)", method: "POST", path: "/validate", body: bytes.NewReader(make([]byte, MaxBodyBytes)), wantCode: 400},
		{name: "GET /mutate is 405", method: "GET", path: "/mutate", wantCode: 405},
		{name: "PUT /validate is 405", method: "PUT", path: "/validate", body: bytes.NewReader(ipp), wantCode: 405},
		{name: "healthz", method: "GET", path: "/healthz", wantCode: 200, wantBody: "ok"},
		{name: "readyz", method: "GET", path: "/readyz", wantCode: 200, wantBody: "ok"},
		{name: "unknown path is 404", method: "POST", path: "/admit", body: bytes.NewReader(ipp), wantCode: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, s.url(tt.path), tt.body)
			if err != nil {
				t.Fatal(err)
			}
			if tt.contentLength == -1 {
				req.ContentLength = -1
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := s.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantCode {
				t.Fatalf("status = %d (%s), want %d", resp.StatusCode, body, tt.wantCode)
			}
			if !strings.Contains(string(body), tt.wantBody) {
				t.Errorf("body %q does not contain %q", body, tt.wantBody)
			}
			if tt.wantUID == "" {
				return
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			review := decodeReview(t, body)
			if review.APIVersion != "admission.k8s.io/v1" || review.Kind != "AdmissionReview" || review.Response == nil {
				t.Fatalf("response is not an AdmissionReview with a response: %s", body)
			}
			got := struct {
				UID            string
				Allowed, Patch bool
			}{string(review.Response.UID), review.Response.Allowed, len(review.Response.Patch) > 0}
			want := struct {
				UID            string
				Allowed, Patch bool
			}{tt.wantUID, tt.wantAllowed, tt.wantPatch}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("response (-want +got):\n%s", diff)
			}
		})
	}

	mu.Lock()
	defer mu.Unlock()
	if len(observed) == 0 {
		t.Fatal("observer saw no requests")
	}
	if o := observed[0]; o.Path != MutatePath || o.Code != 200 || !o.Allowed || !o.Patched || o.Duration <= 0 {
		t.Errorf("first observation = %+v, want an allowed, patched 200 on /mutate", o)
	}
}

func TestServeTLS(t *testing.T) {
	s, c := serveFiles(t, isolation.DefaultConfig())
	t.Run("TLS 1.1 is refused", func(t *testing.T) {
		_, err := tls.Dial("tcp", s.addr, &tls.Config{RootCAs: s.roots, ServerName: "127.0.0.1", MaxVersion: tls.VersionTLS11})
		if err == nil {
			t.Fatal("TLS 1.1 handshake succeeded")
		}
	})
	t.Run("TLS 1.2 works", func(t *testing.T) {
		conn, err := tls.Dial("tcp", s.addr, &tls.Config{RootCAs: s.roots, ServerName: "127.0.0.1", MaxVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
	})
	t.Run("plain HTTP gets no answer", func(t *testing.T) {
		resp, err := http.Get("http://" + s.addr + "/healthz")
		if err == nil {
			defer resp.Body.Close()
			if resp.StatusCode == 200 {
				t.Fatal("plain HTTP was served")
			}
		}
	})
	t.Run("HTTP/2 is offered", func(t *testing.T) {
		resp, err := s.client.Get(s.url("/healthz"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Errorf("protocol = %s, want HTTP/2", resp.Proto)
		}
	})
	_ = c
}

// TestCertRotation rewrites the serving certificate in the ways a Secret rotation does and waits,
// with no restart, for a new handshake to present the new certificate.
func TestCertRotation(t *testing.T) {
	ctx := context.Background()
	waitServed := func(t *testing.T, s *testServer, want *big.Int) {
		t.Helper()
		var last error
		err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
			got, err := servedSerial(s.addr, s.roots)
			if err != nil {
				last = err
				return false, nil
			}
			last = fmt.Errorf("serving serial %v", got)
			return got.Cmp(want) == 0, nil
		})
		if err != nil {
			t.Fatalf("waiting for the certificate with serial %v: %v (last: %v)", want, err, last)
		}
	}

	t.Run("files replaced by rename", func(t *testing.T) {
		dir := t.TempDir()
		a, b := newTestCert(t, "a"), newTestCert(t, "b")
		certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
		a.writePair(t, certFile, keyFile)
		s := startServer(t, isolation.DefaultConfig(), ServerOptions{CertFile: certFile, KeyFile: keyFile}, a, b)
		waitServed(t, s, a.serial)
		// A keep-alive connection made before the rotation keeps working.
		if resp, err := s.client.Get(s.url("/healthz")); err != nil {
			t.Fatal(err)
		} else {
			resp.Body.Close()
		}
		b.writePair(t, certFile, keyFile)
		waitServed(t, s, b.serial)
		if resp, err := s.client.Get(s.url("/healthz")); err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET /healthz after rotation: %v", err)
		} else {
			resp.Body.Close()
		}
	})

	t.Run("kubelet Secret volume symlink swap", func(t *testing.T) {
		a, b, c := newTestCert(t, "a"), newTestCert(t, "b"), newTestCert(t, "c")
		v := newSecretVolume(t, a)
		s := startServer(t, isolation.DefaultConfig(), ServerOptions{CertFile: v.certFile(), KeyFile: v.keyFile()}, a, b, c)
		waitServed(t, s, a.serial)
		v.update(t, b)
		waitServed(t, s, b.serial)
		v.update(t, c)
		waitServed(t, s, c.serial)
	})

	t.Run("in-place rewrite through a broken state", func(t *testing.T) {
		dir := t.TempDir()
		a, b := newTestCert(t, "a"), newTestCert(t, "b")
		certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
		a.writePair(t, certFile, keyFile)
		s := startServer(t, isolation.DefaultConfig(), ServerOptions{CertFile: certFile, KeyFile: keyFile}, a, b)
		waitServed(t, s, a.serial)
		// The certificate first, the key later: the pair does not match in between, and the old
		// certificate keeps being served.
		if err := os.WriteFile(certFile, b.certPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		waitServed(t, s, a.serial)
		if err := os.WriteFile(keyFile, []byte("garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
		waitServed(t, s, a.serial)
		if err := os.WriteFile(keyFile, b.keyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		waitServed(t, s, b.serial)
	})

	t.Run("files briefly missing", func(t *testing.T) {
		dir := t.TempDir()
		a, b := newTestCert(t, "a"), newTestCert(t, "b")
		certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
		a.writePair(t, certFile, keyFile)
		s := startServer(t, isolation.DefaultConfig(), ServerOptions{CertFile: certFile, KeyFile: keyFile}, a, b)
		waitServed(t, s, a.serial)
		if err := os.Remove(keyFile); err != nil {
			t.Fatal(err)
		}
		waitServed(t, s, a.serial)
		b.writePair(t, certFile, keyFile)
		waitServed(t, s, b.serial)
	})
}

func TestServeGetCertificate(t *testing.T) {
	c := newTestCert(t, "from-secret")
	pair, err := tls.X509KeyPair(c.certPEM, c.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	var mu sync.Mutex
	s := startServer(t, isolation.DefaultConfig(), ServerOptions{
		CertFile: "/does/not/exist", // GetCertificate takes precedence
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			mu.Lock()
			calls++
			mu.Unlock()
			return &pair, nil
		},
	}, c)
	got, err := servedSerial(s.addr, s.roots)
	if err != nil {
		t.Fatal(err)
	}
	if got.Cmp(c.serial) != 0 {
		t.Errorf("served serial %v, want %v", got, c.serial)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls == 0 {
		t.Error("GetCertificate was not called")
	}
}

func TestServeErrors(t *testing.T) {
	dir := t.TempDir()
	c := newTestCert(t, "x")
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	c.writePair(t, certFile, keyFile)
	other := newTestCert(t, "y")
	otherKey := filepath.Join(dir, "other.key")
	writeFileAtomic(t, otherKey, other.keyPEM)

	tests := []struct {
		name    string
		opts    ServerOptions
		wantErr string
	}{
		{name: "no files", opts: ServerOptions{ListenAddress: "127.0.0.1:0"}, wantErr: "a certificate file and a key file are required"},
		{name: "missing file", opts: ServerOptions{ListenAddress: "127.0.0.1:0", CertFile: filepath.Join(dir, "nope"), KeyFile: keyFile}, wantErr: "reading certificate file"},
		{name: "mismatched key", opts: ServerOptions{ListenAddress: "127.0.0.1:0", CertFile: certFile, KeyFile: otherKey}, wantErr: "loading serving certificate"},
		{name: "bad address", opts: ServerOptions{ListenAddress: "127.0.0.1:http-ish", CertFile: certFile, KeyFile: keyFile}, wantErr: "listening on 127.0.0.1:http-ish"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := Serve(ctx, isolation.DefaultConfig(), tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Serve() = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestServeShutdown checks that cancelling the context stops the server after the request in
// flight has been answered.
func TestServeShutdown(t *testing.T) {
	dir := t.TempDir()
	c := newTestCert(t, "x")
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	c.writePair(t, certFile, keyFile)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, isolation.DefaultConfig(), ServerOptions{Listener: ln, CertFile: certFile, KeyFile: keyFile})
	}()
	roots := x509.NewCertPool()
	roots.AddCert(c.x509)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	resp, err := client.Get("https://" + ln.Addr().String() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve() = %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Error("still accepting connections after shutdown")
	}
}

// TestPanicIs500 serves a handler whose decision panics over real TLS: that request gets 500 and
// the next one is answered.
func TestPanicIs500(t *testing.T) {
	panicking := func(isolation.Config, *admission.Review) *admissionv1.AdmissionResponse {
		panic("boom")
	}
	srv := httptest.NewUnstartedServer(newHandler(isolation.DefaultConfig(), panicking, nil))
	srv.StartTLS()
	defer srv.Close()
	client := srv.Client()
	body := admissiontest.Review(admissiontest.Request("uid-1", "default", admissiontest.Pod("class0")))

	resp, err := client.Post(srv.URL+"/mutate", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("status = %d (%s), want 500", resp.StatusCode, b)
	}
	resp, err = client.Post(srv.URL+"/validate", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("the server did not survive the panic: %v", err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || decodeReview(t, b).Response.UID != "uid-1" {
		t.Fatalf("after the panic: status %d, body %s", resp.StatusCode, b)
	}
}

func TestAbortHandlerPanicPropagates(t *testing.T) {
	h := recoverPanics(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) }))
	defer func() {
		if v := recover(); !errors.Is(v.(error), http.ErrAbortHandler) {
			t.Errorf("recovered %v, want http.ErrAbortHandler", v)
		}
	}()
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	t.Error("http.ErrAbortHandler was swallowed")
}

// BenchmarkServeHTTPS sends mutating reviews to Serve over HTTPS on loopback from 64 concurrent
// keep-alive HTTP/1.1 clients in the same process. Client and server share the CPUs, so this is a
// floor for the server's throughput, not a measurement of it; issue 6's load generator measures it.
func BenchmarkServeHTTPS(b *testing.B) {
	dir := b.TempDir()
	c := newTestCert(b, "bench")
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	c.writePair(b, certFile, keyFile)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, isolation.DefaultConfig(), ServerOptions{Listener: ln, CertFile: certFile, KeyFile: keyFile})
	}()
	defer func() { cancel(); <-done }()
	roots := x509.NewCertPool()
	roots.AddCert(c.x509)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, MaxIdleConnsPerHost: 256}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	url := "https://" + ln.Addr().String() + MutatePath
	body := admissiontest.Review(admissiontest.Request("uid-1", "default", admissiontest.Pod("class0")))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.SetParallelism(32) // 64 clients on 2 CPUs
	start := cputime.Used()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Post(url, "application/json", bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.StopTimer()
	cputime.Report(b, start)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
