#!/usr/bin/env bash
# Session 3, one H200, last command: the 1.5B stages vs the bare Unsloth loop in two separate processes (bare first
# in each: a Trainer changes the loaded model), then the GPU resume test and, time permitting, the bench GPU test.
set -uo pipefail
source "$(dirname "$0")/common.sh"
M=${M15:-qwen2.5-1.5b}; BK=${BK:-unsloth}
python3 -c "from korean_llm.bench.throughput import resolve_bench_model as r; print(r('$M'))" 2>&1 | tail -1
B="-m korean_llm bench --model $M --backend $BK --mode bare,cpt,sft --seq-len ${SEQ:-2048} --batch-size 4 --steps 20 --warmup 6"
run p1 150 python3 $B
run p2 290 python3 $B
for f in p1 p2; do echo "== $f"; rows $L/$f.log; done
[ -z "${DRY:-}" ] && run resume 470 bash ci/gpu-tests.sh -p no:cacheprovider -k resume -rA
[ -z "${DRY:-}" ] && run benchtest 585 bash ci/gpu-tests.sh -p no:cacheprovider -k bench -rA
grep -hE "^(PASSED|FAILED|ERROR|SKIPPED)|passed|failed" $L/resume.out $L/benchtest.out 2>/dev/null
tar czf $OUT/logs.tgz -C $L .
echo "total $(( $(date +%s) - T0 )) s"
