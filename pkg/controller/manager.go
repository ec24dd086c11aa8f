package controller

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"

	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"

	"github.com/ipp-project/ipp/pkg/approver"
	"github.com/ipp-project/ipp/pkg/cloudprovider"
	ippclientset "github.com/ipp-project/ipp/pkg/generated/clientset/versioned"
	ippinformers "github.com/ipp-project/ipp/pkg/generated/informers/externalversions"
)

// Manager is the controller with what it runs on: its own informers and, when it mints join
// tokens, the CSR approver of those tokens. It is the one way to run the controller: NewManager,
// then Run.
type Manager struct {
	// Controller is the controller the Manager runs.
	Controller *Controller

	approver  *approver.Approver
	ipp       ippclientset.Interface
	factories []informers.SharedInformerFactory
	ippInf    ippinformers.SharedInformerFactory
}

// NewManager returns a Manager of a controller that calls provider with opts. Its informers are
// its own (narrowed as newInformerFactories does), NodeClasses and Namespaces included, made with
// opts.IPPClient, which is required (a caller's NodeClasses or Namespaces is an error). With
// opts.MintJoinTokens it also makes the CSR approver and sets opts.Issued to the approver's
// record; a caller's Issued is an error then.
func NewManager(kube kubernetes.Interface, provider cloudprovider.Provider, recorder record.EventRecorder, opts Options) (*Manager, error) {
	if kube == nil {
		return nil, fmt.Errorf("controller: kube client is required")
	}
	if opts.IPPClient == nil {
		return nil, fmt.Errorf("controller: the NodeClass client (Options.IPPClient) is required")
	}
	if opts.NodeClasses != nil || opts.Namespaces != nil {
		return nil, fmt.Errorf("controller: NodeClasses and Namespaces are the manager's own informers")
	}
	if opts.MintJoinTokens && opts.Issued != nil {
		return nil, fmt.Errorf("controller: Issued is the approver's when the manager mints join tokens")
	}
	m := &Manager{ipp: opts.IPPClient}
	pods, nodes := newInformerFactories(kube, opts.Config)
	namespaces := newNamespaceInformerFactory(kube)
	m.factories = append(m.factories, pods, nodes, namespaces)
	m.ippInf = ippinformers.NewSharedInformerFactory(opts.IPPClient, 0)
	opts.NodeClasses = m.ippInf.Ipp().V1alpha1().NodeClasses()
	opts.Namespaces = namespaces.Core().V1().Namespaces()
	if opts.MintJoinTokens {
		// The controller and the approver need each other: the approver asks which instance a
		// token belongs to, the controller asks whether a token's certificate was issued.
		opts.Issued = func(id, nodeName string) bool { return m.approver.IssuedFor(id, nodeName) }
	}
	c, err := newWithInformers(kube, pods.Core().V1().Pods(), nodes.Core().V1().Nodes(), provider, recorder, opts)
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

// crdPoll is how often Run looks for the NodeClass CRD while it is not installed.
const crdPoll = 5 * time.Second

// Run waits for the NodeClass CRD, starts the informers, runs the controller with workers
// goroutines (and the approver) until ctx is cancelled or one of them fails, and shuts the
// informers down before it returns. A Manager runs once.
//
// The controller requires the CRD nodeclasses.ipp.io: without knowing the NodeClasses it cannot
// tell which limits apply, so it creates nothing. While the CRD is not installed, Run logs so
// and waits (it is part of deploy/base, so this lasts only while an installation is applied
// out of order).
func (m *Manager) Run(ctx context.Context, workers int) error {
	if err := m.waitForCRD(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting, as the controller stops
		}
		return err
	}
	m.ippInf.Start(ctx.Done())
	defer m.ippInf.Shutdown()
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

// waitForCRD returns once the API server serves NodeClasses, or with ctx's error.
func (m *Manager) waitForCRD(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	warned := false
	err := wait.PollUntilContextCancel(ctx, crdPoll, true, func(ctx context.Context) (bool, error) {
		_, err := m.ipp.IppV1alpha1().NodeClasses().List(ctx, metav1.ListOptions{Limit: 1})
		switch {
		case err == nil:
			if warned {
				logger.Info("The NodeClass CRD is installed; starting")
			}
			return true, nil
		case apierrors.IsNotFound(err):
			if !warned {
				logger.Error(err, "The NodeClass CRD nodeclasses.ipp.io is not installed; the controller creates nothing until it is (apply deploy/base)")
				warned = true
			}
		default:
			logger.Error(err, "Listing NodeClasses failed; retrying", "retryAfter", crdPoll)
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the NodeClass CRD nodeclasses.ipp.io: %w", err)
	}
	return nil
}
