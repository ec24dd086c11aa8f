package tests

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestControlPlaneUp(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ns, err := cluster.CreateNamespace(ctx, "up-")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.Client.CoreV1().ServiceAccounts(ns.Name).Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Errorf("Default ServiceAccount of %s: %v", ns.Name, err)
	}
}
