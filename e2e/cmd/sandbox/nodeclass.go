package main

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
	ippclient "github.com/ipp-project/ipp/pkg/generated/clientset/versioned"
)

// applyNodeClass creates an example NodeClass through the generated client (start installed the
// CRD), so that `kubectl get nodeclasses` shows one. Pods labelled ipp.io/node-class=metal get
// its shape, idle TTL and limits; placement of a class on several nodes comes next.
func (s *sandbox) applyNodeClass(ctx context.Context) error {
	client, err := ippclient.NewForConfig(s.cp.AdminConfig)
	if err != nil {
		return err
	}
	nc := &ippv1alpha1.NodeClass{
		ObjectMeta: metav1.ObjectMeta{Name: "metal"},
		Spec: ippv1alpha1.NodeClassSpec{
			GCE:              &ippv1alpha1.GCENodeClass{MachineType: "n2-standard-8", Zones: []string{s.gce.Zones()[0]}},
			MaxNodesPerClass: ptr.To[int32](2),
			IdleTTL:          &metav1.Duration{Duration: 10 * time.Minute},
			Limits:           &ippv1alpha1.NodeClassLimits{Instances: ptr.To[int32](10), InstancesPerNamespace: ptr.To[int32](4)},
		},
	}
	created, err := client.IppV1alpha1().NodeClasses().Create(ctx, nc, metav1.CreateOptions{FieldManager: "ipp-sandbox"})
	if err != nil {
		return fmt.Errorf("creating the example NodeClass: %w", err)
	}
	s.printf("Applied NodeClass %s (machineType %s, isolation %s by default, maxNodesPerClass %d): validated by the API server; Pods labelled ipp.io/node-class=%[1]s get its shape and limits (kubectl get nodeclasses)",
		created.Name, created.Spec.GCE.MachineType, created.Spec.Isolation, *created.Spec.MaxNodesPerClass)
	return nil
}
