// Package deploy holds IPP's kustomize manifests: base/, the overlays gce, ec2 and
// cert-manager, and the components control-plane-only and trusted-nodes, the NodeClass CRD and the Pod policy
// embedded for programs that install them without kustomize (NodeClassCRD, PodPolicy). Its
// tests render every kustomization with the kustomize library and check the invariants that
// DESIGN.md, docs/operations.md and docs/webhook.md promise, and evaluate the admission policies
// with the apiserver's own code.
package deploy
