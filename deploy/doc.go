// Package deploy holds IPP's kustomize manifests: base/, the overlays gce, ec2 and
// cert-manager, and the components control-plane-only and trusted-nodes, and the NodeClass CRD
// embedded for programs that install it without kustomize (NodeClassCRD). Its
// tests render every kustomization with the kustomize library and check the invariants that
// DESIGN.md, docs/operations.md and docs/webhook.md promise, and evaluate the admission policies
// with the apiserver's own code.
package deploy
