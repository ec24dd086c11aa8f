package webhook

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"sync"

	"k8s.io/klog/v2"
)

// CertWatcher serves a TLS certificate from a certificate file and a key file and picks up new
// contents without a restart, such as a Secret rotated under a mounted volume.
//
// It checks the files at each TLS handshake: two stat calls, which cost a microsecond or so
// against the milliseconds of a handshake, and no goroutine or timer. os.Stat follows symlinks, so
// the kubelet's atomic update of a Secret volume (a new timestamped directory, then a rename of
// the ..data symlink) shows as a change of file identity. A pair that does not load, such as a
// certificate rewritten before its key, is retried when either file changes again; until then the
// last good pair is served.
type CertWatcher struct {
	certFile, keyFile string

	mu   sync.Mutex
	cert *tls.Certificate
	// loaded identifies the files that cert came from; failed, the last pair that did not load.
	loaded, failed fileState
}

// fileState identifies the contents of the two files by what stat says about them.
type fileState struct {
	cert, key os.FileInfo
}

func (s fileState) equal(o fileState) bool {
	return sameFile(s.cert, o.cert) && sameFile(s.key, o.key)
}

func sameFile(a, b os.FileInfo) bool {
	if a == nil || b == nil {
		return a == b
	}
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// NewCertWatcher loads the certificate and key from their PEM files. It fails if they do not load,
// so that a server never starts without a certificate. It logs with ctx's logger; later loads log
// with the logger of the handshake's context (the server's BaseContext).
func NewCertWatcher(ctx context.Context, certFile, keyFile string) (*CertWatcher, error) {
	w := &CertWatcher{certFile: certFile, keyFile: keyFile}
	state, err := w.stat()
	if err != nil {
		return nil, err
	}
	if err := w.load(klog.FromContext(ctx), state); err != nil {
		return nil, err
	}
	return w, nil
}

// GetCertificate returns the current certificate, re-reading the files first if they changed. It
// has the signature of tls.Config.GetCertificate.
func (w *CertWatcher) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	logger := klog.Background()
	if hello != nil && hello.Context() != nil {
		logger = klog.FromContext(hello.Context())
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	state, err := w.stat()
	if err != nil {
		// Mid-rotation, a file may be missing for a moment: keep serving the last good pair.
		logger.V(2).Info("Cannot stat the serving certificate; serving the last one loaded", "err", err)
		return w.cert, nil
	}
	if !state.equal(w.loaded) && !state.equal(w.failed) {
		if err := w.load(logger, state); err != nil {
			logger.Error(err, "Serving the last certificate loaded until the files change again")
		}
	}
	return w.cert, nil
}

func (w *CertWatcher) stat() (fileState, error) {
	cert, err := os.Stat(w.certFile)
	if err != nil {
		return fileState{}, fmt.Errorf("reading certificate file: %w", err)
	}
	key, err := os.Stat(w.keyFile)
	if err != nil {
		return fileState{}, fmt.Errorf("reading key file: %w", err)
	}
	return fileState{cert: cert, key: key}, nil
}

// load reads the pair. Called with mu held (or before w is shared).
func (w *CertWatcher) load(logger klog.Logger, state fileState) error {
	cert, err := tls.LoadX509KeyPair(w.certFile, w.keyFile)
	if err != nil {
		w.failed = state
		return fmt.Errorf("loading serving certificate %s and key %s: %w", w.certFile, w.keyFile, err)
	}
	// The files may have changed between stat and read; stat again so that such a change is
	// seen at the next handshake rather than missed.
	if after, err := w.stat(); err != nil || !after.equal(state) {
		state = fileState{}
	}
	w.cert, w.loaded, w.failed = &cert, state, fileState{}
	logger.Info("Loaded serving certificate", "certFile", w.certFile, "subject", cert.Leaf.Subject.String(), "notAfter", cert.Leaf.NotAfter)
	return nil
}
