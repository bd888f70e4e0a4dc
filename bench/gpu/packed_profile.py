"""Why is a packed SFT step slower than a full-length one? Time and profile variants in one process.

    python3 bench/gpu/packed_profile.py MODEL_PATH CHATS.jsonl OUTDIR [variant ...]

Variants (run in the order given; `varlen` switches korean_llm.packed_attention on for the rest):
synthetic (bench's full-length chats, no packing, batch 8), packed (CHATS, sft.packing, batch 8),
varlen, unpacked64 (CHATS, no packing, batch 64). Each prints one JSON line `prof result {...}`,
writes a torch.profiler table of steps 5-6 to OUTDIR/<variant>.txt and a cProfile of the Python host work of
steps 7-8 (by own time, then cumulative) to OUTDIR/<variant>-py.txt.
"""

from __future__ import annotations

import cProfile
import io
import itertools
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path

import torch
import unsloth  # noqa: F401  -- before transformers / TRL
from transformers import TrainerCallback

from korean_llm.bench import throughput as bench
from korean_llm.data import sft_row
from korean_llm.observe.metrics import StageMetrics
from korean_llm.pipeline.artifacts import StageDir
from korean_llm.stages import sft
from korean_llm.train import packing
from korean_llm.train.loop import train
from korean_llm.train.models import init_point, load_for_training

model_path, chats, outdir = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
variants = sys.argv[4:] or ["synthetic", "packed", "varlen", "unpacked64"]
outdir.mkdir(parents=True, exist_ok=True)
WARM, STEPS = 5, 8
work = Path(tempfile.mkdtemp())


class Prof(TrainerCallback):
    def __init__(self, name: str) -> None:
        self.name, self.prof, self.t0, self.t1, self.steps = name, None, 0.0, 0.0, []

    def on_step_begin(self, args, state, control, **kw):
        torch.cuda.synchronize()
        if state.global_step == WARM:
            self.t0 = time.perf_counter()
        if state.global_step == WARM and self.name != "synthetic-noprof":
            self.prof = torch.profiler.profile(
                activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
            )
            self.prof.__enter__()
        self._s = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        torch.cuda.synchronize()
        self.steps.append(round(time.perf_counter() - self._s, 4))
        if self.prof is not None and state.global_step == WARM + 2:
            self.prof.__exit__(None, None, None)
            ka = self.prof.key_averages()
            (outdir / f"{self.name}.txt").write_text(
                ka.table(sort_by="cuda_time_total", row_limit=40)
                + "\n\nby self CPU\n"
                + ka.table(sort_by="self_cpu_time_total", row_limit=25)
            )
            self.prof = None
            self.py = cProfile.Profile()
            self.py.enable()
        if getattr(self, "py", None) is not None and state.global_step == WARM + 4:
            self.py.disable()
            buf = io.StringIO()
            st = pstats.Stats(self.py, stream=buf)
            st.sort_stats("tottime").print_stats(45)
            st.sort_stats("cumulative").print_stats(60)
            (outdir / f"{self.name}-py.txt").write_text(buf.getvalue())
            self.py = None
        if state.global_step == WARM + STEPS:
            self.t1 = time.perf_counter()


spec = {
    "model_path": model_path,
    "backend": "unsloth",
    "seq_len": 2048,
    "warmup": WARM,
    "steps": STEPS,
    "lora": "qlora",
    "overrides": [],
}
cfg0 = bench._stage_config(spec, "sft", 8, work)
loaded = load_for_training(cfg0, init_point(cfg0))
rows = [sft_row(cfg0.sft.system_prompt)(None, json.loads(line)) for line in chats.read_text().splitlines()]
own_attention = packing.packed_attention
packing.packed_attention = lambda backend, impl: (False, "as Unsloth 2026.10.9 chooses")  # until 'varlen'


def equality(tag: str, n: int = 48) -> None:
    """Per-conversation mean loss, packed (one flattened row, labels of one chat at a time) vs each chat alone."""
    from datasets import Dataset

    res = {}
    for pk in (True, False):
        s = {**spec, "overrides": [f"sft.packing={str(pk).lower()}"]}
        cfg = bench._stage_config(s, "sft", 8, work)
        sdir = StageDir(work / f"eq-{tag}-{pk}-{time.monotonic_ns()}", "sft")
        sdir.prepare()
        choice = packing.PackingChoice(pk, pk, "bfd" if pk else None, str(pk).lower(), "prof")
        tr = sft.build_trainer(cfg, loaded, Dataset.from_list(rows[:n]), sdir, choice)
        model = tr.model
        model.train()
        feats = list(tr.train_dataset)
        out = {}
        with torch.no_grad():
            batches = [tr.data_collator(feats)] if pk else [tr.data_collator([f]) for f in feats]
            for b in batches:
                b = {
                    k: v.cuda() for k, v in b.items() if k in ("input_ids", "labels", "position_ids", "attention_mask")
                }
                pos = b.get("position_ids")
                starts = (
                    [*(pos[0] == 0).nonzero().flatten().tolist(), b["input_ids"].shape[1]]
                    if pk
                    else [0, b["input_ids"].shape[1]]
                )
                for a, e in itertools.pairwise(starts):
                    lab = torch.full_like(b["labels"], -100)
                    lab[0, a:e] = b["labels"][0, a:e]
                    if (lab[0, a + 1 : e] != -100).sum() == 0:
                        continue
                    loss = model(**{**b, "labels": lab}).loss
                    out[tuple(b["input_ids"][0, a:e].tolist())] = float(loss)
        res[pk] = out
        del tr
    common = set(res[True]) & set(res[False])
    d = [abs(res[True][k] - res[False][k]) for k in common]
    rel = [abs(res[True][k] - res[False][k]) / abs(res[False][k]) for k in common]
    print(
        "prof equality",
        json.dumps(
            {
                "tag": tag,
                "conversations": len(common),
                "packed_only": len(res[True]) - len(common),
                "max_abs": max(d),
                "mean_abs": sum(d) / len(d),
                "max_rel": max(rel),
            }
        ),
        flush=True,
    )


for name in variants:
    if name.startswith("equal"):
        equality(name)
        continue
    if name == "varlen":
        from korean_llm.train.packed_attention import enable_unsloth_varlen

        packing.packed_attention = own_attention
        print("prof attention", enable_unsloth_varlen(), flush=True)
    batch = 64 if name == "unpacked64" else 8
    pk_on = name in ("packed", "varlen")
    s = {**spec, "overrides": [f"sft.packing={str(pk_on).lower()}"]}
    cfg = bench._stage_config(s, "sft", batch, work)
    from datasets import Dataset

    if name == "synthetic":
        ds = bench.sft_chats(cfg, loaded.tokenizer, batch * (WARM + STEPS), 0)
    else:
        ds = Dataset.from_list(rows[: batch * (WARM + STEPS) * (25 if pk_on else 1)])
    sdir = StageDir(work / f"{name}-{time.monotonic_ns()}", "sft")
    sdir.prepare()
    bench._reset_memory()
    choice = packing.PackingChoice(pk_on, pk_on, "bfd" if pk_on else None, str(pk_on).lower(), "prof")
    trainer = sft.build_trainer(cfg, loaded, ds, sdir, choice)
    counter = bench.TokenCounter(trainer.data_collator)
    trainer.data_collator = counter
    prof = Prof(name)
    trainer.add_callback(prof)
    metrics = StageMetrics(cfg)
    t = time.perf_counter()
    train(trainer, cfg, sdir, metrics)
    tokens, nonpad = counter.between(WARM, WARM + STEPS)
    labels = None
    secs = prof.t1 - prof.t0
    res = {
        "variant": name,
        "batch": batch,
        "seconds": secs,
        "step_s": secs / STEPS,
        "tokens_per_step": tokens / STEPS,
        "nonpad_tps": nonpad / secs,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
        "step_times": prof.steps,
        "total_s": time.perf_counter() - t,
        "collator": type(counter.collator).__name__,
        "padding_free": getattr(trainer, "padding_free", None),
    }
    print("prof result", json.dumps(res), flush=True)
    for p in loaded.model.parameters():
        p.grad = None
    del trainer
