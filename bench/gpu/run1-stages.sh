#!/usr/bin/env bash
# Issue 7 point 2 (+ issue 5's DPO comparison) on two H200s at once: 1.5B on GPU 0, 7B on GPU 1; then the GPU tests.
set -uo pipefail
source "$(dirname "$0")/common.sh"
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader
CUDA_VISIBLE_DEVICES=0 python3 -c "from korean_llm.bench.throughput import resolve_bench_model as r; print(r('${M15:-qwen2.5-1.5b}'))" > $OUT/build15.log 2>&1 &
CUDA_VISIBLE_DEVICES=1 python3 -c "from korean_llm.bench.throughput import resolve_bench_model as r; print(r('${M7:-qwen2.5-7b}'))" > $OUT/build7.log 2>&1 &
wait
echo "shapes built at $(( $(date +%s) - T0 )) s"; tail -1 $OUT/build15.log $OUT/build7.log
(
  CUDA_VISIBLE_DEVICES=0 timeout $(left 400) python3 -m korean_llm bench --model ${M15:-qwen2.5-1.5b} --compare unsloth,hf \
    --mode bare,cpt,sft,dpo --batch-size 4 --steps 5 --warmup 2 --json-out $OUT/b15.json > $OUT/b15.out 2> $OUT/b15.log
  echo "1.5B rc=$? at $(( $(date +%s) - T0 )) s"
  CUDA_VISIBLE_DEVICES=0 timeout $(left 575) bash ci/gpu-tests.sh -x -p no:cacheprovider > $OUT/gputests.log 2>&1
  echo "gpu tests rc=$? at $(( $(date +%s) - T0 )) s"
) &
(
  CUDA_VISIBLE_DEVICES=1 timeout $(left 575) python3 -m korean_llm bench --model ${M7:-qwen2.5-7b} --compare unsloth,hf \
    --mode bare,cpt,sft,dpo --batch-size 4 --steps 4 --warmup 2 --json-out $OUT/b7.json > $OUT/b7.out 2> $OUT/b7.log
  echo "7B rc=$? at $(( $(date +%s) - T0 )) s"
) &
wait
grep -h "bench result" $OUT/b15.log $OUT/b7.log | sed 's/.*bench result //' > $OUT/rows.jsonl
for f in b15 b7; do echo "== $f"; grep -v "it/s\]\|examples/s\]" $OUT/$f.log | grep -A 30 "korean-llm bench:" | head -30; done
tail -5 $OUT/gputests.log
echo "total $(( $(date +%s) - T0 )) s"
