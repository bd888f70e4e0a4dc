#!/usr/bin/env bash
# Issue 8 point 5 on two H200s: SFT on the 1.5B shape on 1 GPU vs DDP on 2 (same command), FSDP full fine-tuning,
# then the two-GPU tests (DDP stage with Unsloth, FSDP stage with HF: manifest, gathered weights).
set -uo pipefail
source "$(dirname "$0")/common.sh"
B="python3 -m korean_llm bench --model ${M15:-qwen2.5-1.5b} --mode sft --batch-size 4 --steps 6 --warmup 2"
TR="python3 -m torch.distributed.run --nproc-per-node 2 --master-port 29533 -m korean_llm"
CUDA_VISIBLE_DEVICES=0 python3 -c "from korean_llm.bench.throughput import resolve_bench_model as r; print(r('${M15:-qwen2.5-1.5b}'))" 2>&1 | tail -1
run() { local name=$1 budget=$2; shift 2; timeout $(left $budget) "$@" --json-out $OUT/$name.json > $OUT/$name.out 2> $OUT/$name.log; echo "$name rc=$? at $(( $(date +%s) - T0 )) s"; }
run ddp1-unsloth 150 env CUDA_VISIBLE_DEVICES=0 $B --backend unsloth
run ddp2-unsloth 260 $TR ${B#python3 -m korean_llm} --backend unsloth
if ! grep -q '"world_size": 2' $OUT/ddp2-unsloth.json 2>/dev/null; then
  run ddp1-hf 330 env CUDA_VISIBLE_DEVICES=0 $B --backend hf
  run ddp2-hf 400 $TR ${B#python3 -m korean_llm} --backend hf
fi
run full1-hf 440 env CUDA_VISIBLE_DEVICES=0 $B --backend hf --lora full
run fsdp2-hf 500 $TR ${B#python3 -m korean_llm} --backend hf --lora full --set distributed.strategy=fsdp
timeout $(left 590) bash ci/gpu-tests.sh -p no:cacheprovider -k two_gpus > $OUT/gputests2.log 2>&1
echo "two-GPU tests rc=$? at $(( $(date +%s) - T0 )) s"
cat $OUT/*.log | grep -h "bench result" | sed 's/.*bench result //' > $OUT/rows.jsonl
for f in $OUT/*.log; do echo "== $f"; grep -v "it/s\]\|examples/s\]" $f | grep -iE "error|Traceback|│" | head -12; done
tail -5 $OUT/gputests2.log
echo "total $(( $(date +%s) - T0 )) s"
