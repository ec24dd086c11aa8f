package deploy

import _ "embed"

// ServiceAccountUser is the username of the ServiceAccount the base runs ipp as
// (serviceaccount.yaml). The ValidatingAdmissionPolicies match it, and both webhooks leave its
// Pod UPDATEs out (webhooks.yaml): those are the controller's placements, which PodPolicy
// restricts.
const ServiceAccountUser = "system:serviceaccount:ipp-system:ipp"

// PodPolicy is the ValidatingAdmissionPolicy ipp-pods and its binding (base/pod-policy.yaml), two
// YAML documents, for programs that install it without kustomize: the e2e tests and the
// benchmarks.
//
//go:embed base/pod-policy.yaml
var PodPolicy []byte
