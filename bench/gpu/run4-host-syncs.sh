#!/usr/bin/env bash
# Session 3, one H200: where the 1.5B stage steps wait for the GPU (bench/gpu/sync_sites.py), then the stages vs the
# bare Unsloth loop in one run, with this tree and (OLD=a folder holding an earlier runtime/) with the code before.
set -uo pipefail
source "$(dirname "$0")/common.sh"
M=${M15:-qwen2.5-1.5b}; BK=${BK:-unsloth}  # DRY=1 BK=hf on a CPU
python3 -c "from korean_llm.bench.throughput import resolve_bench_model as r; print(r('$M'))" 2>&1 | tail -1
run syncs 170 python3 bench/gpu/sync_sites.py --model $M --backend $BK --mode cpt,sft --seq-len ${SEQ:-2048}
B="-m korean_llm bench --model $M --backend $BK --mode bare,cpt,sft --seq-len ${SEQ:-2048} --batch-size 4 --steps 10 --warmup 6"
run new 370 python3 $B
[ -n "${OLD:-}" ] && run old 560 env PYTHONPATH=$OLD/runtime python3 $B
cat $L/syncs.out
for f in new old; do [ -f $L/$f.log ] && { echo "== $f"; rows $L/$f.log; grep -h "Traceback\|Error" $L/$f.log | head -3; }; done
tar czf $OUT/logs.tgz -C $L .
echo "total $(( $(date +%s) - T0 )) s"
