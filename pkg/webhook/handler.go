// Package webhook carries IPP's admission decisions (pkg/admission) over HTTPS: it decodes
// AdmissionReviews, answers them, serves health checks, and serves TLS from certificate files that it
// re-reads when they change. It decides nothing itself.
package webhook

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/klog/v2"

	"github.com/ipp-project/ipp/pkg/admission"
	"github.com/ipp-project/ipp/pkg/isolation"
)

// Paths the handler serves.
const (
	MutatePath   = "/mutate"
	ValidatePath = "/validate"
	HealthzPath  = "/healthz"
	ReadyzPath   = "/readyz"
)

// MaxBodyBytes is the largest AdmissionReview body accepted; larger bodies get 413. The API server
// caps a request body at 3 MiB, so no real Pod is larger.
const MaxBodyBytes = 3 << 20

// Observation describes one answered admission request, for metrics.
type Observation struct {
	// Path is MutatePath or ValidatePath.
	Path string
	// Code is the HTTP status code sent.
	Code int
	// Allowed and Patched describe the verdict; both are false unless Code is 200.
	Allowed, Patched bool
	// Duration is the time from the request's arrival to the answer written.
	Duration time.Duration
}

// Option configures NewHandler.
type Option func(*handler)

// WithObserver makes the handler call observe after each admission request it answers. observe
// runs on the request's goroutine and must be fast and safe for concurrent use.
func WithObserver(observe func(Observation)) Option {
	return func(h *handler) { h.observe = observe }
}

// WithNodes gives /validate the set of IPP nodes, so that it denies a Pod without a class that
// names one in spec.nodeName (see admission.ValidateReview), and makes /readyz answer 503 until the set
// has synced. Without it, spec.nodeName of a Pod without a class is not checked.
func WithNodes(nodes admission.Nodes) Option {
	return func(h *handler) { h.nodes = nodes }
}

// WithNodeClasses gives /validate the NodeClasses and the namespaces' labels, so that in
// dedicated mode it denies an IPP Pod whose NodeClass does not exist or may not be used in its
// namespace (see admission.ValidateReview), and makes /readyz answer 503 until they have synced.
// Without it, the NodeClass of a Pod is not checked.
func WithNodeClasses(classes admission.NodeClasses) Option {
	return func(h *handler) { h.classes = classes }
}

// decision is the signature of admission.MutateReview, and of admission.ValidateReview with its
// lookups bound.
type decision func(isolation.Config, *admission.Review) *admissionv1.AdmissionResponse

type handler struct {
	cfg      isolation.Config
	mutate   decision
	validate decision
	observe  func(Observation)
	// nodes is the set of IPP nodes; nil when the nodeName check is off.
	nodes admission.Nodes
	// classes are the NodeClasses and namespace labels; nil when the NodeClass check is off.
	classes admission.NodeClasses
}

// NewHandler returns the webhook's HTTP handler:
//
//   - POST /mutate and POST /validate take an admission.k8s.io/v1 AdmissionReview and answer 200
//     with an AdmissionReview whose response carries the verdict and the request's UID. A body that
//     is not JSON, not an AdmissionReview, or has no request gets 400 with a message; a body over
//     MaxBodyBytes gets 413; another method gets 405.
//   - GET /healthz answers 200 "ok". GET /readyz answers 200 "ok" too, except that with WithNodes
//     or WithNodeClasses it answers 503 until they have synced, so that no Service sends it Pods
//     it would have to turn away.
//   - A panic while serving a request becomes a 500 for that request; the server keeps serving.
func NewHandler(cfg isolation.Config, opts ...Option) http.Handler {
	return newHandler(cfg, admission.MutateReview, nil, opts...)
}

// newHandler returns the handler with the decisions mutate and validate; a nil validate is
// admission.ValidateReview with the handler's node set and NodeClasses.
func newHandler(cfg isolation.Config, mutate, validate decision, opts ...Option) http.Handler {
	h := &handler{cfg: cfg, mutate: mutate, validate: validate}
	for _, o := range opts {
		o(h)
	}
	if h.validate == nil {
		from := admission.Lookups{Nodes: h.nodes, NodeClasses: h.classes}
		h.validate = func(cfg isolation.Config, r *admission.Review) *admissionv1.AdmissionResponse {
			return admission.ValidateReview(cfg, from, r)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("POST "+MutatePath, h.review(MutatePath, h.mutate))
	mux.Handle("POST "+ValidatePath, h.review(ValidatePath, h.validate))
	mux.HandleFunc("GET "+HealthzPath, ok)
	mux.HandleFunc("GET "+ReadyzPath, h.ready)
	return recoverPanics(mux)
}

// ready answers /readyz: ok, unless the node set or the NodeClasses have not synced yet.
func (h *handler) ready(w http.ResponseWriter, r *http.Request) {
	if h.nodes != nil && !h.nodes.HasSynced() {
		http.Error(w, "the IPP nodes have not been loaded yet", http.StatusServiceUnavailable)
		return
	}
	if h.classes != nil && !h.classes.HasSynced() {
		http.Error(w, "the NodeClasses and namespaces have not been loaded yet", http.StatusServiceUnavailable)
		return
	}
	ok(w, r)
}

func ok(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ok")
}

// recoverPanics turns a panic in next into a 500 for that request alone.
func recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler { //nolint:errorlint // net/http's sentinel, compared as it does
				panic(v)
			}
			klog.FromContext(r.Context()).Error(nil, "Panic while serving a request", "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
			http.Error(w, "internal error", http.StatusInternalServerError)
		}()
		next.ServeHTTP(w, r)
	})
}

// bodyPool holds request body buffers. A body is only read until
// its review is decoded, which copies what it keeps, and a response only until it is written, so
// the buffers can serve the next request.
var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooled is the largest buffer put back in a pool: buffers grown by rare big bodies are dropped.
const maxPooled = 64 << 10

// contentTypeJSON is the Content-Type header value of every review answer. It is set by
// assignment rather than Header().Set, which would allocate it for each answer; net/http only
// reads it.
var contentTypeJSON = []string{"application/json"}

// review serves one kind of AdmissionReview with decide.
func (h *handler) review(path string, decide decision) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var start time.Time
		if h.observe != nil {
			start = time.Now()
		}
		code, allowed, patched := h.serveReview(w, r, decide)
		if code != http.StatusOK {
			klog.FromContext(r.Context()).V(2).Info("Refused admission request", "path", path, "code", code, "remote", r.RemoteAddr)
		}
		if h.observe != nil {
			h.observe(Observation{Path: path, Code: code, Allowed: allowed, Patched: patched, Duration: time.Since(start)})
		}
	})
}

func (h *handler) serveReview(w http.ResponseWriter, r *http.Request, decide decision) (code int, allowed, patched bool) {
	if r.ContentLength > MaxBodyBytes {
		return fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body of %d bytes is over the limit of %d bytes", r.ContentLength, MaxBodyBytes))
	}
	buf := bodyPool.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= maxPooled {
			buf.Reset()
			bodyPool.Put(buf)
		}
	}()
	buf.Reset()
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, MaxBodyBytes)); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is over the limit of %d bytes", MaxBodyBytes))
		}
		return fail(w, http.StatusBadRequest, fmt.Sprintf("reading request body: %v", err))
	}
	if buf.Len() == 0 {
		return fail(w, http.StatusBadRequest, "request body is empty: want an admission.k8s.io/v1 AdmissionReview")
	}
	// JSON v2 decodes in one pass, case-sensitively like the API server, and refuses duplicate
	// names. The review copies what it keeps out of buf.
	in, err := admission.DecodeReview(buf.Bytes())
	if err != nil {
		return fail(w, http.StatusBadRequest, fmt.Sprintf("request body is not a JSON AdmissionReview: %v", err))
	}
	if in.APIVersion != reviewAPIVersion || in.Kind != reviewKind {
		return fail(w, http.StatusBadRequest, fmt.Sprintf("request body is not an admission.k8s.io/v1 AdmissionReview: apiVersion %q, kind %q", in.APIVersion, in.Kind))
	}
	if in.Request == nil {
		return fail(w, http.StatusBadRequest, "AdmissionReview has no request")
	}
	resp := decide(h.cfg, in)
	if resp == nil {
		resp = &admissionv1.AdmissionResponse{Allowed: false}
	}
	resp.UID = in.Request.UID
	body, err := encodeReview(resp)
	if err != nil {
		return fail(w, http.StatusInternalServerError, fmt.Sprintf("encoding the response: %v", err))
	}
	hdr := w.Header()
	hdr["Content-Type"] = contentTypeJSON
	hdr["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	return http.StatusOK, resp.Allowed, len(resp.Patch) > 0
}

func fail(w http.ResponseWriter, code int, message string) (int, bool, bool) {
	http.Error(w, message, code)
	return code, false, false
}
