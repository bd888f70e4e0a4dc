# sourced by the device scripts: bundle first on every interpreter's path, tiny tokenizer cache, offline hub
# From the repository root on a CUDA host: OUT=/some/folder bash bench/gpu/<script>.sh (docs/benchmarks.md, "GPU").
# SITE: the bundle of shared/gpu/make-site.sh (default .gpu/site.tgz); TOKENIZER_CACHE: a folder holding tiny-ko-v1
# (built by any CPU run of the tests; the GPU host has no konlpy). DRY=1 M15=builtin:tiny-ko: rehearse on a CPU.
if [ -z "${DRY:-}" ]; then
  mkdir -p /tmp/site && tar xzf "${SITE:-.gpu/site.tgz}" -C /tmp/site
  SP=$(python3 -c 'import site; print(site.getsitepackages()[0])')
  echo "import sys; sys.path.insert(0, '/tmp/site')" > "$SP/00-korean-llm-site.pth"
fi
KC=${KC:-/kcache}; mkdir -p $KC && cp -rn "${TOKENIZER_CACHE:-.gpu/cache}/tiny-ko-v1" $KC/ 2>/dev/null || true
export KOREAN_LLM_CACHE=$KC HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled PYTHONPATH=$PWD/runtime
T0=$(date +%s)
left() { echo $(( $1 - ($(date +%s) - T0) )); }
