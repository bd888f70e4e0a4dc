# Sourced by the GPU measurement scripts: environment of a CUDA host, a log folder, and helpers.
# From the repository root: OUT=/some/folder bash bench/gpu/<script>.sh (docs/benchmarks.md says which figure each gives).
# The host needs the package with its GPU extra (`pip install -c constraints.txt '.[gpu,tracking]'`, as the image);
# SITE=<tarball>: unpack an offline bundle of those packages first and put it on every interpreter's path instead.
# DRY=1 M15=builtin:tiny-ko BK=hf: rehearse a script on a CPU.
if [ -n "${SITE:-}" ] && [ -z "${DRY:-}" ]; then
  mkdir -p /tmp/site && tar xzf "$SITE" -C /tmp/site
  SP=$(python3 -c 'import site; print(site.getsitepackages()[0])')
  echo "import sys; sys.path.insert(0, '/tmp/site')" > "$SP/00-korean-llm-site.pth"
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled PYTHONPATH=$PWD/runtime
OUT=${OUT:-/tmp/bench-out}; mkdir -p "$OUT"
T0=$(date +%s)
left() { echo $(( $1 - ($(date +%s) - T0) )); }
L=${L:-$OUT/logs}; mkdir -p $L
# run NAME BUDGET CMD...: CMD's stdout/stderr to $L/NAME.out/.log, killed BUDGET s after the script started
run() { local name=$1 budget=$2; shift 2; timeout $(left $budget) "$@" > $L/$name.out 2> $L/$name.log; echo "$name rc=$? at $(( $(date +%s) - T0 )) s"; }
# rows LOG...: the bench result rows of these logs, one line each
rows() { grep -h "bench result" "$@" | sed 's/.*bench result //' | python3 -c '
import json, sys
for r in map(json.loads, sys.stdin):
    f = lambda k, d=0: "-" if r.get(k) is None else f"{r[k]:,.{d}f}"
    print(r["backend"], r["mode"], r["batch_size"], f("step_seconds", 3), f("tokens_per_second"), f("nonpad_tokens_per_second"), f("peak_memory_gib", 2), f("mfu", 3), r.get("error", ""))'; }
