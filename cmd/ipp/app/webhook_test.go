package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"

	ippfake "github.com/ipp-project/ipp/pkg/generated/clientset/versioned/fake"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/nodeclass"
	"github.com/ipp-project/ipp/pkg/nodeset"
	"github.com/ipp-project/ipp/pkg/webhook"
)

// runMain runs Main with args and returns its exit code and what it wrote to stderr.
func runMain(t *testing.T, args ...string) (int, string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := os.Stderr
	os.Stderr = w
	defer func() { os.Stderr = stderr }()
	code := Main(args)
	w.Close()
	out, _ := io.ReadAll(r)
	return code, string(out)
}

func TestWebhookCommandBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		// want are substrings of the last line on stderr.
		want []string
		// logs is set where the webhook starts (and logs) before it fails; flag errors are the
		// only line.
		logs bool
	}{
		{name: "bad mode", args: []string{"webhook", "--mode=bogus"}, want: []string{`invalid --mode "bogus"`, "dedicated, autoscaler"}},
		{name: "bad class scope", args: []string{"webhook", "--class-scope=pod", "--tls-cert-file=c", "--tls-private-key-file=k"}, want: []string{`invalid --class-scope "pod"`, "namespace, cluster"}},
		{name: "bad pin-node-name", args: []string{"webhook", "--pin-node-name=maybe"}, want: []string{"--pin-node-name", `"maybe"`}},
		{name: "bad listen address", args: []string{"webhook", "--listen-address=8443", "--tls-cert-file=c", "--tls-private-key-file=k"}, want: []string{`invalid --listen-address "8443"`, "host:port"}},
		{name: "port out of range", args: []string{"webhook", "--listen-address=:99999", "--tls-cert-file=c", "--tls-private-key-file=k"}, want: []string{`invalid --listen-address ":99999"`}},
		{name: "no certificate", args: []string{"webhook"}, want: []string{"missing --tls-cert-file"}},
		{name: "no key", args: []string{"webhook", "--tls-cert-file=c"}, want: []string{"missing --tls-private-key-file"}},
		{name: "unreadable certificate", args: []string{"webhook", "--watch-ipp-nodes=false", "--watch-node-classes=false", "--listen-address=127.0.0.1:0", "--tls-cert-file=/does/not/exist", "--tls-private-key-file=/nor/this"}, want: []string{"ipp: serving the webhook: reading certificate file"}, logs: true},
		{name: "autoscaler mode watches no NodeClasses", args: []string{"webhook", "--mode=autoscaler", "--watch-ipp-nodes=false", "--metrics-address=127.0.0.1:0", "--listen-address=127.0.0.1:0", "--tls-cert-file=/does/not/exist", "--tls-private-key-file=/nor/this"}, want: []string{"ipp: serving the webhook: reading certificate file"}, logs: true},
		{name: "no API server to watch NodeClasses", args: []string{"webhook", "--watch-ipp-nodes=false", "--tls-cert-file=c", "--tls-private-key-file=k"}, want: []string{"watching NodeClasses (--watch-node-classes): not running in a cluster, and no --kubeconfig given"}},
		{name: "no API server to watch nodes", args: []string{"webhook", "--tls-cert-file=c", "--tls-private-key-file=k"}, want: []string{"watching IPP nodes (--watch-ipp-nodes): not running in a cluster, and no --kubeconfig given"}},
		{name: "bad kubeconfig", args: []string{"webhook", "--tls-cert-file=c", "--tls-private-key-file=k", "--kubeconfig=/does/not/exist"}, want: []string{"watching IPP nodes (--watch-ipp-nodes): invalid --kubeconfig"}},
		{name: "bad kube-api-qps", args: []string{"webhook", "--tls-cert-file=c", "--tls-private-key-file=k", "--kube-api-qps=0"}, want: []string{"invalid --kube-api-qps 0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stderr := runMain(t, tt.args...)
			if code == 0 {
				t.Fatalf("Main(%q) = 0, want non-zero", tt.args)
			}
			lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
			if len(lines) != 1 && !tt.logs {
				t.Errorf("stderr has %d lines, want 1:\n%s", len(lines), stderr)
			}
			for _, w := range tt.want {
				if last := lines[len(lines)-1]; !strings.Contains(last, w) {
					t.Errorf("last line of stderr %q does not contain %q", last, w)
				}
			}
		})
	}
}

// TestRunWebhook starts the webhook the way the command does, with the set of IPP nodes and the
// NodeClass cache over Kubernetes clients, and checks that it answers and becomes ready once both
// have synced.
func TestRunWebhook(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := dir+"/tls.crt", dir+"/tls.key"
	writeSelfSigned(t, certFile, keyFile)
	o := newWebhookOptions()
	o.listenAddress, o.certFile, o.keyFile = "127.0.0.1:0", certFile, keyFile
	opts, err := o.complete()
	if err != nil {
		t.Fatal(err)
	}
	// Listen here to learn the port; everything else is what the command runs.
	ln, err := net.Listen("tcp", opts.ListenAddress)
	if err != nil {
		t.Fatal(err)
	}
	opts.Listener = ln
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cfg := isolation.DefaultConfig()
	kube := fake.NewClientset()
	nodes, err := nodeset.New(kube, cfg.NodeLabel, isolation.LabelValue)
	if err != nil {
		t.Fatal(err)
	}
	classes, err := nodeclass.NewCache(kube, ippfake.NewSimpleClientset()) //nolint:staticcheck // NewClientset needs the OpenAPI schema the fake lacks
	if err != nil {
		t.Fatal(err)
	}
	go func() { done <- runWebhook(ctx, cfg, opts, webhookWatches{nodes: nodes, classes: classes}) }()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // self-signed test certificate
	err = wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		resp, err := client.Get("https://" + ln.Addr().String() + webhook.ReadyzPath)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		t.Fatalf("waiting for /readyz: %v", err)
	}
	client.CloseIdleConnections()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("runWebhook() = %v after cancel, want nil", err)
	}
}

// writeSelfSigned writes a self-signed certificate for 127.0.0.1 and its key.
func writeSelfSigned(t *testing.T, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ipp-webhook"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
}
