#!/usr/bin/env bash
# Session 4, one H200: the 1.5B stages vs the bare Unsloth loop at batch 8 (twice, separate processes) and batch 16
# (once), bare first in each process; longer steps than session 3's batch 4, the same host work per step.
set -uo pipefail
source "$(dirname "$0")/common.sh"
M=${M15:-qwen2.5-1.5b}; BK=${BK:-unsloth}
python3 -c "from korean_llm.bench.throughput import resolve_bench_model as r; print(r('$M'))" 2>&1 | tail -1
B="-m korean_llm bench --model $M --backend $BK --mode bare,cpt,sft --seq-len ${SEQ:-2048} --steps 20 --warmup 6"
run p1 200 python3 $B --batch-size 8
run p2 390 python3 $B --batch-size 8
run p3 575 python3 $B --batch-size 16
for f in p1 p2 p3; do echo "== $f peak $(grep -ho '"peak_tflops": [0-9.]*' $L/$f.log | head -1)"; rows $L/$f.log; done
tar czf $OUT/logs.tgz -C $L .
echo "total $(( $(date +%s) - T0 )) s"
