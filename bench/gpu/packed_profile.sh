#!/usr/bin/env bash
# One H200: why a packed SFT step on short chats is slower than a synthetic full-length step (1.5B shape, Unsloth,
# QLoRA r=16, sequence 2048). CHATS: a short-chat set (python -m korean_llm.bench.shortchats, carried in .gpu/).
# VARIANTS (packed_profile.py's, default all six) and BUDGET=560 (s) as parameters.
set -uo pipefail
L=${L:-/tmp/logs}  # the logs come back as one tarball
source "$(dirname "$0")/env.sh"
# builtin:tiny-ko's tokenizer (the bench shapes use it), built on a CPU: TOKENIZER_CACHE holds tiny-ko-v1
export KOREAN_LLM_CACHE=${KC:-/kcache}; mkdir -p $KOREAN_LLM_CACHE
cp -rn "${TOKENIZER_CACHE:-.gpu/cache}/tiny-ko-v1" $KOREAN_LLM_CACHE/ 2>/dev/null
M=${M15:-qwen2.5-1.5b}; CHATS=${CHATS:-.gpu/chats.jsonl}
MP=$(python3 -c "from korean_llm.bench.throughput import resolve_bench_model as r; print(r('$M'))" 2>&1 | tail -1)
echo "shape $MP at $(( $(date +%s) - T0 )) s"
python3 -c "import torch, torch.nn.attention.varlen as v, inspect; print(torch.__version__, inspect.signature(v.varlen_attn)); print([n for n in dir(v) if 'cudnn' in n])" 2>&1 | tail -3
run prof ${BUDGET:-560} python3 bench/gpu/packed_profile.py "$MP" "$CHATS" $OUT/prof \
  ${VARIANTS:-synthetic packed equal-segments varlen equal-varlen unpacked64}
grep -h "prof result\|prof attention\|prof equality" $L/prof.out $L/prof.log | cut -c1-400
grep -h "Traceback\|Error" $L/prof.log | head -5
cp $L/prof.log $OUT/prof/prof.log 2>/dev/null; tar czf $OUT/logs.tgz -C $L .
echo "total $(( $(date +%s) - T0 )) s"
