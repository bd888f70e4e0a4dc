#!/usr/bin/env bash
# One H200: run-to-run spread of a short CPT stage (1.5B shape, Unsloth QLoRA, sequence 2048, batch 4, 8 steps),
# twice with run.deterministic true and twice false; then the short-chat SFT rows of sft_short_chats.sh again (spread).
# Inputs, written on a CPU with konlpy (make setup) and carried in .gpu/:
#   CPT_DATA (default .gpu/cpt.jsonl), the konlpy corpus as one {"text"} row per document:
#     .venv/bin/python -c 'import json; from korean_llm.builtin import corpus_texts
#     print("\n".join(json.dumps({"text": t}, ensure_ascii=False) for t in corpus_texts()))' > .gpu/cpt.jsonl
#   .gpu/chats.jsonl: python -m korean_llm.bench.shortchats .gpu/chats.jsonl --rows 12000
set -uo pipefail
L=${L:-/tmp/logs}  # the logs come back as one tarball
source "$(dirname "$0")/env.sh"
# builtin:tiny-ko's tokenizer (the bench shapes use it), built on a CPU: TOKENIZER_CACHE holds tiny-ko-v1
export KOREAN_LLM_CACHE=${KC:-/kcache}; mkdir -p $KOREAN_LLM_CACHE
cp -rn "${TOKENIZER_CACHE:-.gpu/cache}/tiny-ko-v1" $KOREAN_LLM_CACHE/ 2>/dev/null
MP=$(python3 -c "from korean_llm.bench.throughput import resolve_bench_model as r; print(r('qwen2.5-1.5b'))" 2>&1 | tail -1)
R=/tmp/repro; mkdir -p $R
for id in det1 det2 nondet1 nondet2; do
  det=false; [ "${id#det}" != "$id" ] && det=true
  cat > $R/$id.yaml <<YAML
stage: cpt
run: {model_name: repro, run_id: $id, data_root: $R/data, output_root: $R/out, seed: 42, deterministic: $det}
model: {base_model: $MP, backend: unsloth, max_seq_length: 2048}
lora: {method: qlora}
data: {sources: [{path: $(realpath ${CPT_DATA:-.gpu/cpt.jsonl})}]}
training: {max_steps: 8, per_device_train_batch_size: 4, logging_steps: 1, save_strategy: "no"}
metrics: {port: 0}
YAML
  run cpt-$id 330 python3 -m korean_llm cpt --config $R/$id.yaml
done
python3 - $R/out/repro <<'PY'
import json, sys, itertools
from pathlib import Path
from safetensors.torch import load_file
root = Path(sys.argv[1]); runs = {}
for d in sorted(root.iterdir()):
    m = json.loads((d / "cpt" / "manifest.json").read_text())
    hist = json.loads((d / "cpt" / "log_history.json").read_text())
    losses = [h["loss"] for h in hist if "loss" in h]
    runs[d.name] = (load_file(str(d / "cpt" / "adapter" / "adapter_model.safetensors")), losses)
    print("repro", d.name, "first %.6f final %.6f" % (losses[0], losses[-1]), "losses", losses)
for a, b in itertools.combinations(sorted(runs), 2):
    wa, wb = runs[a][0], runs[b][0]
    diff = max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)
    ld = max(abs(x - y) for x, y in zip(runs[a][1], runs[b][1]))
    print("repro pair", a, b, "max_abs_weight_diff %.3e" % diff, "max_abs_loss_diff %.3e" % ld)
PY
grep -h "Traceback\|Error" $L/cpt-*.log | head -5
B="-m korean_llm bench --backend unsloth --seq-len 2048 --mode sft --model qwen2.5-1.5b --steps 8 --warmup 5"
run d15b 440 python3 $B --data .gpu/chats.jsonl --max-rows 4000 --packing auto --batch-size 8,16 --json-out $OUT/d15b.json
run s15b 540 python3 $B --batch-size 8,16 --json-out $OUT/s15b.json
for f in d15b s15b; do echo "== $f"; rows $L/$f.log; done
tar czf $OUT/logs.tgz -C $L .
echo "total $(( $(date +%s) - T0 )) s"
