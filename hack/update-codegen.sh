#!/usr/bin/env bash
# Regenerates everything derived from the API types in pkg/apis, with the generators pinned by the
# `tool` directives of go.mod (nothing else to install):
#   controller-gen (sigs.k8s.io/controller-tools): deepcopy (zz_generated.deepcopy.go) and the
#     CRDs in deploy/base/crds/;
#   k8s.io/code-generator: the typed clientset, listers, informers and apply configurations in
#     pkg/generated/.
# Run it from anywhere as `make generate`. Old outputs are removed first, so that a type or
# package deleted from pkg/apis leaves nothing behind. hack/codegen_test.go runs this script in
# a copy of the module and fails when the committed outputs differ.
set -o errexit -o nounset -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${ROOT}"

MODULE=$(go list -m)
BOILERPLATE=hack/boilerplate.go.txt
APIS=pkg/apis
GENERATED=pkg/generated
CRDS=deploy/base/crds
# API packages, as group/version directories under pkg/apis.
GROUP_VERSIONS=(ipp/v1alpha1)

rm -rf "${GENERATED}" "${CRDS}"
find "${APIS}" -name 'zz_generated.*.go' -delete

# object: DeepCopy and DeepCopyObject. crd: the CustomResourceDefinitions, OpenAPI schema, CEL
# rules, defaults and printer columns from the kubebuilder markers.
go tool controller-gen \
	object:headerFile="${BOILERPLATE}" \
	crd:crdVersions=v1 \
	paths="./${APIS}/..." \
	output:crd:artifacts:config="${CRDS}"

input_pkgs=()
for gv in "${GROUP_VERSIONS[@]}"; do
	input_pkgs+=("${MODULE}/${APIS}/${gv}")
done

go tool applyconfiguration-gen \
	--go-header-file "${BOILERPLATE}" \
	--output-dir "${GENERATED}/applyconfiguration" \
	--output-pkg "${MODULE}/${GENERATED}/applyconfiguration" \
	"${input_pkgs[@]}"

go tool client-gen \
	--go-header-file "${BOILERPLATE}" \
	--clientset-name versioned \
	--input-base "" \
	--input "$(IFS=,; echo "${input_pkgs[*]}")" \
	--apply-configuration-package "${MODULE}/${GENERATED}/applyconfiguration" \
	--output-dir "${GENERATED}/clientset" \
	--output-pkg "${MODULE}/${GENERATED}/clientset"

go tool lister-gen \
	--go-header-file "${BOILERPLATE}" \
	--output-dir "${GENERATED}/listers" \
	--output-pkg "${MODULE}/${GENERATED}/listers" \
	"${input_pkgs[@]}"

go tool informer-gen \
	--go-header-file "${BOILERPLATE}" \
	--versioned-clientset-package "${MODULE}/${GENERATED}/clientset/versioned" \
	--listers-package "${MODULE}/${GENERATED}/listers" \
	--output-dir "${GENERATED}/informers" \
	--output-pkg "${MODULE}/${GENERATED}/informers" \
	"${input_pkgs[@]}"
