#!/usr/bin/env bash
# Session 4, one H200: the 7B stages vs the bare Unsloth loop at batch 16 (bare first; its batch-16 figure of
# session 1 ran after Trainers), then CPT alone at batch 24 for the MFU goal.
set -uo pipefail
source "$(dirname "$0")/common.sh"
M=${M7:-qwen2.5-7b}; BK=${BK:-unsloth}
python3 -c "from korean_llm.bench.throughput import resolve_bench_model as r; print(r('$M'))" 2>&1 | tail -1
echo "shape built at $(( $(date +%s) - T0 )) s"
B="-m korean_llm bench --model $M --backend $BK --seq-len ${SEQ:-2048}"
run s16 420 python3 $B --mode bare,cpt,sft --batch-size 16 --steps 8 --warmup 4
run c24 580 python3 $B --mode cpt --batch-size 24 --steps 6 --warmup 3
for f in s16 c24; do echo "== $f peak $(grep -ho '"peak_tflops": [0-9.]*' $L/$f.log | head -1)"; rows $L/$f.log; done
tar czf $OUT/logs.tgz -C $L .
echo "total $(( $(date +%s) - T0 )) s"
