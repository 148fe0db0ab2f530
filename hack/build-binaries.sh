#!/usr/bin/env bash
# Builds the local control plane's binaries from Go modules and caches them under
# ~/.cache/tessera/bin/<component>-<version>/. Re-running with a warm cache does nothing.
# Usage: hack/build-binaries.sh [component...]   (default: all)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck disable=SC1091
source "$here/versions.env"
cache=${TESSERA_CACHE:-$HOME/.cache/tessera}
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
export GOCACHE=$cache/go-build GOMODCACHE=$cache/go-mod
mkdir -p "$cache/bin" "$GOCACHE" "$GOMODCACHE"

kube_ldflags() {
  local v=$KUBERNETES_VERSION minor
  minor=$(echo "$v" | cut -d. -f2)
  local flags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$flags"
}

build() {  # build <component> <version> <module dir> <ldflags> <package>...
  local name=$1 version=$2 moddir=$3 ldflags=$4; shift 4
  local out="$cache/bin/$name-$version"
  if [[ -f "$out/.complete" ]]; then echo "[$name] cached at $out"; return; fi
  echo "[$name] building $version ..."
  local start=$SECONDS tmp="$out.tmp"
  rm -rf "$tmp"; mkdir -p "$tmp"
  (cd "$here/$moddir" && go build -trimpath -ldflags "$ldflags" -o "$tmp/" "$@")
  # go names etcd's binary after its package (go.etcd.io/etcd/server/v3 -> "server").
  if [[ $name == etcd && -f $tmp/server ]]; then mv "$tmp/server" "$tmp/etcd"; fi
  rm -rf "$out"; mv "$tmp" "$out"; touch "$out/.complete"
  echo "[$name] built in $((SECONDS - start)) s"
}

want=("$@"); [[ ${#want[@]} -gt 0 ]] || want=(etcd kubernetes kwok helm)
for c in "${want[@]}"; do
  case $c in
    etcd) build etcd "$ETCD_VERSION" etcd "-s -w" go.etcd.io/etcd/server/v3 ;;
    kubernetes) build kubernetes "$KUBERNETES_VERSION" kube "$(kube_ldflags)" \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl ;;
    kwok) build kwok "$KWOK_VERSION" kwok "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok ;;
    helm) build helm "$HELM_VERSION" helm "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" helm.sh/helm/v3/cmd/helm ;;
    *) echo "unknown component $c" >&2; exit 2 ;;
  esac
done
