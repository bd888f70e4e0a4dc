#!/usr/bin/env bash
# The GPU tests (pytest marker `gpu`) on a CUDA host, in one command, from the repository root:
#   ci/gpu-tests.sh [SITE.tgz] [pytest args...]      (marker gpu; `-m multi_gpu` for the two-device tests)
# SITE.tgz: the offline bundle of shared/gpu/make-site.sh (Unsloth, TRL, datasets, bitsandbytes), for a host whose
# image has torch/transformers/peft but not those; it is put first on every interpreter's path (a .pth file), since
# the tests start `python -m korean_llm` processes of their own. Without it the installed packages are used.
# builtin:tiny-ko's tokenizer is built from konlpy's corpus: on a host without konlpy, point KOREAN_LLM_CACHE at a
# cache that already holds tiny-ko-v1 (copied from any machine that ran the CPU tests).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == *.tgz ]]; then
  site=${SITE_DIR:-/tmp/korean-llm-site}
  mkdir -p "$site" && tar xzf "$1" -C "$site"
  echo "import sys; sys.path.insert(0, '$site')" >"$(python3 -c 'import site; print(site.getsitepackages()[0])')/00-korean-llm-site.pth"
  shift
fi
export PYTHONPATH=$PWD/runtime HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled PYTHONUNBUFFERED=1
python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "gpu-tests: no CUDA device visible")'
python3 -c 'import unsloth' >/dev/null  # fails loudly here rather than as four failed tests
exec python3 -m pytest -q -m gpu tests/test_gpu.py "$@"  # a later -m in "$@" replaces this one
