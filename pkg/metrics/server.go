package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/pflag"
	"k8s.io/klog/v2"
)

// DefaultAddress is the default of --metrics-address.
const DefaultAddress = ":8080"

// Options are the metrics server's flags.
type Options struct {
	// Address is host:port to serve /metrics on; empty disables the server.
	Address string
	// Profiling also serves Go's profiles at /debug/pprof/ on Address. They reveal the process's
	// internals and cost CPU when fetched, so they are off by default.
	Profiling bool
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	return &Options{Address: DefaultAddress}
}

// AddFlags adds --metrics-address and --profiling to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Address, "metrics-address", o.Address, "host:port to serve Prometheus metrics on, at /metrics, over plain HTTP. Empty disables it.")
	fs.BoolVar(&o.Profiling, "profiling", o.Profiling, "Also serve Go's pprof profiles at /debug/pprof/ on --metrics-address. Off by default: anyone who can reach that address can read them.")
}

// Validate reports flag combinations that cannot work.
func (o *Options) Validate() error {
	if o.Profiling && o.Address == "" {
		return errors.New("invalid --profiling: it needs --metrics-address")
	}
	return nil
}

// Handler returns the /metrics handler for Registry.
func Handler() http.Handler {
	return promhttp.HandlerFor(Registry, promhttp.HandlerOpts{
		Registry:          Registry, // counts its own errors in promhttp_metric_handler_errors_total
		EnableOpenMetrics: true,
	})
}

// Start listens on o.Address and serves /metrics until ctx is done. It returns the address it
// listens on once the listener is open, so that a bad address is reported at start-up; serving
// errors after that are logged. With an empty address it does nothing and returns nil.
func (o *Options) Start(ctx context.Context) (net.Addr, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Address == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", o.Address)
	if err != nil {
		return nil, fmt.Errorf("invalid --metrics-address %q: %w", o.Address, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", Handler())
	if o.Profiling {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	logger := klog.FromContext(ctx)
	logger.Info("Serving metrics", "address", ln.Addr().String(), "profiling", o.Profiling)
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error(err, "Metrics server stopped")
		}
	}()
	return ln.Addr(), nil
}
