#!/usr/bin/env bash
# The offline checkers of tests/deploy, installed once per machine into $ESCROW_TOOLS_DIR
# (default ~/.cache/escrow-platform/tools), outside the work tree so that a fresh clone reuses them:
#   kustomize  built with the machine's Go from the Go module proxy (about 1.5 min the first time on 2 cores,
#              then nothing: the binary stays; Go's module and build caches make a rebuild take seconds)
#   promtool   taken out of Debian's prometheus package (`apt-get download` + `dpkg-deb -x`: no server is
#              installed or started)
# usage: deploy/tools/install.sh [kustomize|promtool]...   (no argument: both); prints the tools directory.
set -euo pipefail
KUSTOMIZE_VERSION=v5.8.0
TOOLS=${ESCROW_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/escrow-platform/tools}
mkdir -p "$TOOLS"

kustomize() {
  local bin=$TOOLS/kustomize
  [[ -x $bin && $("$bin" version 2>/dev/null) == "$KUSTOMIZE_VERSION" ]] && return 0
  local go; go=$(command -v go || echo /usr/local/go/bin/go)
  [[ -x $go ]] || { echo "install.sh: kustomize needs Go (not found)" >&2; return 1; }
  echo "install.sh: building kustomize $KUSTOMIZE_VERSION with $("$go" version)" >&2
  GOBIN=$TOOLS GOFLAGS=-mod=mod "$go" install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" >&2
}

promtool() {
  local bin=$TOOLS/promtool
  [[ -x $bin ]] && "$bin" --version >/dev/null 2>&1 && return 0
  local tmp; tmp=$(mktemp -d); trap 'rm -rf "$tmp"' RETURN
  echo "install.sh: taking promtool out of Debian's prometheus package" >&2
  # _apt cannot write to a mktemp directory owned by root: download as the caller
  (cd "$tmp" && apt-get download -o APT::Sandbox::User=root prometheus >/dev/null 2>&1) || {
    apt-get update -qq >&2 && (cd "$tmp" && apt-get download -o APT::Sandbox::User=root prometheus >/dev/null); }
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
  install -m 0755 "$tmp/x/usr/bin/promtool" "$bin"
}

for tool in "${@:-kustomize promtool}"; do
  for name in $tool; do "$name"; done
done
echo "$TOOLS"
