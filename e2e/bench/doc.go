// Package bench measures IPP against the claims of issue 6 and DESIGN.md, on real parts:
//
//   - P1: scheduling throughput of the real kube-scheduler for Pods that went through the real
//     webhook (registered with the in-process kube-apiserver), in dedicated mode with and without
//     the node-name pin, in autoscaler mode (inter-pod anti-affinity), and for unconstrained Pods.
//   - P2: the `ipp webhook` process under a Go load generator over HTTPS, and the latency the
//     webhooks add to a Pod CREATE through the apiserver.
//   - P3: pkg/controller with the real gce provider against the GCE emulator: reaction time,
//     steady state at thousands of classes, and a burst of new classes.
//
// Each part writes a JSON result (Result) that cmd/bench turns into files under
// e2e/bench/results/. Nothing here runs in `go test`; `make bench` and `make bench-full` run it.
package bench
