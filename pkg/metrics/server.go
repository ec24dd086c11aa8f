package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
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
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	return &Options{Address: DefaultAddress}
}

// AddFlags adds --metrics-address to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Address, "metrics-address", o.Address, "host:port to serve Prometheus metrics on, at /metrics, over plain HTTP. Empty disables it.")
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
	if o.Address == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", o.Address)
	if err != nil {
		return nil, fmt.Errorf("invalid --metrics-address %q: %w", o.Address, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", Handler())
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	logger := klog.FromContext(ctx)
	logger.Info("Serving metrics", "address", ln.Addr().String())
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
