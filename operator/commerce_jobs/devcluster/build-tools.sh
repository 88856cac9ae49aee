#!/usr/bin/env bash
# Builds the local control plane's binaries from Go modules at the versions pinned in tools.env (beside this script):
# kube-apiserver, kube-controller-manager, kube-scheduler and kubectl; etcd; kwok; helm. And the real node's:
# kubelet and kube-proxy; containerd, its runc shim and ctr; the pause image (our own static Go program in pause/,
# packaged by umoci as an OCI archive).
#
# Everything lands under ${COMMERCE_JOBS_CACHE:-~/.cache/commerce-jobs}: one directory per tool and version
# (written atomically, so a cut-off build never leaves a half tool behind), the Go module and build caches, and
# bin/ with a symlink per binary. A tool whose directory exists is not built again.
#
# Usage: build-tools.sh [kubernetes|etcd|kwok|helm|kubernetes-node|containerd|pause ...]   (default: all)
#        build-tools.sh pause-key
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

# cached NAME VERSION BINARY...: true, and the tool linked into bin/, when its directory holds every BINARY.
cached() {
  local name="$1" v="$2" b
  shift 2
  for b in "$@"; do [[ -x "$TOOLS/$name-$v/$b" ]] || return 1; done
  link_bins "$TOOLS/$name-$v"
  log "$name $v: cached"
}

# new_stage NAME VERSION [WHAT]: says that the build starts and prints a fresh staging directory for the tool;
# finish_stage NAME VERSION STAGE moves it into place (a cut-off build leaves only a .tmp directory behind).
new_stage() {
  local d="$TOOLS/.$1-$2.tmp"
  log "$1 $2: building${3:+ $3}"
  rm -rf "$d"; mkdir -p "$d"; echo "$d"
}
finish_stage() { rm -rf "$TOOLS/$1-$2"; mv "$3" "$TOOLS/$1-$2"; link_bins "$TOOLS/$1-$2"; log "$1 $2: done"; }

# expect_version TEXT COMMAND...: the build fails unless COMMAND (a fresh binary's version) prints TEXT.
expect_version() {
  local text="$1"
  shift
  "$@" | grep -qF -- "$text" || { log "$1 does not report $text"; exit 1; }
}

# A wrapper module: k8s.io/kubernetes (and etcd's server) carry replace directives that only apply in their own
# main module, so they cannot be `go install`ed. The wrapper requires them and replaces what they replace.
new_wrapper() {
  local dir="$1"
  rm -rf "$dir"; mkdir -p "$dir"
  (cd "$dir" && go mod init commercejobs.local/toolbuild >/dev/null 2>&1)
}

# kubernetes_wrapper DIR VERSION: a wrapper module in DIR for k8s.io/kubernetes@VERSION. The staging modules are
# derived from k8s.io/kubernetes' own go.mod: each is required at v0.0.0 and replaced by ./staging/... there; here
# each is replaced by its published v0.MINOR.PATCH tag. Leaves the shell in DIR.
kubernetes_wrapper() {
  local wrap="$1" v="$2" gomod staging m godebug count=0
  new_wrapper "$wrap"
  cd "$wrap"
  gomod="$(go mod download -json "k8s.io/kubernetes@$v" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
  staging="v0.${v#v1.}"
  for m in $(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$gomod" | sort -u); do
    go mod edit -replace="$m=$m@$staging"
    count=$((count + 1))
  done
  [[ $count -gt 20 ]] || { log "found only $count staging modules in $gomod"; exit 1; }
  log "kubernetes $v: replaced $count staging modules with $staging"
  godebug="$(awk '$1 == "godebug" {print $2}' "$gomod" | head -1)"
  [[ -n "$godebug" ]] && go mod edit -godebug="$godebug"
  return 0
}

# kubernetes_ldflags VERSION: the linker flags that stamp the version, as Kubernetes' own build does.
kubernetes_ldflags() {
  local v="$1" minor x ld="-s -w"
  minor="$(echo "$v" | cut -d. -f2)"
  for x in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $x.gitVersion=$v -X $x.gitMajor=1 -X $x.gitMinor=$minor -X $x.gitTreeState=clean"
    ld+=" -X $x.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  done
  echo "$ld"
}

build_kubernetes() {
  local v="$KUBERNETES_VERSION" stage
  cached kubernetes "$v" kube-apiserver kube-controller-manager kube-scheduler kubectl && return
  stage="$(new_stage kubernetes "$v" "kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (cold: ~20 min)")"
  kubernetes_wrapper "$CACHE/wrappers/kubernetes-$v" "$v"
  go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@$v" "k8s.io/kubernetes/cmd/kube-controller-manager@$v" \
    "k8s.io/kubernetes/cmd/kube-scheduler@$v" "k8s.io/kubernetes/cmd/kubectl@$v"
  go build -trimpath -pgo=off -ldflags "$(kubernetes_ldflags "$v")" -o "$stage/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
  expect_version "Kubernetes $v" "$stage/kube-apiserver" --version
  finish_stage kubernetes "$v" "$stage"
}

# The real node's kubelet and kube-proxy: same version and technique as build_kubernetes, in a wrapper and a tool
# directory of their own, so that the control plane's cache stays valid. With a warm Go cache: about 1 min.
build_kubernetes_node() {
  local v="$KUBERNETES_VERSION" stage
  cached kubernetes-node "$v" kubelet kube-proxy && return
  stage="$(new_stage kubernetes-node "$v" "kubelet, kube-proxy (cold: ~7 min, warm Go cache: ~1 min)")"
  kubernetes_wrapper "$CACHE/wrappers/kubernetes-node-$v" "$v"
  go get -tool "k8s.io/kubernetes/cmd/kubelet@$v" "k8s.io/kubernetes/cmd/kube-proxy@$v"
  go build -trimpath -pgo=off -ldflags "$(kubernetes_ldflags "$v")" -o "$stage/" \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
  expect_version "Kubernetes $v" "$stage/kubelet" --version
  expect_version "Kubernetes $v" "$stage/kube-proxy" --version
  finish_stage kubernetes-node "$v" "$stage"
}

# containerd 2.x, its runc shim and ctr. Static (no cgo): no btrfs snapshotter (it needs cgo), and the pure-Go user
# and DNS lookups. runc itself comes from Debian.
build_containerd() {
  local v="$CONTAINERD_VERSION" stage mod="github.com/containerd/containerd/v2"
  cached containerd "$v" containerd containerd-shim-runc-v2 ctr && return
  stage="$(new_stage containerd "$v" "containerd, containerd-shim-runc-v2, ctr (~3 min)")"
  GOBIN="$stage" go install -trimpath -tags "no_btrfs osusergo netgo" \
    -ldflags "-s -w -X $mod/version.Version=$v -X $mod/version.Package=$mod" \
    "$mod/cmd/containerd@$v" "$mod/cmd/containerd-shim-runc-v2@$v" "$mod/cmd/ctr@$v"
  expect_version " $v" "$stage/containerd" --version
  finish_stage containerd "$v" "$stage"
}

# The pod sandbox's image: pause/ (beside this script) built as a static binary and packaged by umoci as an OCI
# archive, user 65535, named by the content key of its source (pause_key), so any change to it builds a new one.
# The archive's index carries the fully qualified name (io.containerd.image.name) for `ctr images import`.
pause_key() { cat "$HERE/pause/go.mod" "$HERE/pause/main.go" | sha256sum | cut -c1-12; }

build_pause() {
  local key dir
  key="$(pause_key)"
  dir="$TOOLS/pause-$key"
  if [[ -f "$dir/pause.oci.tar" ]]; then log "pause $key: cached"; return; fi
  command -v umoci >/dev/null || { log "umoci is missing: run \`make system-deps\`"; exit 1; }
  local stage ref="localhost/commerce-jobs/node-pause:$key"
  stage="$(new_stage pause "$key")"
  (cd "$HERE/pause" && go build -trimpath -ldflags "-s -w" -o "$stage/rootfs/pause" .)
  chmod 0755 "$stage/rootfs/pause"
  touch -d @0 "$stage/rootfs/pause"
  umoci init --layout "$stage/layout"
  umoci new --image "$stage/layout:pause"
  umoci insert --image "$stage/layout:pause" --history.created_by "commerce-jobs build-tools.sh" \
    "$stage/rootfs/pause" /pause
  umoci config --image "$stage/layout:pause" --os linux --architecture amd64 \
    --config.user 65535:65535 --config.entrypoint /pause --config.stopsignal SIGINT
  umoci gc --layout "$stage/layout"
  python3 - "$stage/layout/index.json" "$ref" <<'PY'
import json, sys
path, ref = sys.argv[1], sys.argv[2]
index = json.load(open(path))
index["mediaType"] = "application/vnd.oci.image.index.v1+json"
(manifest,) = index["manifests"]
manifest["annotations"] = {"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": ref.rpartition(":")[2]}
manifest["platform"] = {"architecture": "amd64", "os": "linux"}
json.dump(index, open(path, "w"))
PY
  tar -C "$stage/layout" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
    -cf "$stage/pause.oci.tar" oci-layout index.json blobs
  echo "$ref" >"$stage/ref"
  rm -rf "$stage/rootfs" "$stage/layout"
  rm -rf "$dir"; mv "$stage" "$dir"
  log "pause $key: done ($ref)"
}

build_etcd() {
  local v="$ETCD_VERSION" stage wrap
  cached etcd "$v" etcd && return
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
  expect_version "etcd Version: ${v#v}" "$stage/etcd" --version
  finish_stage etcd "$v" "$stage"
}

build_kwok() {
  local v="$KWOK_VERSION" stage src
  cached kwok "$v" kwok && return
  stage="$(new_stage kwok "$v")"
  GOBIN="$stage" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$v"
  # kwok does not install its own CRDs; keep the ones for Logs and ClusterLogs beside the binary.
  src="$GOMODCACHE/sigs.k8s.io/kwok@$v/kustomize/crd/bases"
  mkdir -p "$stage/crds"
  cp "$src"/kwok.x-k8s.io_logs.yaml "$src"/kwok.x-k8s.io_clusterlogs.yaml "$stage/crds/"
  chmod -x "$stage"/crds/*.yaml
  finish_stage kwok "$v" "$stage"
}

build_helm() {
  local v="$HELM_VERSION" stage major
  cached helm "$v" helm && return
  stage="$(new_stage helm "$v")"
  major="${v%%.*}"
  GOBIN="$stage" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/$major/internal/version.version=$v" "helm.sh/helm/$major/cmd/helm@$v"
  expect_version "$v" "$stage/helm" version --short
  finish_stage helm "$v" "$stage"
}

# `build-tools.sh pause-key` prints the pause image's key (commerce_jobs.devcluster.toolchain computes the same).
if [[ "${1:-}" == pause-key ]]; then pause_key; exit 0; fi

targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(kubernetes etcd kwok helm kubernetes-node containerd pause)
for t in "${targets[@]}"; do
  case "$t" in
    kubernetes | etcd | kwok | helm | kubernetes-node | containerd | pause) "build_${t//-/_}" ;;
    *) log "unknown tool: $t"; exit 2 ;;
  esac
done
log "tools ready in $BIN"
