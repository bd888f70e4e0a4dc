"""Supervised fine-tuning on Korean chats.

    python -m korean_llm sft --config /etc/korean-llm/sft.yaml

Rows with `messages` (or ShareGPT `conversations`, or `instruction`/`input`/`output`) are
rendered with the tokenizer's chat template, a Korean system prompt added when a row has none,
and the loss is taken on assistant tokens only (TRL `assistant_only_loss`, with a training
template carrying `{% generation %}` markers). It starts from the CPT stage's output when the
pipeline has one (`run.previous_stage`).

`sft.packing` (auto by default, see korean_llm.packing) packs chats padding-free: TRL's 'bfd'
packing, one attention segment per chat (position ids restart), varlen attention on Unsloth. The
log and the manifest say what was chosen and why, and how the tokens divide into system prompt,
prompt, loss and padding.
"""

from __future__ import annotations

import logging
from typing import Any

from korean_llm.config import StageConfig
from korean_llm.data import RejectLog, collect_rows, sft_row
from korean_llm.pipeline.artifacts import Manifest, StageDir
from korean_llm.pipeline.stage import StageContext, execute
from korean_llm.train import packing
from korean_llm.train.args import build_args
from korean_llm.train.loop import train, training_manifest, write_config_snapshot
from korean_llm.train.models import Loaded, init_point, load_for_training
from korean_llm.train.trainer import stage_trainer

log = logging.getLogger("korean_llm")


def training_rows(cfg: StageConfig, rejects: RejectLog) -> list[dict[str, Any]]:
    """The chats as the stage trains on them: validated, `sft.system_prompt` added to those without a system turn."""
    return collect_rows(cfg.data, sft_row(cfg.sft.system_prompt), rejects)


def choose_packing(cfg: StageConfig, loaded: Loaded, rows: list[dict[str, Any]]) -> packing.PackingChoice:
    """What `sft.packing` resolves to for these rows on this backend (lengths tokenized only for auto)."""
    lengths = packing.conversation_lengths(loaded.tokenizer, rows) if cfg.sft.packing == "auto" else []
    return packing.choose(cfg, lengths, loaded.backend)


def build_trainer(
    cfg: StageConfig, loaded: Loaded, dataset: Any, stage_dir: StageDir, choice: packing.PackingChoice | None = None
) -> Any:
    """The SFT trainer over chat rows; shared by the stage and `korean-llm bench`."""
    from trl import SFTConfig, SFTTrainer

    packing.check_options(cfg)
    if choice is None:
        choice = choose_packing(cfg, loaded, list(dataset))
    elif choice.packing and loaded.backend == "unsloth":
        packing.packed_attention(loaded.backend, cfg.model.attn_implementation)  # varlen attention for the rows
    args = build_args(
        cfg,
        SFTConfig,
        stage_dir,
        max_length=cfg.model.max_seq_length,
        assistant_only_loss=cfg.sft.assistant_only_loss,
        packing=choice.packing,
        # Explicit, so Unsloth does not switch padding-free batching on by itself (see cpt.build_trainer); packing
        # ('bfd') is padding-free in TRL whatever this says.
        padding_free=choice.padding_free,
    )
    trainer = stage_trainer(SFTTrainer)(
        model=loaded.model, args=args, train_dataset=dataset, processing_class=loaded.tokenizer
    )
    trainer.packing_choice = choice
    return trainer


def _run(ctx: StageContext) -> Manifest:
    from datasets import Dataset

    cfg = ctx.cfg
    packing.check_options(cfg)
    rejects = RejectLog()
    rows = training_rows(cfg, rejects)
    ctx.record_rejects(rejects, "sft data")
    init = init_point(cfg)
    loaded = load_for_training(cfg, init)
    choice = choose_packing(cfg, loaded, rows)
    log.info("sft packing: %s", choice.reason)
    trainer = build_trainer(cfg, loaded, Dataset.from_list(rows), ctx.dir, choice)
    accounting = packing.token_accounting(
        trainer.train_dataset,
        packing.system_turn_tokens(loaded.tokenizer, rows),
        choice,
        int(trainer.args.per_device_train_batch_size),
        cfg.model.max_seq_length,
        cfg.run.seed,
    )
    log.info("sft tokens: %s", packing.describe(accounting))
    write_config_snapshot(cfg, ctx.dir)
    summary = train(trainer, cfg, ctx.dir, ctx.metrics, ctx.lock)
    return training_manifest(
        ctx,
        trainer,
        loaded,
        rejects,
        summary,
        metrics={"conversations": len(rows), **packing.flat_metrics(accounting)},
        extra={"system_prompt": cfg.sft.system_prompt, "packing": choice.record(), "token_accounting": accounting},
    )


def main(config: StageConfig) -> Manifest:
    """python -m korean_llm sft --config /etc/korean-llm/sft.yaml"""
    return execute(config, _run)
