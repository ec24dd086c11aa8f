// Package deploy holds IPP's kustomize manifests: base/ and the overlays gce, ec2 and
// cert-manager. It has no Go code; its test renders every kustomization with the kustomize
// library and checks the invariants that DESIGN.md and docs/operations.md promise.
package deploy
