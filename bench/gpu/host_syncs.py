"""Where a stage's training step makes the host wait for the GPU: CUDA's sync debug mode over a few measured steps.

    python bench/gpu/host_syncs.py --model qwen2.5-1.5b --backend unsloth --mode cpt,sft [--steps 3 --warmup 6]

Runs the stages' trainers as `korean-llm bench` does (same model shapes, data and callbacks) and prints, per
mode, each distinct Python call stack that synchronised with the device and how often per step. Every such
wait lets the step's remaining host work (optimizer launches, callbacks, the next batch) run with the GPU idle,
which shows on small shapes, whose steps are short. On a CPU it runs but finds nothing (no CUDA syncs there).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import traceback
import warnings
from pathlib import Path
from typing import Any

SITES: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
CURRENT = {"mode": "", "on": False}


def _show(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    if CURRENT["on"] and "synchronizing" in str(message):
        frames = [f for f in traceback.extract_stack()[:-1] if "/warnings.py" not in f.filename]
        SITES[CURRENT["mode"]][" <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in frames[:-7:-1])] += 1


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="qwen2.5-1.5b")
    p.add_argument("--backend", default="unsloth")
    p.add_argument("--mode", default="cpt,sft")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--steps", type=int, default=3, help="steps watched (after warm-up)")
    p.add_argument("--warmup", type=int, default=6)
    a = p.parse_args()
    if a.backend == "unsloth":
        import unsloth  # noqa: F401  -- before transformers/TRL

    import torch
    from transformers import TrainerCallback

    from korean_llm.bench import throughput as bench
    from korean_llm.console import setup_logging
    from korean_llm.train import loop as training

    setup_logging()
    first, last = a.warmup + 1, a.warmup + a.steps  # the watched steps: not the bench timer's two syncs

    class Watch(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step + 1 == first and torch.cuda.is_available():
                torch.cuda.set_sync_debug_mode(1)
                CURRENT["on"] = True

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step == last and CURRENT["on"]:
                CURRENT["on"] = False
                torch.cuda.set_sync_debug_mode(0)

    make_callbacks = training.make_callbacks
    training.make_callbacks = lambda *args: [*make_callbacks(*args), Watch()]  # type: ignore[assignment]
    warnings.showwarning = _show
    warnings.simplefilter("always")
    modes = a.mode.split(",")
    spec = {
        "task": "measure",
        "backend": a.backend,
        "model_path": bench.resolve_bench_model(a.model),
        "modes": [],
        "batch_sizes": [a.batch_size],
        "seq_len": a.seq_len,
        "steps": a.steps + 1,  # one more step than watched: the timer's closing sync stays outside
        "warmup": a.warmup,
        "lora": None,
        "peak_tflops": 1.0,
        "overrides": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for mode in modes:  # one model load per mode: simple, and this is a diagnostic
            CURRENT["mode"] = mode
            rows = bench.measure({**spec, "modes": [mode]}, Path(tmp) / "rows.json")
            print(json.dumps({k: rows[0].get(k) for k in ("mode", "step_seconds", "error")}))
    for mode in modes:
        total = sum(SITES[mode].values())
        print(f"== {mode}: {total / a.steps:.1f} synchronising calls per step over {a.steps} steps")
        for stack, count in SITES[mode].most_common():
            print(f"{count / a.steps:5.1f}/step  {stack}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
