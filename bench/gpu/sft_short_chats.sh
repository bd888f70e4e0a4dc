#!/usr/bin/env bash
# One H200: SFT on a short Korean chat set vs synthetic full-length rows, 1.5B and 7B shapes (Unsloth, QLoRA r=16,
# sequence 2048). CHATS: python -m korean_llm.bench.shortchats .gpu/chats.jsonl --rows 12000 (carried in .gpu/).
set -uo pipefail
L=${L:-/tmp/logs}  # the logs come back as one tarball
source "$(dirname "$0")/env.sh"
# builtin:tiny-ko's tokenizer (the bench shapes use it), built on a CPU: TOKENIZER_CACHE holds tiny-ko-v1
export KOREAN_LLM_CACHE=${KC:-/kcache}; mkdir -p $KOREAN_LLM_CACHE
cp -rn "${TOKENIZER_CACHE:-.gpu/cache}/tiny-ko-v1" $KOREAN_LLM_CACHE/ 2>/dev/null
CHATS=${CHATS:-.gpu/chats.jsonl}; J=$OUT/json; mkdir -p $J
B="-m korean_llm bench --backend unsloth --seq-len 2048 --mode sft"
python3 -c "from korean_llm.bench.throughput import resolve_bench_model as r; print(r('qwen2.5-1.5b'))" 2>&1 | tail -1
run s15 150 python3 $B --model qwen2.5-1.5b --batch-size 8,16 --steps 8 --warmup 5 --json-out $J/s15.json
run d15 330 python3 $B --model qwen2.5-1.5b --data $CHATS --max-rows 4000 --packing auto,false --batch-size 8,16 \
  --steps 8 --warmup 5 --json-out $J/d15.json
python3 -c "from korean_llm.bench.throughput import resolve_bench_model as r; print(r('qwen2.5-7b'))" 2>&1 | tail -1
echo "7b shape at $(( $(date +%s) - T0 )) s"
run s7 470 python3 $B --model qwen2.5-7b --batch-size 8 --steps 6 --warmup 4 --json-out $J/s7.json
run d7 585 python3 $B --model qwen2.5-7b --data $CHATS --max-rows 2000 --packing auto --batch-size 8 \
  --steps 6 --warmup 4 --json-out $J/d7.json
for f in s15 d15 s7 d7; do echo "== $f"; rows $L/$f.log; grep -h "p50\|Traceback" $L/$f.log | cut -c1-300 | head -4; done
python3 - $J/*.json <<'PY'
import json, sys
for f in sys.argv[1:]:
    for r in json.load(open(f)):
        if "error" in r:
            print(f, r["batch_size"], "ERROR", r["error"][:200]); continue
        L = r.get("lengths") or {}
        print(f.split("/")[-1], r["model"], "b%s" % r["batch_size"], "packed" if r.get("packing") else "unpacked",
              "step %.3f" % r["step_seconds"], "tok/s %.0f" % r["tokens_per_second"],
              "nonpad/s %.0f" % r["nonpad_tokens_per_second"], "pad %.3f" % (r.get("padding_share") or 0),
              "peak %.2f" % (r["peak_memory_gib"] or 0), "p50/90/99 %s/%s/%s" % (L.get("p50"), L.get("p90"), L.get("p99")),
              "sys/prompt/loss %s/%s/%s" % (r.get("system_prompt_share"), r.get("prompt_share"), r.get("loss_share")))
PY
tar czf $OUT/logs.tgz -C $L .
echo "total $(( $(date +%s) - T0 )) s"
