package kubelet

import (
	"context"
	"fmt"
	"os"
	"sync"

	"k8s.io/klog/v2"

	"github.com/ipp-project/ipp/e2e/cloudemu"
)

// BootResult records one Boot call, for tests to inspect.
type BootResult struct {
	Request cloudemu.BootRequest
	// NodeName is the name the bootstrap registered (empty if it could not be parsed).
	NodeName string
	// Err is why the node did not register, nil if it did.
	Err error
}

// Booter implements cloudemu.Booter with emulated kubelets: each booted instance runs one,
// configured only from the instance's rendered bootstrap and the providerID the cloud gives it.
// Each joins as a real node does: with the bootstrap token of its `kubeadm join`, it asks for its
// kubelet client certificate through a CSR and acts only with the certificate it is issued.
type Booter struct {
	template Config

	mu       sync.Mutex
	kubelets map[string]*Kubelet
	results  []BootResult
}

var _ cloudemu.Booter = (*Booter)(nil)

// NewBooter returns a Booter whose kubelets join the cluster their bootstrap names. template
// supplies the settings that do not come from the bootstrap (capacity, intervals, clock); its
// Registration and RESTConfig are ignored.
func NewBooter(template Config) *Booter {
	return &Booter{template: template, kubelets: map[string]*Kubelet{}}
}

// Boot starts the kubelet of instance req.InstanceID. Booting an instance that already runs a
// kubelet does nothing. The error says why the Node could not register: a bootstrap without the
// kubelet's flags or a join, a CA that does not match the pin, a CSR that was denied, or the
// apiserver refusing the registration.
func (b *Booter) Boot(ctx context.Context, req cloudemu.BootRequest) (err error) {
	b.mu.Lock()
	_, running := b.kubelets[req.InstanceID]
	b.mu.Unlock()
	if running {
		return nil
	}
	logger := klog.LoggerWithValues(klog.FromContext(ctx), "instance", req.InstanceID)
	ctx = klog.NewContext(ctx, logger)

	reg, err := ParseBootstrap(req.Bootstrap)
	defer func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.results = append(b.results, BootResult{Request: req, NodeName: reg.NodeName, Err: err})
	}()
	if err != nil {
		return fmt.Errorf("booting instance %s: %w", req.InstanceID, err)
	}
	if reg.ProviderID == "" {
		// No --provider-id: the cloud provider integration fills it in, as for GCE.
		reg.ProviderID = req.ProviderID
	}
	join, err := ParseJoin(req.Bootstrap)
	if err != nil {
		return fmt.Errorf("booting instance %s: %w", req.InstanceID, err)
	}
	dir, err := makeScratch(req.InstanceID)
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	restConfig, err := TLSBootstrap(ctx, dir, join, reg.NodeName)
	if err != nil {
		logger.Info("Node did not get its credentials", "node", reg.NodeName, "err", err)
		return fmt.Errorf("booting instance %s: %w", req.InstanceID, err)
	}
	cfg := b.template
	cfg.Registration = reg
	cfg.RESTConfig = restConfig
	k, err := Start(ctx, cfg)
	if err != nil {
		logger.Info("Node did not register", "node", reg.NodeName, "err", err)
		return fmt.Errorf("booting instance %s: %w", req.InstanceID, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, raced := b.kubelets[req.InstanceID]; raced {
		go k.Stop()
		return nil
	}
	b.kubelets[req.InstanceID] = k
	return nil
}

// Shutdown stops the kubelet of the instance, if it runs one. Its Node stays.
func (b *Booter) Shutdown(ctx context.Context, instanceID string) {
	b.mu.Lock()
	k, ok := b.kubelets[instanceID]
	delete(b.kubelets, instanceID)
	b.mu.Unlock()
	if ok {
		k.Stop()
		klog.FromContext(ctx).Info("Kubelet stopped", "instance", instanceID, "node", k.NodeName())
	}
}

// Kubelet returns the kubelet of a running instance.
func (b *Booter) Kubelet(instanceID string) (*Kubelet, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k, ok := b.kubelets[instanceID]
	return k, ok
}

// Results returns every Boot call so far, in order.
func (b *Booter) Results() []BootResult {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]BootResult(nil), b.results...)
}

// Stop stops every kubelet.
func (b *Booter) Stop() {
	b.mu.Lock()
	kubelets := b.kubelets
	b.kubelets = map[string]*Kubelet{}
	b.mu.Unlock()
	var wg sync.WaitGroup
	for _, k := range kubelets {
		wg.Go(k.Stop)
	}
	wg.Wait()
}
