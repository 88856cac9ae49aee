#!/usr/bin/env bash
# Builds the local control plane's binaries from Go modules at the versions pinned in tools.env (beside this script):
# kube-apiserver, kube-controller-manager, kube-scheduler and kubectl; etcd; kwok; helm.
#
# Everything lands under ${COMMERCE_JOBS_CACHE:-~/.cache/commerce-jobs}: one directory per tool and version
# (written atomically, so a cut-off build never leaves a half tool behind), the Go module and build caches, and
# bin/ with a symlink per binary. A tool whose directory exists is not built again.
#
# Usage: hack/build-tools.sh [kubernetes|etcd|kwok|helm ...]   (default: all)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tools.env
source "$HERE/tools.env"

CACHE="${COMMERCE_JOBS_CACHE:-$HOME/.cache/commerce-jobs}"
TOOLS="$CACHE/tools"
BIN="$CACHE/bin"
mkdir -p "$TOOLS" "$BIN"

export GOTOOLCHAIN=local   # never let go fetch another toolchain
export CGO_ENABLED=0
export GOFLAGS=-mod=mod
export GOMODCACHE="${GOMODCACHE_OVERRIDE:-$CACHE/go/mod}"
export GOCACHE="$CACHE/go/build"
export GOPATH="$CACHE/go/path"

log() { printf '[build-tools %s] %s\n' "$(date +%T)" "$*" >&2; }

# link_bins DIR: point bin/<name> at every executable of DIR.
link_bins() {
  local dir="$1" f
  for f in "$dir"/*; do
    [[ -f "$f" && -x "$f" ]] && ln -sfn "$f" "$BIN/$(basename "$f")"
  done
}

# new_stage NAME VERSION: prints a fresh staging directory for a tool; finish_stage moves it into place.
new_stage() { local d="$TOOLS/.$1-$2.tmp"; rm -rf "$d"; mkdir -p "$d"; echo "$d"; }
finish_stage() { rm -rf "$TOOLS/$1-$2"; mv "$3" "$TOOLS/$1-$2"; link_bins "$TOOLS/$1-$2"; }

# A wrapper module: k8s.io/kubernetes (and etcd's server) carry replace directives that only apply in their own
# main module, so they cannot be `go install`ed. The wrapper requires them and replaces what they replace.
new_wrapper() {
  local dir="$1"
  rm -rf "$dir"; mkdir -p "$dir"
  (cd "$dir" && go mod init commercejobs.local/toolbuild >/dev/null 2>&1)
}

build_kubernetes() {
  local v="$KUBERNETES_VERSION" dir="$TOOLS/kubernetes-$KUBERNETES_VERSION"
  if [[ -x "$dir/kube-apiserver" ]]; then link_bins "$dir"; log "kubernetes $v: cached"; return; fi
  log "kubernetes $v: building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (cold: ~20 min)"
  local stage wrap gomod staging minor m
  stage="$(new_stage kubernetes "$v")"
  wrap="$CACHE/wrappers/kubernetes-$v"
  new_wrapper "$wrap"
  cd "$wrap"
  # Derive the staging modules from k8s.io/kubernetes' own go.mod: each is required at v0.0.0 and replaced by
  # ./staging/... there; here each is replaced by its published v0.MINOR.PATCH tag.
  gomod="$(go mod download -json "k8s.io/kubernetes@$v" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
  staging="v0.${v#v1.}"
  local count=0
  for m in $(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$gomod" | sort -u); do
    go mod edit -replace="$m=$m@$staging"
    count=$((count + 1))
  done
  [[ $count -gt 20 ]] || { log "found only $count staging modules in $gomod"; exit 1; }
  log "kubernetes $v: replaced $count staging modules with $staging"
  local godebug
  godebug="$(awk '$1 == "godebug" {print $2}' "$gomod" | head -1)"
  [[ -n "$godebug" ]] && go mod edit -godebug="$godebug"
  go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@$v" "k8s.io/kubernetes/cmd/kube-controller-manager@$v" \
    "k8s.io/kubernetes/cmd/kube-scheduler@$v" "k8s.io/kubernetes/cmd/kubectl@$v"
  minor="$(echo "$v" | cut -d. -f2)"
  local x ld="-s -w"
  for x in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $x.gitVersion=$v -X $x.gitMajor=1 -X $x.gitMinor=$minor -X $x.gitTreeState=clean"
    ld+=" -X $x.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  done
  go build -trimpath -pgo=off -ldflags "$ld" -o "$stage/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
  "$stage/kube-apiserver" --version | grep -qx "Kubernetes $v" || { log "version stamp missing"; exit 1; }
  finish_stage kubernetes "$v" "$stage"
  log "kubernetes $v: done"
}

build_etcd() {
  local v="$ETCD_VERSION" dir="$TOOLS/etcd-$ETCD_VERSION"
  if [[ -x "$dir/etcd" ]]; then link_bins "$dir"; log "etcd $v: cached"; return; fi
  log "etcd $v: building"
  local stage wrap
  stage="$(new_stage etcd "$v")"
  wrap="$CACHE/wrappers/etcd-$v"
  new_wrapper "$wrap"
  cd "$wrap"
  # server/go.mod replaces its sibling modules with ../api and so on; pin them to the same tag instead.
  local m
  for m in api/v3 client/pkg/v3 client/v3 pkg/v3 server/v3; do
    go mod edit -replace="go.etcd.io/etcd/$m=go.etcd.io/etcd/$m@$v"
  done
  go get -tool "go.etcd.io/etcd/server/v3@$v"
  go build -trimpath -ldflags "-s -w" -o "$stage/etcd" go.etcd.io/etcd/server/v3
  "$stage/etcd" --version | grep -q "etcd Version: ${v#v}" || { log "etcd reports a wrong version"; exit 1; }
  finish_stage etcd "$v" "$stage"
  log "etcd $v: done"
}

build_kwok() {
  local v="$KWOK_VERSION" dir="$TOOLS/kwok-$KWOK_VERSION"
  if [[ -x "$dir/kwok" ]]; then link_bins "$dir"; log "kwok $v: cached"; return; fi
  log "kwok $v: building"
  local stage src
  stage="$(new_stage kwok "$v")"
  GOBIN="$stage" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$v"
  # kwok does not install its own CRDs; keep the ones for Logs and ClusterLogs beside the binary.
  src="$GOMODCACHE/sigs.k8s.io/kwok@$v/kustomize/crd/bases"
  mkdir -p "$stage/crds"
  cp "$src"/kwok.x-k8s.io_logs.yaml "$src"/kwok.x-k8s.io_clusterlogs.yaml "$stage/crds/"
  chmod -x "$stage"/crds/*.yaml
  finish_stage kwok "$v" "$stage"
  log "kwok $v: done"
}

build_helm() {
  local v="$HELM_VERSION" dir="$TOOLS/helm-$HELM_VERSION"
  if [[ -x "$dir/helm" ]]; then link_bins "$dir"; log "helm $v: cached"; return; fi
  log "helm $v: building"
  local stage major
  stage="$(new_stage helm "$v")"
  major="${v%%.*}"
  GOBIN="$stage" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/$major/internal/version.version=$v" "helm.sh/helm/$major/cmd/helm@$v"
  "$stage/helm" version --short | grep -q "^$v" || { log "helm reports a wrong version"; exit 1; }
  finish_stage helm "$v" "$stage"
  log "helm $v: done"
}

targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(kubernetes etcd kwok helm)
for t in "${targets[@]}"; do
  case "$t" in
    kubernetes | etcd | kwok | helm) "build_$t" ;;
    *) log "unknown tool: $t"; exit 2 ;;
  esac
done
log "tools ready in $BIN"
