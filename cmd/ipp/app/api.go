package app

import (
	"fmt"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// apiOptions say how to reach the API server. The controller, `ipp run` and `ipp webhook` (for
// its watch of IPP nodes) share them.
type apiOptions struct {
	kubeconfig string
	qps        float32
	burst      int
}

func newAPIOptions() apiOptions {
	return apiOptions{qps: 50, burst: 100}
}

func (o *apiOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.kubeconfig, "kubeconfig", o.kubeconfig, "Path to a kubeconfig. Empty uses the in-cluster service account.")
	fs.Float32Var(&o.qps, "kube-api-qps", o.qps, "Queries per second to the API server.")
	fs.IntVar(&o.burst, "kube-api-burst", o.burst, "Burst of queries to the API server.")
}

func (o *apiOptions) validate() error {
	if o.qps <= 0 || o.burst < 1 {
		return fmt.Errorf("invalid --kube-api-qps %v / --kube-api-burst %d: must be positive", o.qps, o.burst)
	}
	return nil
}

// restConfig returns the API server's client configuration, with userAgent.
func (o *apiOptions) restConfig(userAgent string) (*rest.Config, error) {
	var (
		cfg *rest.Config
		err error
	)
	if o.kubeconfig == "" {
		cfg, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("not running in a cluster, and no --kubeconfig given: %w", err)
		}
	} else if cfg, err = clientcmd.BuildConfigFromFlags("", o.kubeconfig); err != nil {
		return nil, fmt.Errorf("invalid --kubeconfig: %w", err)
	}
	cfg.QPS = o.qps
	cfg.Burst = o.burst
	return rest.AddUserAgent(cfg, userAgent), nil
}
