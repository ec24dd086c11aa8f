package framework

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// PollInterval is how often the wait helpers look.
const PollInterval = 50 * time.Millisecond

// WaitForNode waits up to timeout until the Node exists and cond holds for it.
func WaitForNode(ctx context.Context, c kubernetes.Interface, name string, timeout time.Duration, what string, cond func(*corev1.Node) bool) (*corev1.Node, error) {
	var last *corev1.Node
	err := wait.PollUntilContextTimeout(ctx, PollInterval, timeout, true, func(ctx context.Context) (bool, error) {
		n, err := c.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		last = n
		return cond(n), nil
	})
	if err != nil {
		return last, fmt.Errorf("waiting for node %s to be %s: %w", name, what, err)
	}
	return last, nil
}

// WaitForNodeSchedulable waits until the Node is Ready and carries none of the taints the control
// plane puts on nodes that are not ready (node.kubernetes.io/not-ready, unreachable).
func WaitForNodeSchedulable(ctx context.Context, c kubernetes.Interface, name string, timeout time.Duration) (*corev1.Node, error) {
	return WaitForNode(ctx, c, name, timeout, "ready and schedulable", func(n *corev1.Node) bool {
		if !NodeReady(n) {
			return false
		}
		for _, t := range n.Spec.Taints {
			if t.Key == corev1.TaintNodeNotReady || t.Key == corev1.TaintNodeUnreachable {
				return false
			}
		}
		return true
	})
}

// NodeReady reports whether the Node's Ready condition is True.
func NodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// WaitForPod waits up to timeout until the Pod exists and cond holds for it; it fails early if
// the Pod reaches a terminal phase that cond does not accept.
func WaitForPod(ctx context.Context, c kubernetes.Interface, namespace, name string, timeout time.Duration, what string, cond func(*corev1.Pod) bool) (*corev1.Pod, error) {
	var last *corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, PollInterval, timeout, true, func(ctx context.Context) (bool, error) {
		p, err := c.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		last = p
		if cond(p) {
			return true, nil
		}
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			return false, fmt.Errorf("pod is %s: %s %s", p.Status.Phase, p.Status.Reason, p.Status.Message)
		}
		return false, nil
	})
	if err != nil {
		return last, fmt.Errorf("waiting for pod %s/%s to be %s: %w", namespace, name, what, err)
	}
	return last, nil
}

// WaitForPodRunning waits until the Pod is Running and Ready.
func WaitForPodRunning(ctx context.Context, c kubernetes.Interface, namespace, name string, timeout time.Duration) (*corev1.Pod, error) {
	return WaitForPod(ctx, c, namespace, name, timeout, "running", PodRunningAndReady)
}

// PodRunningAndReady reports whether the Pod is Running with its Ready condition True.
func PodRunningAndReady(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
