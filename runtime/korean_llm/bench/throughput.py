"""Training throughput of the real stage code path, to size PyTorchJobs.

    korean-llm bench --model qwen2.5-7b --compare unsloth,hf --mode cpt,sft,bare --batch-size 4,16
    korean-llm bench --model builtin:tiny-ko --backend hf --steps 3          # runs on a CPU too
    korean-llm bench --mode sft --data qa.csv --map user=Q --map assistant=A --encoding cp949   # the user's rows
    korean-llm bench --mode sft --data qa-ko -f values/local-csv.yaml       # a `datasets:` entry by name

`--model` is a named shape (`qwen2.5-0.5b`, `qwen2.5-1.5b`, `qwen2.5-7b`: random weights built
once from the Qwen2.5 config, with the builtin tokenizer, cached under `$KOREAN_LLM_CACHE/shapes`),
`builtin:tiny-ko`, or a local model folder. `--data` measures on the user's rows instead of synthetic ones,
named as the stages name a source (a file, folder, glob, `hf:` id, or a `datasets:` entry of `-f VALUES`, with
`--format`, `--encoding` and `--map FIELD=COLUMN` as in `korean-llm data inspect`), checked before any model
loads. Modes:

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
import glob
import hashlib
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
from korean_llm.config.mapping import check_kind
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


def shape_vocab_size(shape: dict[str, Any], tokenizer_size: int) -> int:
    """Embedding rows of a shape that must hold `tokenizer_size` tokens: the published size, or (a tokenizer the
    vocab stage extended past it) the tokenizer's size rounded up to 64 rows, as the vocab stage pads by default
    (`vocab.pad_to_multiple_of`)."""
    published = int(shape["vocab_size"])
    return published if tokenizer_size <= published else -(-tokenizer_size // 64) * 64


def build_shape(folder: Path, shape: dict[str, Any], seed: int = 0, tokenizer_dir: str | None = None) -> None:
    """A Qwen2 model of `shape` with random bf16 weights plus a tokenizer (the builtin one, or `tokenizer_dir`,
    the embeddings then sized for it), saved to `folder`."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir or tiny_model_path())
    tokenizer.model_max_length = 32768  # the tiny model's 512 would warn on every long document
    shape = {**shape, "vocab_size": shape_vocab_size(shape, len(tokenizer))}
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


def tokenizer_digest(tokenizer_dir: str) -> str:
    """12 hex digits of the tokenizer files of `tokenizer_dir` (names a shape built with that tokenizer)."""
    digest = hashlib.sha256()
    folder = Path(tokenizer_dir)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (folder / name).is_file():
            digest.update(name.encode() + b"\0" + (folder / name).read_bytes())
    return digest.hexdigest()[:12]


def shape_path(name: str, tokenizer_dir: str | None = None) -> Path:
    """Cached folder of a named shape, built on first use (in a worker process: it needs the GPU); with
    `tokenizer_dir`, a shape of its own whose embeddings hold that tokenizer."""
    suffix = f"-tok{tokenizer_digest(tokenizer_dir)}" if tokenizer_dir else ""
    target = cache_root() / "shapes" / f"{name}-{SHAPE_VERSION}{suffix}"
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
        _spawn({"task": "build", "shape": name, "folder": str(tmp), "tokenizer": tokenizer_dir})
        os.rename(tmp, target)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
    return target


def resolve_bench_model(spec: str, tokenizer_dir: str | None = None) -> str:
    if tokenizer_dir is not None:
        if spec not in SHAPES:
            raise ConfigError(f"--tokenizer goes with a named shape ({', '.join(SHAPES)}), not --model '{spec}'")
        if not Path(tokenizer_dir, "tokenizer.json").is_file():
            raise ConfigError(f"--tokenizer '{tokenizer_dir}': expected a folder holding tokenizer.json")
    if spec in SHAPES:
        return str(shape_path(spec, tokenizer_dir))
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


def user_rows(cfg: Any, validate: Any) -> list[dict[str, Any]]:
    """The rows of `--data` (cfg.data.sources), validated as the stage does; bad rows are left out with a count."""
    from korean_llm.data import RejectLog, collect_rows

    rejects = RejectLog()
    rows = collect_rows(cfg.data, validate, rejects)
    if rejects.total:
        log.warning("bench --data: %d of %d rows rejected (%s)", rejects.total, rejects.rows_in, rejects.counts())
    if not rows:
        raise ConfigError(f"--data {cfg.data.sources[0].path}: no usable rows")
    return rows


def _repeat(rows: list[Any], have: int, need: int) -> list[Any]:
    """`rows` repeated until `have` (what they hold) reaches `need`: short files still fill the measured steps."""
    times = max(1, -(-need // max(have, 1)))
    return rows * times


def user_blocks(cfg: Any, tokenizer: Any, n_blocks: int) -> tuple[Any, float | None]:
    """CPT blocks of the `--data` documents, made by the stage's own code, repeated to `n_blocks` if needed, and
    the documents' characters per token under `tokenizer` (what turns tokens/s into characters/s)."""
    from datasets import Dataset, concatenate_datasets

    from korean_llm.data import text_row
    from korean_llm.korean import fertility
    from korean_llm.stages.cpt import block_size, pack_blocks, separator_id

    docs = user_rows(cfg, text_row)
    blocks = pack_blocks(
        Dataset.from_list(docs), tokenizer, block_size(cfg), separator_id(tokenizer, cfg.cpt.document_separator), 1
    )
    if len(blocks) == 0:
        raise ConfigError(f"--data: the documents give fewer tokens than one block of {block_size(cfg)}")
    chars_per_token = fertility(tokenizer, (d["text"] for d in docs))["characters_per_token"]
    return concatenate_datasets([blocks] * max(1, -(-n_blocks // len(blocks)))), chars_per_token


def _sft_trainer(
    cfg: Any, loaded: Any, spec: dict[str, Any], sdir: StageDir, batches: int
) -> tuple[Any, dict[str, Any]]:
    """The stage's SFT trainer over `--data` chats or synthetic ones, with the packing the stage would choose, and
    what the rows look like: length distribution (tokens), token shares, the packing choice and its reason."""
    from datasets import Dataset

    from korean_llm.data import sft_row
    from korean_llm.stages import sft
    from korean_llm.train import packing

    if spec.get("data"):
        rows = user_rows(cfg, sft_row(cfg.sft.system_prompt))
    else:
        rows = list(sft_chats(cfg, loaded.tokenizer, 2 * batches, cfg.run.seed))
    lengths = packing.conversation_lengths(loaded.tokenizer, rows)
    choice = packing.choose(cfg, lengths, loaded.backend)
    if choice.packing:  # packed rows hold about max_seq_length tokens each
        rows = _repeat(rows, sum(lengths), batches * cfg.model.max_seq_length)
    else:
        rows = _repeat(rows, len(rows), batches)[: max(batches, len(rows))] if spec.get("data") else rows[:batches]
    trainer = sft.build_trainer(cfg, loaded, Dataset.from_list(rows), sdir, choice)
    if len(trainer.train_dataset) == 0:
        raise ConfigError(
            f"--seq-len {cfg.model.max_seq_length} leaves no assistant token after the chat template and system "
            "prompt: use a longer sequence"
        )
    acc = packing.token_accounting(
        trainer.train_dataset,
        packing.system_turn_tokens(loaded.tokenizer, rows),
        choice,
        int(cfg.training["per_device_train_batch_size"]),
        cfg.model.max_seq_length,
        cfg.run.seed,
    )
    info = {
        "data": spec.get("data"),
        "packing": choice.packing,
        "packing_reason": choice.reason,
        "lengths": packing.length_summary(lengths),
        "system_prompt_share": acc["system_prompt_share"],
        "prompt_share": acc["prompt_share"],
        "loss_share": acc["loss_share"],
    }
    return trainer, info


def _run_trainer(mode: str, cfg: Any, loaded: Any, spec: dict[str, Any], workdir: Path) -> dict[str, Any]:
    from korean_llm.observe.metrics import StageMetrics
    from korean_llm.stages import cpt, rlhf
    from korean_llm.train.loop import distributed_strategy, train

    warmup, steps = spec["warmup"], spec["steps"]
    accum = int(cfg.training.get("gradient_accumulation_steps", 1))
    batches = cfg.training["per_device_train_batch_size"] * accum * (warmup + steps)
    sdir = StageDir(workdir / f"{mode}-{time.monotonic_ns()}", cfg.stage)
    sdir.prepare()
    data_info: dict[str, Any] = {}
    chars_per_token: float | None = None
    if mode == "cpt":
        if spec.get("data"):
            blocks, chars_per_token = user_blocks(cfg, loaded.tokenizer, batches)
        else:
            blocks = cpt_blocks(cfg, loaded.tokenizer, batches, cfg.run.seed)
        trainer = cpt.build_trainer(cfg, loaded, blocks, sdir)
    elif mode == "dpo":
        rows = preference_pairs(cfg, loaded.tokenizer, batches, cfg.run.seed)
        trainer = rlhf.build_trainer(cfg, loaded, rows, sdir)
    else:
        trainer, data_info = _sft_trainer(cfg, loaded, spec, sdir, batches)
    if mode == "cpt" and spec.get("data"):
        data_info = {"data": spec["data"], "characters_per_token": chars_per_token}
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
        **data_info,
        "padding_share": 1 - nonpad / tokens if tokens else None,
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


def user_source(spec: dict[str, Any]) -> dict[str, Any]:
    """The `--data` source of the stage config: as resolved by run_command, `--max-rows` over its own max_rows."""
    source = dict(spec["source"])
    if spec.get("max_rows") is not None:
        source["max_rows"] = spec["max_rows"]
    return source


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
        **({"data": {"sources": [user_source(spec)]}} if spec.get("source") else {}),
        "metrics": {"port": 0, "host": "127.0.0.1"},
    }
    return build_config(data, source="korean-llm bench", overrides=spec["overrides"], env={})


def _mode_runs(spec: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(mode, sft.packing setting) of each run: `--packing` sweeps the SFT runs; None keeps the config's."""
    settings = spec.get("packings") or [None]
    return [(mode, s) for mode in spec["modes"] for s in (settings if mode == "sft" else [None])]


def _with_packing(spec: dict[str, Any], setting: str | None) -> dict[str, Any]:
    return spec if setting is None else {**spec, "overrides": [*spec["overrides"], f"sft.packing={setting}"]}


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
            for mode, setting in _mode_runs(spec):
                cfg = _stage_config(_with_packing(spec, setting), mode, batch, workdir)
                row: dict[str, Any] = {
                    "backend": loaded.backend,
                    "mode": mode,
                    "batch_size": batch,
                    "seq_len": spec["seq_len"],
                    "lora": spec["lora"],
                    "packing": None,
                    "steps": spec["steps"],
                    "world_size": dist.world_size(),
                    "strategy": cfg.distributed.strategy if dist.world_size() > 1 else None,
                    "parameters": params,
                    "peak_tflops": peak,
                    "peak_source": peak_source,
                    "load_seconds": round(load_seconds, 1),
                    "block_compile": loaded.block_compile,  # Unsloth's per-layer compile (hf: None)
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
                    row.update({k: run[k] for k in RUN_INFO if k in run})
                    if row.get("characters_per_token"):  # documents of --data: the rate in their characters
                        row["characters_per_second"] = row["nonpad_tokens_per_second"] * row["characters_per_token"]
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


# What a trainer run adds to its result row: the measured padding share and, for SFT, what the rows look like.
RUN_INFO = (
    "padding_share",
    "data",
    "packing",
    "packing_reason",
    "lengths",
    "system_prompt_share",
    "prompt_share",
    "loss_share",
    "characters_per_token",
)


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
        build_shape(Path(spec["folder"]), SHAPES[spec["shape"]], tokenizer_dir=spec.get("tokenizer"))
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
    cols = ("backend", "mode", "batch", "step s", "tokens/s", "non-pad tokens/s", "pad %", "peak GiB", "MFU", "loss")
    for col in cols:
        table.add_column(col, justify="left" if col in ("backend", "mode") else "right")
    for r in rows:
        mode = r["mode"] + (" packed" if r.get("packing") else "")
        if "error" in r:
            table.add_row(r["backend"], mode, str(r["batch_size"]), f"[red]{r['error'][:60]}", *[""] * 6)
            continue
        mem = f"{r['peak_memory_gib']:.1f}" if r["peak_memory_gib"] is not None else "-"
        table.add_row(
            r["backend"],
            mode,
            str(r["batch_size"]),
            f"{r['step_seconds']:.3f}",
            f"{r['tokens_per_second']:,.0f}",
            f"{r['nonpad_tokens_per_second']:,.0f}",
            f"{r['padding_share']:.1%}" if r.get("padding_share") is not None else "-",
            mem,
            f"{r['mfu']:.1%}",
            f"{r['first_loss']:.2f} → {r['last_loss']:.2f}" if r["first_loss"] is not None else "-",
        )
    console.print(table)
    for r in rows:
        if r.get("lengths") and "error" not in r:
            lens = r["lengths"]
            console.print(
                f"{r['backend']} {r['mode']} batch {r['batch_size']}: {r.get('data') or 'synthetic rows'}: "
                f"{lens['rows']:,} chats, tokens p50 {lens['p50']} / p90 {lens['p90']} / p99 {lens['p99']} "
                f"(max {lens['max']}); system prompt {r['system_prompt_share']:.1%}, prompt {r['prompt_share']:.1%}, "
                f"loss {r['loss_share']:.1%} of the tokens; {r['packing_reason']}"
            )
    for r in rows:
        if r.get("characters_per_second") and "error" not in r:
            console.print(
                f"{r['backend']} {r['mode']} batch {r['batch_size']}: {r.get('data')}: "
                f"{r['characters_per_token']:.3f} characters per token, {r['characters_per_second']:,.0f} characters/s"
            )
    if first is None:
        return
    devices = f" × {first['world_size']} devices" if first.get("world_size", 1) > 1 else ""
    console.print(
        f"MFU = 6 (DPO: 8) × {first['parameters']:,} parameters × non-padding tokens/s ÷ {first['peak_tflops']:.2f} "
        f"TFLOP/s{devices} ({first['peak_source']}); loss shown when a logging step fell in the measured run"
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=TINY_MODEL, help=f"{', '.join(SHAPES)}, {TINY_MODEL} or a model folder")
    p.add_argument(
        "--tokenizer",
        default=None,
        help="with a named shape: build it with this tokenizer folder (e.g. the vocab stage's output; the embeddings "
        "grow to hold it)",
    )
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
    p.add_argument(
        "--data",
        default=None,
        help="measure on these rows instead of synthetic ones (any source the stages read: file, folder, glob, "
        "hf:<id>, builtin:<name>, or a name in the `datasets:` registry of -f VALUES); chats for --mode sft, "
        "documents for cpt",
    )
    p.add_argument("--max-rows", type=int, default=None, help="with --data: read at most this many rows")
    p.add_argument(
        "-f", "--values", action="append", default=[], help="with --data NAME: values file with a `datasets:` block"
    )
    p.add_argument("--format", default=None, help="with --data: format of the rows (default: from the extension)")
    p.add_argument("--encoding", default=None, help="with --data: auto | utf-8 | utf-8-sig | cp949 | euc-kr")
    p.add_argument(
        "--map", action="append", default=[], metavar="FIELD=COLUMN", help="with --data: field mapping (repeatable)"
    )
    p.add_argument(
        "--packing",
        default=None,
        help="sft.packing settings to compare in one process, comma-separated (auto, true, false)",
    )
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


# The rows each mode reads from --data (config/mapping.py KIND_FIELDS).
DATA_KINDS = {"sft": "chat", "cpt": "text"}


def resolve_data(args: argparse.Namespace, modes: list[str]) -> dict[str, Any]:
    """The `--data` source, resolved as the stages resolve theirs and checked before any model loads: a registry
    name of `-f VALUES` or a path, with `--format`, `--encoding` and `--map` (korean_llm.data.inspect
    resolve_source, config/mapping.py); its mapping against the rows of each mode (chats for sft, text for cpt);
    a local file's first record against the mapped columns. ConfigError / DataError (exit 2) otherwise."""
    from korean_llm.data import ReadLog, read_source
    from korean_llm.data.inspect import resolve_source

    resolved, _, _ = resolve_source(
        args.data, values=args.values, fmt=args.format, encoding=args.encoding, maps=args.map
    )
    local = not resolved.path.startswith(("hf:", "builtin:"))
    if local and not Path(resolved.path).exists() and not glob.glob(resolved.path):
        named = f"--data {args.data}" + (f" (path {resolved.path})" if resolved.dataset else "")
        raise ConfigError(f"{named}: no such file, folder or glob")
    source = resolved.model_dump(mode="json", exclude_defaults=True)
    if local:  # the worker runs elsewhere: a relative path is read from here
        source["path"] = str(Path(resolved.path).resolve())
    for mode in modes:  # the mapping against the rows the mode reads, as the stage config checks it
        if mode in DATA_KINDS:
            check_kind(resolved.mapping, DATA_KINDS[mode], f"--data {args.data} (--mode {mode})")
    if local and resolved.mapping is not None:
        next(iter(read_source(resolved, "reject", ReadLog())), None)  # a missing mapped column: DataError
    return source


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
    source: dict[str, Any] | None = None
    if args.data is not None:
        if "dpo" in modes:
            raise ConfigError("--data measures --mode sft (chats) and cpt (documents); leave dpo out")
        if args.max_rows is not None and args.max_rows < 1:
            raise ConfigError("--max-rows must be at least 1")
        source = resolve_data(args, modes)
    else:
        given = [f"--{name.replace('_', '-')}" for name in ("max_rows", "format", "encoding") if getattr(args, name)]
        given += ["--map"] * bool(args.map) + ["-f"] * bool(args.values)
        if given:
            raise ConfigError(f"{', '.join(given)} needs --data")
    packings = _csv(args.packing, ("auto", "true", "false"), "--packing") if args.packing else None
    for expr in args.overrides:  # a typo must fail here, not after minutes of model loading
        build_config({"stage": "sft", "model": {"base_model": "x"}}, source="--set", overrides=[expr], env={})
    spec: dict[str, Any] = {
        "task": "measure",
        "model_path": resolve_bench_model(args.model, args.tokenizer),
        "tokenizer": args.tokenizer,
        "modes": modes,
        "batch_sizes": batch_sizes,
        "seq_len": args.seq_len,
        "steps": args.steps,
        "warmup": args.warmup,
        "lora": args.lora,
        "peak_tflops": args.peak_tflops,
        "overrides": args.overrides,
        # what the result rows name: the registry name, or the path (absolute for a local one)
        "data": (source.get("dataset") or source["path"]) if source else None,
        "source": source,
        "max_rows": args.max_rows,
        "packings": packings,
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
