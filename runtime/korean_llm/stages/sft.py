"""Supervised fine-tuning on Korean chats.

    python -m korean_llm sft --config /etc/korean-llm/sft.yaml

Rows with `messages` (or ShareGPT `conversations`, or `instruction`/`input`/`output`) are
rendered with the tokenizer's chat template, a Korean system prompt added when a row has none,
and the loss is taken on assistant tokens only (TRL `assistant_only_loss`, with a training
template carrying `{% generation %}` markers). It starts from the CPT stage's output when the
pipeline has one (`run.previous_stage`).
"""

from __future__ import annotations

from typing import Any

from korean_llm.config import StageConfig
from korean_llm.data import RejectLog, collect_rows, sft_row
from korean_llm.pipeline.artifacts import Manifest, StageDir
from korean_llm.pipeline.stage import StageContext, execute
from korean_llm.train.args import build_args
from korean_llm.train.loop import train, training_manifest, write_config_snapshot
from korean_llm.train.models import Loaded, init_point, load_for_training
from korean_llm.train.trainer import stage_trainer


def build_trainer(cfg: StageConfig, loaded: Loaded, dataset: Any, stage_dir: StageDir) -> Any:
    """The SFT trainer over chat rows; shared by the stage and `korean-llm bench`."""
    from trl import SFTConfig, SFTTrainer

    args = build_args(
        cfg,
        SFTConfig,
        stage_dir,
        max_length=cfg.model.max_seq_length,
        assistant_only_loss=cfg.sft.assistant_only_loss,
        packing=cfg.sft.packing,
        # Explicit, so Unsloth does not switch padding-free batching on by itself (see cpt.build_trainer);
        # `sft.packing` still packs without padding.
        padding_free=False,
    )
    return stage_trainer(SFTTrainer)(
        model=loaded.model, args=args, train_dataset=dataset, processing_class=loaded.tokenizer
    )


def _run(ctx: StageContext) -> Manifest:
    from datasets import Dataset

    cfg = ctx.cfg
    rejects = RejectLog()
    rows = collect_rows(cfg.data, sft_row(cfg.sft.system_prompt), rejects)
    ctx.record_rejects(rejects, "sft data")
    init = init_point(cfg)
    loaded = load_for_training(cfg, init)
    trainer = build_trainer(cfg, loaded, Dataset.from_list(rows), ctx.dir)
    write_config_snapshot(cfg, ctx.dir)
    summary = train(trainer, cfg, ctx.dir, ctx.metrics)
    return training_manifest(
        ctx,
        trainer,
        loaded,
        rejects,
        summary,
        metrics={"conversations": len(rows)},
        extra={"system_prompt": cfg.sft.system_prompt},
    )


def main(config: StageConfig) -> Manifest:
    """python -m korean_llm sft --config /etc/korean-llm/sft.yaml"""
    return execute(config, _run)
