#!/usr/bin/env bash
# Second pass on two H200s: 1.5B stages vs bare Unsloth with enough warm-up for SFT's varying shapes (GPU 0) while the
# single-GPU tests run (GPU 1); then 1 vs 2 GPU DDP (cpt: fixed shapes, sft) and FSDP full fine-tuning (plain loss).
set -uo pipefail
source "$(dirname "$0")/common.sh"
M=${M15:-qwen2.5-1.5b}
CUDA_VISIBLE_DEVICES=0 python3 -c "from korean_llm.bench.throughput import resolve_bench_model as r; print(r('$M'))" 2>&1 | tail -1
(
  CUDA_VISIBLE_DEVICES=0 timeout $(left 250) python3 -m korean_llm bench --model $M --backend unsloth \
    --mode bare,cpt,sft --batch-size 4 --steps 10 --warmup 6 > $L/b15.out 2> $L/b15.log
  echo "1.5B unsloth rc=$? at $(( $(date +%s) - T0 )) s"
) &
(
  CUDA_VISIBLE_DEVICES=1 timeout $(left 250) bash ci/gpu-tests.sh -p no:cacheprovider -s -k "not two_gpus" > $L/gputests.log 2>&1
  echo "gpu tests rc=$? at $(( $(date +%s) - T0 )) s"
) &
wait
B="bench --model $M --batch-size 4 --steps 10 --warmup 6"
TR="python3 -m torch.distributed.run --nproc-per-node 2 --master-port 29533 -m korean_llm"
run ddp1 350 env CUDA_VISIBLE_DEVICES=0 python3 -m korean_llm $B --backend unsloth --mode cpt,sft
run ddp2 460 $TR $B --backend unsloth --mode cpt,sft
run fsdp2 520 $TR $B --backend hf --lora full --mode sft --set distributed.strategy=fsdp
timeout $(left 585) bash ci/gpu-tests.sh -p no:cacheprovider -k fsdp > $L/gputests2.log 2>&1
echo "FSDP test rc=$? at $(( $(date +%s) - T0 )) s"
cat $L/*.log | grep -h "bench result" | sed 's/.*bench result //' > $OUT/rows.jsonl
tar czf $OUT/logs.tgz -C $L .
grep -hE "passed|failed|losses|Error" $L/gputests*.log | tail -12
for f in b15 ddp1 ddp2 fsdp2; do echo "== $f"; grep -E "│|Traceback|rror" $L/$f.log | grep -v "it/s\]" | head -8; done
echo "total $(( $(date +%s) - T0 )) s"
