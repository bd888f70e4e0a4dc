#!/usr/bin/env bash
# The stages' trainers (cpt, sft) against the bare training loop of the same loaded model, on one GPU: tokens/s,
# peak memory and MFU per batch size, each batch size in a fresh process with the bare loop first (a Trainer
# changes the loaded model). Settings: M (shape, default qwen2.5-1.5b), BK (backend, default unsloth),
# BATCHES (default "8 8 16": a size twice measures the spread), SEQ (2048), STEPS (20), WARMUP (6).
set -uo pipefail
source "$(dirname "$0")/env.sh"
M=${M:-${M15:-qwen2.5-1.5b}}; BK=${BK:-unsloth}
python3 -c "from korean_llm.bench.throughput import resolve_bench_model as r; print(r('$M'))" 2>&1 | tail -1
B="-m korean_llm bench --model $M --backend $BK --mode bare,cpt,sft --seq-len ${SEQ:-2048} --steps ${STEPS:-20} --warmup ${WARMUP:-6}"
i=0
for batch in ${BATCHES:-8 8 16}; do
  i=$((i + 1))
  run p$i $(( 190 * i )) python3 $B --batch-size $batch --json-out $OUT/p$i.json
done
for f in $L/p*.log; do echo "== $f peak $(grep -ho '"peak_tflops": [0-9.]*' $f | head -1)"; rows $f; done
echo "total $(( $(date +%s) - T0 )) s"
