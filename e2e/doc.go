// Package e2e holds IPP's end-to-end tests, the sandbox and the benchmarks. It is its own Go module
// so that the main module never depends on k8s.io/kubernetes: everything here runs a real control
// plane (etcd, kube-apiserver, kube-scheduler, kube-controller-manager) in-process, and local
// emulators of the Compute and EC2 APIs that the real cloud SDK clients talk to.
package e2e
