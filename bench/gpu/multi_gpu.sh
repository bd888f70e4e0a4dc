#!/usr/bin/env bash
# Scaling over two GPUs of one host: a stage on one GPU against the same command under torchrun on two (DDP), and
# full fine-tuning on one GPU against FSDP on two. Settings: M (shape, default qwen2.5-1.5b), MODE (default sft),
# BATCH (per GPU, default 4), STEPS (10), WARMUP (6).
set -uo pipefail
source "$(dirname "$0")/env.sh"
M=${M:-${M15:-qwen2.5-1.5b}}
B="bench --model $M --mode ${MODE:-sft} --batch-size ${BATCH:-4} --steps ${STEPS:-10} --warmup ${WARMUP:-6}"
TR="python3 -m torch.distributed.run --nproc-per-node 2 --master-port 29533 -m korean_llm"
CUDA_VISIBLE_DEVICES=0 python3 -c "from korean_llm.bench.throughput import resolve_bench_model as r; print(r('$M'))" 2>&1 | tail -1
run ddp1 150 env CUDA_VISIBLE_DEVICES=0 python3 -m korean_llm $B --backend unsloth --json-out $OUT/ddp1.json
run ddp2 300 $TR $B --backend unsloth --json-out $OUT/ddp2.json
run full1 440 env CUDA_VISIBLE_DEVICES=0 python3 -m korean_llm $B --backend hf --lora full --json-out $OUT/full1.json
run fsdp2 580 $TR $B --backend hf --lora full --set distributed.strategy=fsdp --json-out $OUT/fsdp2.json
for f in ddp1 ddp2 full1 fsdp2; do echo "== $f"; rows $L/$f.log; done
echo "total $(( $(date +%s) - T0 )) s"
