package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"time"

	"k8s.io/klog/v2"

	"github.com/ipp-project/ipp/pkg/admission"
	"github.com/ipp-project/ipp/pkg/isolation"
)

// ServerOptions say where and with which certificate Serve listens.
type ServerOptions struct {
	// ListenAddress is the host:port to listen on, such as ":8443".
	ListenAddress string
	// CertFile and KeyFile are PEM files of the serving certificate and its key. They are re-read
	// when they change (see CertWatcher).
	CertFile, KeyFile string
	// GetCertificate, when set, supplies the serving certificate instead of CertFile and KeyFile,
	// for a caller that keeps the certificate elsewhere (a Kubernetes Secret, say).
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// Listener, when set, is served instead of listening on ListenAddress. Tests use it to learn
	// the port of 127.0.0.1:0.
	Listener net.Listener
	// Observer, when set, is called after each admission request (see WithObserver).
	Observer func(Observation)
	// Nodes, when set, is the set of IPP nodes that /validate checks spec.nodeName against (see
	// WithNodes). The caller runs it.
	Nodes admission.Nodes
	// NodeClasses, when set, are the NodeClasses and namespace labels that /validate checks an
	// IPP Pod's NodeClass against (see WithNodeClasses). The caller runs them.
	NodeClasses admission.NodeClasses
	// ShutdownTimeout bounds the graceful shutdown after ctx is cancelled; zero means 20 seconds.
	ShutdownTimeout time.Duration
}

// Serve serves NewHandler(cfg) over HTTPS (TLS 1.2 or later) until ctx is cancelled, then shuts
// down gracefully: it stops accepting connections and waits for requests in flight. It returns nil
// after a clean shutdown, and an error if the certificate cannot be loaded, the address cannot be
// listened on, or serving fails.
func Serve(ctx context.Context, cfg isolation.Config, opts ServerOptions) error {
	logger := klog.FromContext(ctx)
	getCert := opts.GetCertificate
	if getCert == nil {
		if opts.CertFile == "" || opts.KeyFile == "" {
			return errors.New("serving the webhook: a certificate file and a key file are required")
		}
		w, err := NewCertWatcher(ctx, opts.CertFile, opts.KeyFile)
		if err != nil {
			return fmt.Errorf("serving the webhook: %w", err)
		}
		getCert = w.GetCertificate
	}
	ln := opts.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", opts.ListenAddress); err != nil {
			return fmt.Errorf("listening on %s: %w", opts.ListenAddress, err)
		}
	}
	var hopts []Option
	if opts.Observer != nil {
		hopts = append(hopts, WithObserver(opts.Observer))
	}
	if opts.Nodes != nil {
		hopts = append(hopts, WithNodes(opts.Nodes))
	}
	if opts.NodeClasses != nil {
		hopts = append(hopts, WithNodeClasses(opts.NodeClasses))
	}
	srv := &http.Server{
		Handler: NewHandler(cfg, hopts...),
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: getCert,
		},
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    1 << 20,
		// Requests keep the logger of ctx but are not cancelled with it: shutdown lets them finish.
		BaseContext: func(net.Listener) context.Context { return klog.NewContext(context.Background(), logger) },
		// TLS handshake errors from scanners and probes go to V(2), not to stderr.
		ErrorLog: log.New(klogWriter{logger}, "", 0),
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	logger.Info("Serving the admission webhook", "address", ln.Addr().String(), "mode", cfg.Mode, "checkNodeName", opts.Nodes != nil, "checkNodeClass", opts.NodeClasses != nil)

	select {
	case err := <-errc:
		return fmt.Errorf("serving the webhook on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	timeout := opts.ShutdownTimeout
	if timeout == 0 {
		timeout = 20 * time.Second
	}
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	logger.Info("Shutting down the admission webhook")
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutting down the webhook: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving the webhook on %s: %w", ln.Addr(), err)
	}
	return nil
}

// klogWriter sends the http.Server's own log lines to klog at V(2).
type klogWriter struct{ logger klog.Logger }

func (w klogWriter) Write(p []byte) (int, error) {
	w.logger.V(2).Info("HTTP server", "msg", string(p))
	return len(p), nil
}
