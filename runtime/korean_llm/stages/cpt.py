"""Continued pre-training on raw Korean text.

    python -m korean_llm cpt --config /etc/korean-llm/cpt.yaml

Documents are tokenized, joined with a separator token and cut into fixed-length blocks
(no padding), and the causal LM loss is taken on every token. With `lora.train_embeddings`,
embed_tokens and lm_head are trained too, at `lora.embedding_learning_rate` (Unsloth's recipe).
"""

from __future__ import annotations

from typing import Any

from korean_llm.config import StageConfig
from korean_llm.data import RejectLog, collect_rows, text_row
from korean_llm.errors import ConfigError, DataError
from korean_llm.pipeline.artifacts import Manifest, StageDir
from korean_llm.pipeline.stage import StageContext, execute
from korean_llm.train import packing
from korean_llm.train.args import build_args
from korean_llm.train.loop import train, training_manifest, write_config_snapshot
from korean_llm.train.models import Loaded, Prepare, init_point, load_for_training
from korean_llm.train.trainer import stage_trainer
from korean_llm.train.warmup import run_warmup


def separator_id(tokenizer: Any, configured: str | None) -> int:
    vocab = tokenizer.get_vocab()
    token = configured or ("<|endoftext|>" if "<|endoftext|>" in vocab else tokenizer.eos_token)
    if token not in vocab:
        raise ConfigError(f"cpt.document_separator '{token}' is not in the tokenizer's vocabulary")
    return int(vocab[token])


def pack_blocks(dataset: Any, tokenizer: Any, block_size: int, sep_id: int, num_proc: int) -> Any:
    """Tokenize every document, append the separator, and cut the stream into `block_size` blocks."""

    def tokenize(batch: dict[str, list[str]]) -> dict[str, list[list[int]]]:
        ids = tokenizer(batch["text"], add_special_tokens=False)["input_ids"]
        return {"input_ids": [[*x, sep_id] for x in ids]}

    def chunk(batch: dict[str, list[list[int]]]) -> dict[str, list[list[int]]]:
        stream = [t for ids in batch["input_ids"] for t in ids]
        usable = len(stream) // block_size * block_size
        return {"input_ids": [stream[i : i + block_size] for i in range(0, usable, block_size)]}

    tokenized = dataset.map(tokenize, batched=True, remove_columns=dataset.column_names, num_proc=num_proc)
    # One batch of 1000 documents is joined before chunking: only its tail (< block_size tokens) is dropped.
    return tokenized.map(chunk, batched=True, batch_size=1000, num_proc=num_proc)


def block_size(cfg: StageConfig) -> int:
    return cfg.cpt.block_size or cfg.model.max_seq_length


def build_trainer(cfg: StageConfig, loaded: Loaded, blocks: Any, stage_dir: StageDir) -> Any:
    """The CPT trainer over packed blocks; shared by the stage and `korean-llm bench`."""
    from trl import SFTConfig, SFTTrainer

    packing.check_options(cfg)  # padding_free: refused, the blocks hold no padding
    # Blocks are full: padding-free batching gains nothing, and Unsloth (which turns it on when unset) then runs
    # attention over the flattened batch with a block mask, without flash-attn about 2.5x slower on an H200.
    stage_defaults: dict[str, Any] = {"max_length": block_size(cfg), "packing": False, "padding_free": False}
    if cfg.lora.train_embeddings:
        stage_defaults["loss_type"] = "nll"  # TRL's chunked loss cannot see a PEFT-wrapped lm_head
    args = build_args(cfg, SFTConfig, stage_dir, **stage_defaults)
    emb_lr = cfg.lora.embedding_learning_rate if cfg.lora.train_embeddings else None
    return stage_trainer(SFTTrainer, emb_lr)(
        model=loaded.model, args=args, train_dataset=blocks, processing_class=loaded.tokenizer
    )


def _run(ctx: StageContext) -> Manifest:
    from datasets import Dataset

    cfg = ctx.cfg
    packing.check_options(cfg)  # before the data is read and any model loads (build_trainer checks again for bench)
    rejects = RejectLog()
    rows = collect_rows(cfg.data, text_row, rejects)
    ctx.record_rejects(rejects, "cpt data")
    init = init_point(cfg)
    block = block_size(cfg)

    def make_blocks(tokenizer: Any) -> Any:
        sep = separator_id(tokenizer, cfg.cpt.document_separator)
        return pack_blocks(Dataset.from_list(rows), tokenizer, block, sep, cfg.cpt.num_proc)

    prepare: Prepare | None = None
    warm: dict[str, Any] = {}
    if cfg.cpt.embedding_warmup_steps:  # after the vocab stage: the new embedding rows first (train/warmup.py)
        prepare, warm = run_warmup(cfg, init, ctx.dir.work, ctx.metrics, make_blocks, build_trainer, ctx.lock)
    loaded = load_for_training(cfg, init, prepare)
    blocks = make_blocks(loaded.tokenizer)
    if len(blocks) == 0:
        raise DataError(f"cpt data: {len(rows)} documents give fewer tokens than one block of {block}")
    trainer = build_trainer(cfg, loaded, blocks, ctx.dir)
    write_config_snapshot(cfg, ctx.dir)
    summary = train(trainer, cfg, ctx.dir, ctx.metrics, ctx.lock)
    return training_manifest(
        ctx,
        trainer,
        loaded,
        rejects,
        summary,
        metrics={"documents": len(rows), "blocks": len(blocks), "block_size": block, **warm},
        extra={},
    )


def main(config: StageConfig) -> Manifest:
    """python -m korean_llm cpt --config /etc/korean-llm/cpt.yaml"""
    return execute(config, _run)
