"""Running a stage trainer: resume from the newest complete checkpoint, SIGTERM, save, the stage's manifest.

`train` adds the stage callback (`callbacks.py`) to a trainer built with `args.build_args` and
`trainer.stage_trainer`, resumes from the newest complete checkpoint, and returns a summary;
`training_manifest` saves the adapter or weights and the tokenizer into the stage's work folder and describes them.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

from korean_llm import dist
from korean_llm.config import StageConfig
from korean_llm.data import RejectLog
from korean_llm.errors import Terminated
from korean_llm.observe.metrics import StageMetrics
from korean_llm.pipeline.artifacts import (
    Manifest,
    StageDir,
    atomic_write_json,
    latest_checkpoint,
    tokenizer_fingerprint,
)
from korean_llm.train.callbacks import SigtermFlag, make_callbacks
from korean_llm.train.models import Loaded, trainable_parameters

if TYPE_CHECKING:
    from korean_llm.pipeline.stage import StageContext

log = logging.getLogger("korean_llm")


def train(trainer: Any, cfg: StageConfig, stage_dir: StageDir, metrics: StageMetrics) -> dict[str, Any]:
    """Run `trainer` with resume and SIGTERM handling; return a summary for the manifest."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # our callback logs; the printer would dump raw dicts to stdout
    flag = SigtermFlag()
    for cb in make_callbacks(metrics, flag, cfg.stage):
        trainer.add_callback(cb)
    resume = latest_checkpoint(stage_dir.checkpoints, log=log.warning) if cfg.checkpoint.resume else None
    if resume is not None:
        log.info("resuming %s from %s", cfg.stage, resume)
    flag.install()
    try:
        result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    finally:
        flag.restore()
    if flag.raised:
        raise Terminated(f"{cfg.stage}: stopped by SIGTERM at step {trainer.state.global_step} after a checkpoint")
    history = trainer.state.log_history
    if dist.is_main():
        atomic_write_json(stage_dir.work / "log_history.json", history)
    losses = [h["loss"] for h in history if "loss" in h]
    if losses and not all(math.isfinite(x) for x in losses):
        log.warning("%s: non-finite loss values were logged", cfg.stage)
    return {
        "global_step": trainer.state.global_step,
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "train_loss": result.training_loss,
        "train_runtime": result.metrics.get("train_runtime"),
        "tokens_seen": trainer.state.num_input_tokens_seen,
        "resumed_from_step": int(resume.name.rsplit("-", 1)[1]) if resume else None,
    }


def save_trained(trainer: Any, tokenizer: Any, cfg: StageConfig, stage_dir: StageDir) -> dict[str, str | None]:
    """Save the adapter (LoRA) or the full weights, and the tokenizer; paths relative to the stage folder.

    `trainer.save_model` writes on the main process only and gathers FSDP-sharded weights first.
    """
    sub = "model" if cfg.lora.method == "full" else "adapter"
    trainer.save_model(str(stage_dir.work / sub))
    if dist.is_main():
        tokenizer.save_pretrained(stage_dir.work / "tokenizer")
        for stray in ("training_args.bin",):  # the Trainer's pickle is not part of the published model
            (stage_dir.work / sub / stray).unlink(missing_ok=True)
    dist.barrier()
    if sub == "model":
        return {"adapter_path": None, "merged_path": "model", "tokenizer_path": "tokenizer"}
    return {"adapter_path": "adapter", "merged_path": None, "tokenizer_path": "tokenizer"}


def distributed_strategy(trainer: Any) -> str | None:
    """What the Trainer ran: `fsdp`, `ddp` (also what accelerate runs for FSDP on a CPU), or None for one process."""
    if dist.world_size() == 1:
        return None
    return "fsdp" if getattr(trainer, "is_fsdp_enabled", False) else "ddp"


def write_config_snapshot(cfg: StageConfig, stage_dir: StageDir) -> None:
    """The resolved config next to the weights (what was actually run)."""
    if dist.is_main():
        atomic_write_json(stage_dir.work / "config.resolved.json", cfg.model_dump(mode="json"))


def training_manifest(
    ctx: StageContext,
    trainer: Any,
    loaded: Loaded,
    rejects: RejectLog,
    summary: dict[str, Any],
    *,
    metrics: dict[str, Any],
    extra: dict[str, Any],
) -> Manifest:
    """Save the trained weights and describe them: the manifest every training stage publishes."""
    paths = save_trained(trainer, loaded.tokenizer, ctx.cfg, ctx.dir)
    trainable, total = trainable_parameters(trainer.model)
    return ctx.manifest(
        **paths,
        tokenizer_hash=tokenizer_fingerprint(loaded.tokenizer),
        inputs=[s.path for s in ctx.cfg.data.sources],
        outputs={"log_history": "log_history.json", "rejected": "rejected.jsonl"},
        metrics={
            **summary,
            **metrics,
            "rows_rejected": rejects.total,
            "trainable_parameters": trainable,
            "total_parameters": total,
        },
        extra={
            "backend": loaded.backend,
            "quantization": loaded.quantization,
            "notes": loaded.notes,
            "rejected_by_reason": rejects.counts(),
            "world_size": dist.world_size(),
            "distributed_strategy": distributed_strategy(trainer),
            **extra,
        },
    )
