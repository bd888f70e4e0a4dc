"""Training throughput of the real stage code path, to size PyTorchJobs.

    korean-llm bench --model qwen2.5-7b --compare unsloth,hf --mode cpt,sft,bare --batch-size 4,16
    korean-llm bench --model builtin:tiny-ko --backend hf --steps 3          # runs on a CPU too

`--model` is a named shape (`qwen2.5-0.5b`, `qwen2.5-1.5b`, `qwen2.5-7b`: random weights built
once from the Qwen2.5 config, with the builtin tokenizer, cached under `$KOREAN_LLM_CACHE/shapes`),
`builtin:tiny-ko`, or a local model folder. Modes:

- `cpt`: synthetic documents through `stages.cpt.pack_blocks` and `stages.cpt.build_trainer`;
- `sft`: synthetic chats (half to full `--seq-len` tokens) through `stages.sft.build_trainer`
  (chat template, assistant-only loss, the collator; `--set sft.packing=true` packs without padding);
- `dpo`: synthetic preference pairs (prompt up to a quarter, answers a quarter to three quarters of
  `--seq-len`) through `stages.rlhf.build_trainer` (TRL's DPOTrainer, Unsloth's patch on CUDA; the
  reference is the policy with its adapter disabled, one more forward per pair);
- `bare`: the same loaded model in a plain PyTorch loop (AdamW, no Trainer; gradient checkpointing as
  the stages have it: TRL's default on the HF backend, Unsloth's own on Unsloth): the reference the
  stages are held against.

Trainer modes run through `training.train` with the project's callbacks and the Prometheus
exporter on. Every backend runs in its own process (independent memory peaks, Unsloth imported
first); the modes and batch sizes of one backend share its loaded model, with the peak memory
reset before each. Figures cover only the `--steps` steps after `--warmup` (Unsloth compiles in
its first step). MFU = 6 × parameters × non-padding tokens/s ÷ peak FLOP/s (8 × for DPO: the
reference forward; `--peak-tflops`, or a bf16 8192³ matmul measured on the device; fp32 on a CPU).

Under torchrun (`torchrun --nproc-per-node 2 -m korean_llm bench --model qwen2.5-1.5b --mode sft`)
every rank runs the same worker, the stages' DDP / FSDP settings apply (`--set
distributed.strategy=fsdp --lora full`), tokens are summed over ranks, MFU is against the peak of
all GPUs, peak memory is per GPU, and rank 0 prints the table.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from korean_llm import dist
from korean_llm.builtin import TINY_MODEL, cache_root, tiny_model_path
from korean_llm.command import Command, add_overrides
from korean_llm.config import build_config
from korean_llm.console import setup_logging, stderr_console
from korean_llm.errors import EXIT_BUG, ConfigError, KoreanLLMError
from korean_llm.pipeline.artifacts import StageDir, atomic_write_json

log = logging.getLogger("korean_llm")
SHAPE_VERSION = "v1"
SHAPE_WAIT_SECONDS = 1800
BACKENDS = ("unsloth", "hf", "auto")
MODES = ("cpt", "sft", "dpo", "bare")
# FLOPs per token in units of the parameter count: forward + backward, plus a reference forward for DPO.
FLOPS_PER_TOKEN = {"cpt": 6, "sft": 6, "bare": 6, "dpo": 8}

# Published Qwen2.5 configs (hidden size, MLP size, layers, heads, KV heads, vocabulary, tied embeddings).
SHAPES: dict[str, dict[str, Any]] = {
    "qwen2.5-0.5b": dict(
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        vocab_size=151936,
        tie_word_embeddings=True,
    ),
    "qwen2.5-1.5b": dict(
        hidden_size=1536,
        intermediate_size=8960,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        vocab_size=151936,
        tie_word_embeddings=True,
    ),
    "qwen2.5-7b": dict(
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        vocab_size=152064,
        tie_word_embeddings=False,
    ),
}


# ----------------------------------------------------------------------------------------- model shapes


def build_shape(folder: Path, shape: dict[str, Any], seed: int = 0) -> None:
    """A Qwen2 model of `shape` with random bf16 weights plus the builtin tokenizer, saved to `folder`."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path())
    tokenizer.model_max_length = 32768  # the tiny model's 512 would warn on every long document
    config = Qwen2Config(
        **shape,
        max_position_embeddings=32768,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        rms_norm_eps=1e-6,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = Qwen2ForCausalLM._from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def shape_path(name: str) -> Path:
    """Cached folder of a named shape, built on first use (in a worker process: it needs the GPU)."""
    target = cache_root() / "shapes" / f"{name}-{SHAPE_VERSION}"
    if (target / "config.json").is_file():
        return target
    if not dist.is_main():  # under torchrun rank 0 builds it; the folder appears whole (rename)
        deadline = time.monotonic() + SHAPE_WAIT_SECONDS
        while not (target / "config.json").is_file():
            if time.monotonic() > deadline:
                raise KoreanLLMError(
                    f"bench: rank {dist.rank()} waited {SHAPE_WAIT_SECONDS} s for rank 0 to build {target}"
                )
            time.sleep(2)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        _spawn({"task": "build", "shape": name, "folder": str(tmp)})
        os.rename(tmp, target)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
    return target


def resolve_bench_model(spec: str) -> str:
    if spec in SHAPES:
        return str(shape_path(spec))
    if spec == TINY_MODEL:
        return str(tiny_model_path())
    if not Path(spec, "config.json").is_file():
        raise ConfigError(
            f"--model '{spec}': expected one of {', '.join([*SHAPES, TINY_MODEL])} or a local model folder "
            "holding config.json"
        )
    return spec


def count_parameters(model_path: str) -> int:
    """Parameters of the full-precision model (a 4-bit load would count packed bytes instead)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_path))
    return sum(p.numel() for p in model.parameters())


def measure_peak_tflops() -> tuple[float, str]:
    """Dense matmul rate of this device: bf16 8192³ on CUDA, fp32 1024³ on a CPU."""
    import torch

    cuda = torch.cuda.is_available()
    n, dtype, reps = (8192, torch.bfloat16, 10) if cuda else (1024, torch.float32, 5)
    device = "cuda" if cuda else "cpu"
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync()
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync()
    tflops = 2 * n**3 * reps / (time.perf_counter() - start) / 1e12
    return tflops, f"measured: {'bf16' if cuda else 'fp32'} {n}x{n}x{n} matmul on {device}"


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------------------- synthetic data


def _random_text(tokenizer: Any, rng: random.Random, n_tokens: int, pool: list[int]) -> str:
    """`n_tokens` random tokens decoded; never blank (the stages reject empty messages)."""
    while True:
        text = tokenizer.decode([rng.choice(pool) for _ in range(n_tokens)])
        if text.strip():
            return text


def _token_pool(tokenizer: Any) -> list[int]:
    special = set(tokenizer.all_special_ids)
    return [i for i in range(len(tokenizer)) if i not in special]


def cpt_blocks(cfg: Any, tokenizer: Any, n_blocks: int, seed: int) -> Any:
    """At least `n_blocks` packed blocks, made by the stage's own tokenize-and-pack code."""
    from datasets import Dataset

    from korean_llm.stages.cpt import block_size, pack_blocks, separator_id

    rng, pool, block = random.Random(seed), _token_pool(tokenizer), block_size(cfg)
    docs: list[dict[str, str]] = []
    while True:
        docs += [{"text": _random_text(tokenizer, rng, rng.randint(block // 4, 2 * block), pool)} for _ in range(32)]
        blocks = pack_blocks(
            Dataset.from_list(docs), tokenizer, block, separator_id(tokenizer, cfg.cpt.document_separator), 1
        )
        if len(blocks) >= n_blocks:
            return blocks


def sft_chats(cfg: Any, tokenizer: Any, n_rows: int, seed: int) -> Any:
    """Chats of half to full `max_seq_length` tokens (a system prompt, a question, a longer answer)."""
    from datasets import Dataset

    from korean_llm.data import sft_row

    rng, pool, seq = random.Random(seed), _token_pool(tokenizer), cfg.model.max_seq_length
    add_system = sft_row(cfg.sft.system_prompt)
    template_tokens = len(tokenizer(cfg.sft.system_prompt or "")["input_ids"]) + 16
    rows = []
    for _ in range(n_rows):
        length = max(8, rng.randint(seq // 2, seq) - template_tokens)
        question = _random_text(tokenizer, rng, length // 8, pool)
        answer = _random_text(tokenizer, rng, length - length // 8, pool)
        chat = {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}
        rows.append(add_system(None, chat))  # type: ignore[arg-type]
    return Dataset.from_list(rows)


def preference_pairs(cfg: Any, tokenizer: Any, n_rows: int, seed: int) -> list[dict[str, Any]]:
    """DPO rows as the rlhf stage prepares them: a prompt of up to a quarter of `max_seq_length` tokens, then
    chosen and rejected answers of a quarter to three quarters (each pair: two sequences of up to full length)."""
    from korean_llm.data import with_system_prompt

    rng, pool, seq = random.Random(seed), _token_pool(tokenizer), cfg.model.max_seq_length
    rows = []
    for _ in range(n_rows):
        prompt = [{"role": "user", "content": _random_text(tokenizer, rng, rng.randint(seq // 8, seq // 4), pool)}]
        answers = [_random_text(tokenizer, rng, rng.randint(seq // 4, 3 * seq // 4) - 16, pool) for _ in range(2)]
        rows.append(
            {
                "prompt": with_system_prompt(prompt, cfg.rlhf.system_prompt),
                "chosen": [{"role": "assistant", "content": answers[0]}],
                "rejected": [{"role": "assistant", "content": answers[1]}],
            }
        )
    return rows


# ----------------------------------------------------------------------------------------- measuring


class TokenCounter:
    """Wraps a data collator and records (tokens, non-padding tokens) of each batch, in order."""

    def __init__(self, collator: Any) -> None:
        self.collator = collator
        self.batches: list[tuple[int, int]] = []

    def __call__(self, features: Any) -> Any:
        batch = self.collator(features)
        ids = batch["input_ids"]
        mask = batch.get("attention_mask")
        self.batches.append((ids.numel(), int(mask.sum()) if mask is not None else ids.numel()))
        return batch

    def between(self, first: int, last: int) -> tuple[int, int]:
        """Tokens of batches [first, last) of this process, summed over every rank when distributed."""
        chosen = self.batches[first:last]
        counts = dist.all_sum([sum(t for t, _ in chosen), sum(n for _, n in chosen)])
        return counts[0], counts[1]


def _step_timer(warmup: int, total: int) -> Any:
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Wall time of the steps after warm-up, the device synchronised at both ends."""

        def __init__(self) -> None:
            self.start: float | None = None
            self.end: float | None = None

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step == warmup:
                _sync()
                self.start = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step == total:
                _sync()
                self.end = time.perf_counter()

    return StepTimer()


def _reset_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_memory() -> tuple[float | None, float | None]:
    import torch

    if not torch.cuda.is_available():
        return None, None
    return torch.cuda.max_memory_allocated() / 2**30, torch.cuda.max_memory_reserved() / 2**30


def _run_trainer(mode: str, cfg: Any, loaded: Any, spec: dict[str, Any], workdir: Path) -> dict[str, Any]:
    from korean_llm.observe.metrics import StageMetrics
    from korean_llm.stages import cpt, rlhf, sft
    from korean_llm.train.loop import distributed_strategy, train

    warmup, steps = spec["warmup"], spec["steps"]
    accum = int(cfg.training.get("gradient_accumulation_steps", 1))
    batches = cfg.training["per_device_train_batch_size"] * accum * (warmup + steps)
    sdir = StageDir(workdir / f"{mode}-{time.monotonic_ns()}", cfg.stage)
    sdir.prepare()
    if mode == "cpt":
        trainer = cpt.build_trainer(cfg, loaded, cpt_blocks(cfg, loaded.tokenizer, batches, cfg.run.seed), sdir)
    elif mode == "dpo":
        rows = preference_pairs(cfg, loaded.tokenizer, batches, cfg.run.seed)
        trainer = rlhf.build_trainer(cfg, loaded, rows, sdir)
    else:
        rows = 2 * batches if cfg.sft.packing else batches
        trainer = sft.build_trainer(cfg, loaded, sft_chats(cfg, loaded.tokenizer, rows, cfg.run.seed), sdir)
        if len(trainer.train_dataset) == 0:
            raise ConfigError(
                f"--seq-len {cfg.model.max_seq_length} leaves no assistant token after the chat template and system "
                "prompt: use a longer sequence"
            )
    counter = TokenCounter(trainer.data_collator)
    trainer.data_collator = counter
    timer = _step_timer(warmup, warmup + steps)
    trainer.add_callback(timer)
    metrics = StageMetrics(cfg)
    metrics.serve()
    try:
        summary = train(trainer, cfg, sdir, metrics)
    finally:
        metrics.close()
    tokens, nonpad = counter.between(warmup * accum, (warmup + steps) * accum)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    strategy = distributed_strategy(trainer)
    rlhf.drop_reference_adapter(trainer.model)
    del trainer
    return {
        "strategy": strategy,
        "seconds": timer.end - timer.start,
        "tokens": tokens,
        "nonpad_tokens": nonpad,
        "first_loss": summary["first_loss"],
        "last_loss": losses[-1] if losses else None,
    }


def _run_bare(cfg: Any, loaded: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """Random token ids, the model's own loss, AdamW on the trainable weights: no Trainer, no collator."""
    import torch

    model = loaded.model
    model.train()
    checkpointing = loaded.backend == "hf" and cfg.training.get("gradient_checkpointing", True)
    if checkpointing:  # as the stages' Trainer does (TRL's default); Unsloth's own checkpointing is always on
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    device = next(p.device for p in model.parameters() if p.device.type != "meta")
    batch, seq = cfg.training["per_device_train_batch_size"], cfg.model.max_seq_length
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-4, fused=device.type == "cuda")
    generator = torch.Generator().manual_seed(cfg.run.seed)
    vocab = len(loaded.tokenizer)
    losses: list[float] = []
    start = 0.0
    for step in range(spec["warmup"] + spec["steps"]):
        if step == spec["warmup"]:
            _sync()
            start = time.perf_counter()
        ids = torch.randint(0, vocab, (batch, seq), generator=generator).to(device)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step in (0, spec["warmup"] + spec["steps"] - 1):
            losses.append(float(loss.detach()))
    _sync()
    seconds = time.perf_counter() - start
    del optimizer
    if checkpointing:
        model.gradient_checkpointing_disable()
    tokens = batch * seq * spec["steps"]
    return {
        "seconds": seconds,
        "tokens": tokens,
        "nonpad_tokens": tokens,
        "first_loss": losses[0],
        "last_loss": losses[-1],
    }


def _stage_config(spec: dict[str, Any], mode: str, batch: int, workdir: Path) -> Any:
    training = {
        "max_steps": spec["warmup"] + spec["steps"],
        "per_device_train_batch_size": batch,
        "save_strategy": "no",
    }
    data = {
        "stage": {"bare": "cpt", "dpo": "rlhf"}.get(mode, mode),
        "run": {"model_name": "bench", "run_id": "bench", "output_root": str(workdir), "data_root": str(workdir)},
        "model": {"base_model": spec["model_path"], "backend": spec["backend"], "max_seq_length": spec["seq_len"]},
        "lora": {"method": spec["lora"]},
        "training": training,
        "metrics": {"port": 0, "host": "127.0.0.1"},
    }
    return build_config(data, source="korean-llm bench", overrides=spec["overrides"], env={})


def measure(spec: dict[str, Any], done: Path) -> list[dict[str, Any]]:
    """Load once on `spec['backend']`, then run every (batch size, mode); an error ends only its own run.

    The rows so far are rewritten to `done` after each run, so a killed worker still reports them."""
    import torch

    from korean_llm.train.models import init_point, load_for_training

    workdir = Path(tempfile.mkdtemp(prefix="korean-llm-bench-"))
    spec = {**spec, "lora": spec["lora"] or ("qlora" if torch.cuda.is_available() else "lora")}
    peak, peak_source = spec["peak_tflops"], spec.get("peak_source", "given (--peak-tflops)")
    if peak is None:
        peak, peak_source = measure_peak_tflops()
    params = count_parameters(spec["model_path"])
    first_cfg = _stage_config(spec, spec["modes"][0], spec["batch_sizes"][0], workdir)
    load_start = time.perf_counter()
    loaded = load_for_training(first_cfg, init_point(first_cfg))
    load_seconds = time.perf_counter() - load_start
    results: list[dict[str, Any]] = []
    try:
        for batch in spec["batch_sizes"]:
            for mode in spec["modes"]:
                cfg = _stage_config(spec, mode, batch, workdir)
                row: dict[str, Any] = {
                    "backend": loaded.backend,
                    "mode": mode,
                    "batch_size": batch,
                    "seq_len": spec["seq_len"],
                    "lora": spec["lora"],
                    "packing": cfg.sft.packing if mode == "sft" else None,
                    "steps": spec["steps"],
                    "world_size": dist.world_size(),
                    "strategy": cfg.distributed.strategy if dist.world_size() > 1 else None,
                    "parameters": params,
                    "peak_tflops": peak,
                    "peak_source": peak_source,
                    "load_seconds": round(load_seconds, 1),
                    "runs_before": len(results),  # measured runs in this process before this one (bare: always 0)
                    "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
                }
                _reset_memory()
                try:
                    run = (
                        _run_bare(cfg, loaded, spec)
                        if mode == "bare"
                        else _run_trainer(mode, cfg, loaded, spec, workdir)
                    )
                except torch.OutOfMemoryError as exc:
                    row["error"] = f"out of memory: {str(exc).splitlines()[0]}"
                except Exception as exc:  # one failing configuration must not hide the others' figures
                    log.exception("bench %s %s batch %d failed", loaded.backend, mode, batch)
                    row["error"] = f"{type(exc).__name__}: {exc}"
                else:
                    row.update(_figures(run, spec["steps"], params * FLOPS_PER_TOKEN[mode], peak * dist.world_size()))
                    row["strategy"] = run.get("strategy")  # what the Trainer ran (accelerate runs DDP on a CPU)
                row["peak_memory_gib"], row["reserved_memory_gib"] = _peak_memory()
                for p in loaded.model.parameters():
                    p.grad = None
                results.append(row)
                atomic_write_json(done, results)
                if dist.is_main():  # in the log as soon as it is known: a job killed later still shows it
                    log.info("bench result %s", json.dumps(row, ensure_ascii=False))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def _figures(run: dict[str, Any], steps: int, flops_per_token: int, peak_tflops: float) -> dict[str, Any]:
    """Rates of the measured steps; tokens of every rank, `peak_tflops` of every device together."""
    seconds = run["seconds"]
    nonpad_tps = run["nonpad_tokens"] / seconds
    return {
        "step_seconds": seconds / steps,
        "tokens_per_second": run["tokens"] / seconds,
        "nonpad_tokens_per_second": nonpad_tps,
        "mfu": flops_per_token * nonpad_tps / (peak_tflops * 1e12),
        "first_loss": run["first_loss"],
        "last_loss": run["last_loss"],
    }


# ----------------------------------------------------------------------------------------- processes


def _spawn(spec: dict[str, Any]) -> Any:
    """Run one task in a fresh interpreter; its result comes back through a JSON file."""
    with tempfile.TemporaryDirectory(prefix="korean-llm-bench-") as tmp:
        result = Path(tmp) / "result.json"
        proc = subprocess.run(
            [sys.executable, "-m", "korean_llm.bench.throughput", json.dumps(spec), str(result)],
            check=False,
            stdout=sys.stderr,  # the worker's logs: this process's stdout carries only the JSON
        )
        rows = json.loads(result.read_text(encoding="utf-8")) if result.is_file() else None
        if proc.returncode == 0 and rows is not None:
            return rows
        if spec["task"] == "build":
            raise KoreanLLMError(f"bench: building {spec['shape']} failed with exit code {proc.returncode} (see above)")
        failed = {"backend": spec["backend"], "mode": "-", "batch_size": "-", "seq_len": spec["seq_len"]}
        return [*(rows or []), {**failed, "error": f"worker exited with code {proc.returncode} (see above)"}]


def worker(spec: dict[str, Any], result: Path) -> None:
    if spec["task"] == "build":
        build_shape(Path(spec["folder"]), SHAPES[spec["shape"]])
        atomic_write_json(result, {"built": spec["folder"]})
        return
    from korean_llm.train.models import choose_backend

    if choose_backend(spec["backend"]) == "unsloth":  # also: a clear error when Unsloth cannot run here
        import unsloth  # noqa: F401  -- patches transformers/TRL: must come before they are imported
    measure(spec, result)


def print_table(rows: list[dict[str, Any]], console: Console) -> None:
    first = next((r for r in rows if "parameters" in r), None)
    title = f": {first['device']}, sequence {first['seq_len']}, {first['lora']}" if first else ""
    if first and first.get("world_size", 1) > 1:
        title += f", {first['world_size']} processes ({first['strategy']}; batch per process)"
    table = Table(title=f"korean-llm bench{title}")
    for col in ("backend", "mode", "batch", "step s", "tokens/s", "non-pad tokens/s", "peak GiB", "MFU", "loss"):
        table.add_column(col, justify="left" if col in ("backend", "mode") else "right")
    for r in rows:
        mode = r["mode"] + (" packed" if r.get("packing") else "")
        if "error" in r:
            table.add_row(r["backend"], mode, str(r["batch_size"]), f"[red]{r['error'][:60]}", *[""] * 5)
            continue
        mem = f"{r['peak_memory_gib']:.1f}" if r["peak_memory_gib"] is not None else "-"
        table.add_row(
            r["backend"],
            mode,
            str(r["batch_size"]),
            f"{r['step_seconds']:.3f}",
            f"{r['tokens_per_second']:,.0f}",
            f"{r['nonpad_tokens_per_second']:,.0f}",
            mem,
            f"{r['mfu']:.1%}",
            f"{r['first_loss']:.2f} → {r['last_loss']:.2f}" if r["first_loss"] is not None else "-",
        )
    console.print(table)
    if first is None:
        return
    devices = f" × {first['world_size']} devices" if first.get("world_size", 1) > 1 else ""
    console.print(
        f"MFU = 6 (DPO: 8) × {first['parameters']:,} parameters × non-padding tokens/s ÷ {first['peak_tflops']:.2f} "
        f"TFLOP/s{devices} ({first['peak_source']}); loss shown when a logging step fell in the measured run"
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=TINY_MODEL, help=f"{', '.join(SHAPES)}, {TINY_MODEL} or a model folder")
    p.add_argument("--backend", default="auto", choices=BACKENDS, help="backend (default: as the stages choose)")
    p.add_argument("--compare", default=None, help="comma-separated backends, each in its own process")
    p.add_argument("--mode", default="cpt", help="comma-separated: cpt, sft, dpo, bare (bare runs first; default cpt)")
    p.add_argument(
        "--batch-size",
        default="4",
        help="per-device batch size; comma-separated to sweep (with bare: a fresh process per size)",
    )
    p.add_argument("--seq-len", type=int, default=2048, help="tokens per sequence (model.max_seq_length)")
    p.add_argument("--steps", type=int, default=10, help="measured steps")
    p.add_argument(
        "--warmup",
        type=int,
        default=6,
        help="steps run before measuring (default 6: SFT/DPO batch shapes vary, and Unsloth recompiles for new ones)",
    )
    p.add_argument("--lora", default=None, choices=("lora", "qlora", "full"), help="default: qlora on CUDA, else lora")
    p.add_argument("--peak-tflops", type=float, default=None, help="peak FLOP/s for MFU (default: measured)")
    p.add_argument("--json-out", default=None, help="also write the results to this file")
    add_overrides(p, "sft.packing=true")


def commands() -> list[Command]:
    """`korean-llm bench`."""
    return [Command("bench", "measure training throughput of the stage code path", add_arguments, run_command)]


def _csv(value: str, allowed: tuple[str, ...] | None, what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if allowed is not None and v not in allowed]
    if not items or bad:
        raise ConfigError(f"{what} '{value}': expected a comma-separated list of {', '.join(allowed or ('values',))}")
    return items


def run_command(args: argparse.Namespace) -> int:
    """korean-llm bench ...: spawn one worker per backend, print the table and the JSON."""
    backends = _csv(args.compare, BACKENDS, "--compare") if args.compare else [args.backend]
    # The bare loop runs before any trainer in its process: a Trainer leaves the loaded model changed (on Unsloth a
    # bare loop after one no longer recomputed activations: 14.6 instead of 2.5 GiB on the 1.5B shape, H200).
    modes = sorted(_csv(args.mode, MODES, "--mode"), key=lambda mode: mode != "bare")
    try:
        batch_sizes = [int(b) for b in _csv(args.batch_size, None, "--batch-size")]
    except ValueError:
        raise ConfigError(f"--batch-size '{args.batch_size}': expected comma-separated integers") from None
    if args.steps < 1 or args.warmup < 0 or min(batch_sizes) < 1:
        raise ConfigError("--steps and --batch-size must be at least 1, --warmup at least 0")
    if dist.world_size() > 1 and "bare" in modes:
        raise ConfigError("--mode bare is a single-process loop: leave it out under torchrun (WORLD_SIZE > 1)")
    for expr in args.overrides:  # a typo must fail here, not after minutes of model loading
        build_config({"stage": "sft", "model": {"base_model": "x"}}, source="--set", overrides=[expr], env={})
    spec: dict[str, Any] = {
        "task": "measure",
        "model_path": resolve_bench_model(args.model),
        "modes": modes,
        "batch_sizes": batch_sizes,
        "seq_len": args.seq_len,
        "steps": args.steps,
        "warmup": args.warmup,
        "lora": args.lora,
        "peak_tflops": args.peak_tflops,
        "overrides": args.overrides,
    }
    # A sweep that includes the bare loop loads the model afresh for every batch size, so that each size's bare loop
    # also runs before any Trainer; without it one process measures every size (one model load).
    sweeps = [[b] for b in batch_sizes] if "bare" in modes else [batch_sizes]
    rows: list[dict[str, Any]] = []
    for backend in backends:
        for sizes in sweeps:
            rows += [{**row, "model": args.model} for row in _spawn({**spec, "backend": backend, "batch_sizes": sizes})]
            measured = [r for r in rows if "peak_tflops" in r]
            if measured:  # measure the device once
                spec["peak_tflops"], spec["peak_source"] = measured[0]["peak_tflops"], measured[0]["peak_source"]
            if args.json_out and dist.is_main():  # after each worker, so an interrupted comparison keeps what finished
                atomic_write_json(Path(args.json_out), rows)
    failed = any("error" in r for r in rows)
    if not dist.is_main():  # figures are summed over ranks; rank 0 reports them
        return EXIT_BUG if failed else 0
    print_table(rows, stderr_console())
    print(json.dumps(rows, ensure_ascii=False), flush=True)
    return EXIT_BUG if failed else 0


if __name__ == "__main__":
    setup_logging()
    try:
        worker(json.loads(sys.argv[1]), Path(sys.argv[2]))
    except KoreanLLMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
