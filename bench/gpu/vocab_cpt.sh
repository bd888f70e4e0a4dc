#!/usr/bin/env bash
# One H200: CPT of a shape (default the 7B) with Qwen2.5's tokenizer and with the tokenizer the vocabulary
# extension made, on the same Korean documents: tokens/s, characters per token and characters/s of each.
# Base and extended alternate, RUNS times each (Unsloth, QLoRA r=16, sequence 2048, batch BATCH).
# Inputs, written on a CPU (make setup) and carried in .gpu/:
#   TOKENIZERS (default .gpu/tok.tgz): a tarball of tok/base and tok/extended, from
#     python -m korean_llm.bench.vocab --skip-cpt --korean-vocab-size 64000 --save-tokenizers .gpu/tok
#     tar czf .gpu/tok.tgz -C .gpu tok
#   DOCS (default .gpu/faq.jsonl): held-out Korean documents, one {"text"} row each, e.g. the Debian FAQ of
#     python -m korean_llm.bench.corpora (korean_llm.bench.corpora.debian_korean_docs()["debian-faq"])
set -uo pipefail
L=${L:-/tmp/logs}  # the logs come back as one tarball
source "$(dirname "$0")/env.sh"
export KOREAN_LLM_CACHE=${KC:-/kcache}; mkdir -p $KOREAN_LLM_CACHE
M=${M:-qwen2.5-7b}; BATCH=${BATCH:-8}; RUNS=${RUNS:-2}; STEPS=${STEPS:-6}; WARMUP=${WARMUP:-3}; BUDGET=${BUDGET:-560}
DOCS=${DOCS:-.gpu/faq.jsonl}; T=/tmp/tok; mkdir -p $T; tar xzf "${TOKENIZERS:-.gpu/tok.tgz}" -C $T
J=$OUT/json; mkdir -p $J
for r in $(seq 1 $RUNS); do
  for tok in base extended; do
    run $tok$r $BUDGET python3 -m korean_llm bench --backend unsloth --model $M --tokenizer $T/tok/$tok --mode cpt \
      --data $DOCS --seq-len 2048 --batch-size $BATCH --steps $STEPS --warmup $WARMUP --json-out $J/$tok$r.json
  done
done
for f in $L/*.log; do printf "%s " "$(basename $f .log)"; grep -h "bench result" $f | sed 's/.*bench result //' | python3 -c '
import json, sys
for r in map(json.loads, sys.stdin):
    if "error" in r:
        print(r["mode"], r["batch_size"], "ERROR", r["error"][:200]); continue
    print("params %d" % r["parameters"], "b%s" % r["batch_size"],
          "step %.3f" % r["step_seconds"], "tokens/s %.0f" % r["nonpad_tokens_per_second"],
          "chars/token %.4f" % r["characters_per_token"], "chars/s %.0f" % r["characters_per_second"],
          "peak %.2f" % (r["peak_memory_gib"] or 0), "mfu %.3f" % r["mfu"])'; echo; done
tar czf $OUT/logs.tgz -C $L .
echo "total $(( $(date +%s) - T0 )) s"
