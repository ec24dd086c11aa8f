#!/usr/bin/env bash
# ipp.yaml.sh IMAGE — print IPP's manifests with IMAGE, ready for `kubectl apply -f -`:
#
#   ./ipp.yaml.sh gcr.io/my-project/ipp:v0.1.0 | kubectl apply -f -
#
# A thin wrapper around `kubectl kustomize` (or `kustomize build`) of deploy/overlays/gce, or of
# deploy/overlays/$IPP_OVERLAY (gce, ec2, cert-manager). Edit the overlay's provider.yaml first.
# Set KUSTOMIZE to the build command to use instead (it gets the directory as its argument).
# No TLS tool is needed: ipp creates its own CA and serving certificate (docs/operations.md).
set -euo pipefail

usage() {
	echo "usage: $0 IMAGE   (IMAGE like registry.example.com/ipp:v1 or ...ipp@sha256:<digest>)" >&2
	exit 2
}
[[ $# -eq 1 && -n "$1" && "$1" != -* ]] || usage
image=$1

root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
overlay=${IPP_OVERLAY:-gce}
overlay_dir="$root/deploy/overlays/$overlay"
if [[ ! -f "$overlay_dir/kustomization.yaml" ]]; then
	echo "$0: no overlay $overlay in $root/deploy/overlays (IPP_OVERLAY must be one of: $(ls "$root/deploy/overlays" | tr '\n' ' '))" >&2
	exit 2
fi

# Split IMAGE into name, tag and digest: the tag is after the last ':' that follows the last '/'.
name=$image digest="" tag=""
if [[ $name == *@* ]]; then
	digest=${name#*@}
	name=${name%%@*}
fi
last=${name##*/}
if [[ $last == *:* ]]; then
	tag=${last##*:}
	name=${name%:*}
fi
if [[ -z $name || ! $name =~ ^[a-z0-9]([a-z0-9._/:-]*[a-z0-9])?$ ]]; then
	echo "$0: invalid image name in $image" >&2
	exit 2
fi

if [[ -n ${KUSTOMIZE:-} ]]; then
	build=($KUSTOMIZE)
elif command -v kubectl >/dev/null 2>&1; then
	build=(kubectl kustomize)
elif command -v kustomize >/dev/null 2>&1; then
	build=(kustomize build)
else
	echo "$0: needs kubectl (or kustomize) on the PATH" >&2
	exit 1
fi

# kustomize accepts only relative paths to other kustomizations, so the temporary one lives in
# deploy/, next to the overlays.
tmp=$(mktemp -d "$root/deploy/.ipp-yaml.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
{
	echo "apiVersion: kustomize.config.k8s.io/v1beta1"
	echo "kind: Kustomization"
	echo "resources:"
	echo "- ../overlays/$overlay"
	echo "images:"
	echo "- name: ipp"
	echo "  newName: $name"
	if [[ -n $digest ]]; then
		echo "  digest: $digest"
	elif [[ -n $tag ]]; then
		echo "  newTag: \"$tag\""
	else
		echo "  newTag: latest"
	fi
} >"$tmp/kustomization.yaml"
"${build[@]}" "$tmp"
