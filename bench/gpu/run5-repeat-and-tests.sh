#!/usr/bin/env bash
# Session 3, one H200, after run4: the 1.5B stages vs the bare Unsloth loop, each measured twice, interleaved and
# longer (30 steps) in one process; then the GPU tests (all single-GPU ones: loading, CPT -> SFT, resume, bench)
# with the preprocess benchmark on the host's CPUs beside them (KONLPY: a folder whose konlpy/ holds the corpus).
set -uo pipefail
source "$(dirname "$0")/common.sh"
M=${M15:-qwen2.5-1.5b}; BK=${BK:-unsloth}
python3 -c "from korean_llm.bench.throughput import resolve_bench_model as r; print(r('$M'))" 2>&1 | tail -1
run b15 300 python3 -m korean_llm bench --model $M --backend $BK --mode bare,cpt,sft,bare,cpt,sft \
  --seq-len ${SEQ:-2048} --batch-size 4 --steps 30 --warmup 6
echo "== 1.5B"; rows $L/b15.log
(
  run pre 560 env PYTHONPATH=${KONLPY:-.gpu/konlpy} python3 bench/preprocess_bench.py --sizes ${PRE_SIZES:-25,100} --workers 1,2,4,8 \
    --workdir /tmp/ppb
) &
[ -z "${DRY:-}" ] && run gputests 585 bash ci/gpu-tests.sh -p no:cacheprovider -k "not two_gpus" -rA
wait
tail -n 14 $L/pre.out; grep -hE "PASSED|FAILED|SKIPPED|ERROR|passed|failed" $L/gputests.out 2>/dev/null | tail -12
tar czf $OUT/logs.tgz -C $L .
echo "total $(( $(date +%s) - T0 )) s"
