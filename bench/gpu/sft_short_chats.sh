#!/usr/bin/env bash
# One H200: the SFT stage on a short Korean chat set against synthetic full-length rows, in the same command
# (Unsloth, QLoRA r=16, sequence 2048). Per run: the synthetic bench at BATCHES_SYN, then the chats with every
# sft.packing setting of PACKINGS at BATCHES; RUNS runs one after the other give the spread.
#   M=qwen2.5-1.5b (default) | qwen2.5-7b   BATCHES=8,16,64   BATCHES_SYN=8,16   PACKINGS=auto,false   RUNS=1
#   ROWS=4000 (chats read)   STEPS=8 WARMUP=5   BUDGET=580 (s: every bench call is cut off at this point)
#   OFF=1: per run also the chats with model.unsloth_block_compile=false (Unsloth's per-layer compile off)
# CHATS: python -m korean_llm.bench.shortchats .gpu/chats.jsonl --rows 12000 (on a CPU, carried in .gpu/).
set -uo pipefail
L=${L:-/tmp/logs}  # the logs come back as one tarball
source "$(dirname "$0")/env.sh"
# builtin:tiny-ko's tokenizer (the bench shapes use it), built on a CPU: TOKENIZER_CACHE holds tiny-ko-v1
export KOREAN_LLM_CACHE=${KC:-/kcache}; mkdir -p $KOREAN_LLM_CACHE
cp -rn "${TOKENIZER_CACHE:-.gpu/cache}/tiny-ko-v1" $KOREAN_LLM_CACHE/ 2>/dev/null
M=${M:-qwen2.5-1.5b}; BATCHES=${BATCHES:-8,16,64}; BATCHES_SYN=${BATCHES_SYN:-8,16}; PACKINGS=${PACKINGS:-auto,false}
RUNS=${RUNS:-1}; ROWS=${ROWS:-4000}; STEPS=${STEPS:-8}; WARMUP=${WARMUP:-5}; BUDGET=${BUDGET:-580}; OFF=${OFF:-0}
CHATS=${CHATS:-.gpu/chats.jsonl}; J=$OUT/json; mkdir -p $J
B="-m korean_llm bench --backend ${BK:-unsloth} --seq-len 2048 --mode sft --model $M --steps $STEPS --warmup $WARMUP"
python3 -c "from korean_llm.bench.throughput import resolve_bench_model as r; print(r('$M'))" 2>&1 | tail -1
echo "shape ready at $(( $(date +%s) - T0 )) s"
for r in $(seq 1 $RUNS); do
  run syn$r $BUDGET python3 $B --batch-size $BATCHES_SYN --json-out $J/syn$r.json
  run chats$r $BUDGET python3 $B --data $CHATS --max-rows $ROWS --packing $PACKINGS --batch-size $BATCHES \
    --json-out $J/chats$r.json
  [ "$OFF" = 1 ] && run off$r $BUDGET python3 $B --data $CHATS --max-rows $ROWS --packing $PACKINGS --batch-size $BATCHES \
    --set model.unsloth_block_compile=false --json-out $J/off$r.json
done
for f in $L/syn*.log $L/chats*.log $L/off*.log; do [ -f $f ] || continue; echo "== $(basename $f .log)"; rows $f; grep -h "p50\|Traceback" $f | cut -c1-300 | head -4; done
# One line per measured row, from the logs (a call cut off by BUDGET still reports the rows it finished).
grep -h "bench result" $L/syn*.log $L/chats*.log $(ls $L/off*.log 2>/dev/null) | sed 's/.*bench result //' | python3 -c '
import json, sys
for r in map(json.loads, sys.stdin):
    if "error" in r:
        print(r["mode"], r["batch_size"], "ERROR", r["error"][:200]); continue
    L = r.get("lengths") or {}
    print("chats" if r.get("data") else "synthetic", "b%s" % r["batch_size"], "packed" if r.get("packing") else "unpacked",
          "step %.3f" % r["step_seconds"], "tokens/step %.0f" % (r["tokens_per_second"] * r["step_seconds"]),
          "nonpad/s %.0f" % r["nonpad_tokens_per_second"], "pad %.3f" % (r.get("padding_share") or 0),
          "peak %.2f" % (r["peak_memory_gib"] or 0), "compile %s" % r.get("block_compile"), "p50/90/99 %s/%s/%s" % (L.get("p50"), L.get("p90"), L.get("p99")),
          "sys/prompt/loss %s/%s/%s" % (r.get("system_prompt_share"), r.get("prompt_share"), r.get("loss_share")))'
tar czf $OUT/logs.tgz -C $L .
echo "total $(( $(date +%s) - T0 )) s"
