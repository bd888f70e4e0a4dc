#!/usr/bin/env bash
# Put helm-docs (the generator of charts/README.md, `make chart-docs`; tests/test_chart.py checks the README with it)
# at $1/helm-docs: the system's if it is the same version, otherwise built from the source in ci/helm-docs with
# Debian's Go toolchain and Go library packages (apt only, no other network; ci/helm-docs/README.md).
# Usage: ci/install-helm-docs.sh .venv/bin
set -euo pipefail
dest=${1:?usage: install-helm-docs.sh DEST_DIR}
version=1.15.0
# helm-docs' Go dependencies as Debian packages (their own dependencies come with them)
packages="golang-go golang-github-masterminds-sprig-dev golang-github-gobwas-glob-dev golang-github-sirupsen-logrus-dev
  golang-github-spf13-cobra-dev golang-github-spf13-viper-dev golang-gopkg-yaml.v3-dev golang-github-pkg-errors-dev"
mkdir -p "$dest"; dest=$(cd "$dest" && pwd)  # absolute: the build below runs in a scratch folder
src=$(cd "$(dirname "$0")/helm-docs" && pwd)
is_ours() { [ "$("$1" --version 2>/dev/null)" = "helm-docs version $version" ]; }
if [ -x "$dest/helm-docs" ] && is_ours "$dest/helm-docs"; then exit 0; fi
if sys_helm_docs=$(command -v helm-docs 2>/dev/null) && is_ours "$sys_helm_docs"; then
  ln -sf "$sys_helm_docs" "$dest/helm-docs"; echo "helm-docs: using system $sys_helm_docs"; exit 0
fi
missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  as_root=""; [ "$(id -u)" -eq 0 ] || as_root=sudo
  # shellcheck disable=SC2086  # the package list is meant to split
  if ! $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null 2>&1; then
    $as_root apt-get update -q >/dev/null
    $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null
  fi
fi
# GOPATH mode: the import paths resolve to the vendored source and to Debian's /usr/share/gocode; an import with a
# /v3 suffix finds the folder without it through its go.mod (Go's minimal module compatibility).
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src/github.com/norwoodj" "$work/src/helm.sh/helm/v3/pkg"
ln -s "$src" "$work/src/github.com/norwoodj/helm-docs"
ln -s "$src/third_party/helm.sh/helm/v3/pkg/ignore" "$work/src/helm.sh/helm/v3/pkg/ignore"
cd "$work/src/github.com/norwoodj/helm-docs"
GO111MODULE=off GOPATH="$work:/usr/share/gocode" GOCACHE="$work/cache" GOFLAGS="" CGO_ENABLED=0 \
  go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$dest/helm-docs" ./cmd/helm-docs
echo "helm-docs: built $("$dest/helm-docs" --version) from ci/helm-docs with $(go version | cut -d' ' -f3)"
