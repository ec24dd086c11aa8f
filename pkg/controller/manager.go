package controller

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"

	"github.com/ipp-project/ipp/pkg/approver"
	"github.com/ipp-project/ipp/pkg/cloudprovider"
)

// Manager is the controller with what it runs on: its own informers and, when it mints join
// tokens, the CSR approver of those tokens. It is the one way to run the controller: NewManager,
// then Run.
type Manager struct {
	// Controller is the controller the Manager runs.
	Controller *Controller

	approver  *approver.Approver
	factories []informers.SharedInformerFactory
}

// NewManager returns a Manager of a controller that calls provider with opts. Its informers are
// its own (narrowed as NewInformerFactories does). With opts.MintJoinTokens it also makes the CSR
// approver and sets opts.Issued to the approver's record; a caller's Issued is an error then.
func NewManager(kube kubernetes.Interface, provider cloudprovider.Provider, recorder record.EventRecorder, opts Options) (*Manager, error) {
	if kube == nil {
		return nil, fmt.Errorf("controller: kube client is required")
	}
	if opts.MintJoinTokens && opts.Issued != nil {
		return nil, fmt.Errorf("controller: Issued is the approver's when the manager mints join tokens")
	}
	m := &Manager{}
	pods, nodes := NewInformerFactories(kube, opts.Config)
	m.factories = append(m.factories, pods, nodes)
	if opts.MintJoinTokens {
		// The controller and the approver need each other: the approver asks which instance a
		// token belongs to, the controller asks whether a token's certificate was issued.
		opts.Issued = func(id, nodeName string) bool { return m.approver.IssuedFor(id, nodeName) }
	}
	c, err := New(kube, pods.Core().V1().Pods(), nodes.Core().V1().Nodes(), provider, recorder, opts)
	if err != nil {
		return nil, err
	}
	m.Controller = c
	if opts.MintJoinTokens {
		csrs := approver.NewInformerFactory(kube)
		m.factories = append(m.factories, csrs)
		m.approver, err = approver.New(kube, csrs.Certificates().V1().CertificateSigningRequests(), c, recorder, opts.Config.ClusterName)
		if err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Run starts the informers, runs the controller with workers goroutines (and the approver) until
// ctx is cancelled or one of them fails, and shuts the informers down before it returns. A Manager
// runs once.
func (m *Manager) Run(ctx context.Context, workers int) error {
	for _, f := range m.factories {
		f.Start(ctx.Done())
	}
	defer func() {
		for _, f := range m.factories {
			f.Shutdown()
		}
	}()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return m.Controller.Run(gctx, workers) })
	if m.approver != nil {
		g.Go(func() error { return m.approver.Run(gctx) })
	}
	return g.Wait()
}
