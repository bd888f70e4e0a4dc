#!/usr/bin/env bash
# checkov over the rendered chart for every shipped values file, including the pod templates inside
# PyTorchJobs and Argo steps (re-emitted as plain Pods by tests/chart/rendered.py). Exit 0: no failed check
# apart from the skips listed below with their reason.
# checkov gets its own virtualenv (it pins packaging<24, which the project's packages do not accept):
# $CHECKOV_VENV, default .cache/checkov-venv, created on first use.
# Usage: ci/checkov.sh            (PYTHON: the project's python with pyyaml and helm; default .venv/bin/python)
#        ci/checkov.sh --install  only create the virtualenv (`make dev-tools` does, so the suite does not)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${CHECKOV_VENV:-$repo/.cache/checkov-venv}
python=${PYTHON:-$repo/.venv/bin/python}
checkov_pin="checkov==3.3.30"
if [ ! -x "$venv/bin/checkov" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "$checkov_pin"
fi
if [ "${1:-}" = "--install" ]; then
  exit 0
fi

# id|reason
skips=(
  "CKV_K8S_43|images are pinned to version tags (the schema rejects latest); digests change per build and are set by the release process, not the chart"
  "CKV_K8S_15|IfNotPresent with pinned tags: Always would re-pull multi-GB training images on every pod restart"
  "CKV_K8S_35|secrets come from existing Secrets via secretKeyRef (WANDB_API_KEY, HF_TOKEN, SLACK_WEBHOOK_URL are read from the environment by their libraries)"
  "CKV_K8S_38|Argo step pods need the service-account token (the executor reports results to the API) and so does the scheduler; training and inference pods set automountServiceAccountToken: false"
  "CKV_K8S_8|training and batch steps are run-to-completion pods without a server to probe (the inference and scheduler Deployments have probes)"
  "CKV_K8S_9|same as CKV_K8S_8: no server in batch pods to be ready"
)
ids=$(printf '%s\n' "${skips[@]}" | cut -d'|' -f1 | paste -sd, -)

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
scenarios=(
  "default|"
  "local|values/local.yaml"
  "7b-prod|values/7b.yaml values/prod.yaml"
  "7b-dev|values/7b.yaml values/dev.yaml"
  "72b-prod|values/72b.yaml values/prod.yaml"
  "multi-model-prod|values/multi-model.yaml values/prod.yaml"
)
shopt -s nullglob
for f in "$repo"/charts/ci/*-values.yaml; do
  scenarios+=("ci-$(basename "$f" -values.yaml)|${f#"$repo"/}")
done
cd "$repo"
for s in "${scenarios[@]}"; do
  name=${s%%|*}
  files=${s#*|}
  # shellcheck disable=SC2086  # word splitting of the file list is intended
  "$python" tests/chart/rendered.py "$out/$name" $files
done
"$venv/bin/checkov" --directory "$out" --framework kubernetes --compact --quiet --skip-download --skip-check "$ids"
