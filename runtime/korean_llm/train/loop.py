"""Running a stage trainer: resume from the newest complete checkpoint, SIGTERM, save, the stage's manifest.

`train` adds the stage callback (`callbacks.py`) to a trainer built with `args.build_args` and
`trainer.stage_trainer`, resumes from the newest complete checkpoint, and returns a summary;
`training_manifest` saves the adapter or weights and the tokenizer into the stage's work folder and describes them.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from korean_llm import dist
from korean_llm.builtin import resolve_model
from korean_llm.config import StageConfig
from korean_llm.data import RejectLog
from korean_llm.errors import LockHeld, Terminated
from korean_llm.observe.metrics import StageMetrics
from korean_llm.pipeline.artifacts import (
    Manifest,
    StageDir,
    atomic_write_json,
    checkpoint_step,
    latest_checkpoint,
    tokenizer_fingerprint,
)
from korean_llm.pipeline.locking import DirLock
from korean_llm.train.callbacks import LOSS_STATE, FinishedAtCheckpoint, LockLost, SigtermFlag, make_callbacks
from korean_llm.train.models import Loaded, trainable_parameters

if TYPE_CHECKING:
    from korean_llm.pipeline.stage import StageContext

log = logging.getLogger("korean_llm")


def _resumed_loss_sum(ckpt: Path) -> float | None:
    """The loss sum saved with `ckpt`, or None for a checkpoint written without it."""
    try:
        state = json.loads((ckpt / LOSS_STATE).read_text(encoding="utf-8"))
        return float(state["loss_sum"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def train(
    trainer: Any, cfg: StageConfig, stage_dir: StageDir, metrics: StageMetrics, lock: DirLock | None = None
) -> dict[str, Any]:
    """Run `trainer` with resume and SIGTERM handling; return a summary for the manifest.

    A resume from the checkpoint taken at max_steps trains nothing: the model is that checkpoint's, as an
    uninterrupted run's final model is. `train_loss` is the mean step loss over all steps, resumed ones included.
    When `lock` (the work folder's, on rank 0) is taken over by another process, training stops at the end of that
    step without a checkpoint and this raises LockHeld (exit 2), writing nothing more into the work folder.
    """
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # our callback logs; the printer would dump raw dicts to stdout
    flag = SigtermFlag()
    for cb in make_callbacks(metrics, flag, cfg.stage, cfg.checkpoint.checksums, lock):
        trainer.add_callback(cb)
    resume = latest_checkpoint(stage_dir.checkpoints, log=log.warning) if cfg.checkpoint.resume else None
    prior_sum: float | None = 0.0
    if resume is not None:
        log.info("resuming %s from %s", cfg.stage, resume)
        prior_sum = _resumed_loss_sum(resume)
        if prior_sum is None:
            log.warning(
                "%s: %s has no %s; train_loss will count only the steps after it", cfg.stage, resume, LOSS_STATE
            )
    trainer.prior_loss_sum = prior_sum or 0.0
    resumed_step = checkpoint_step(resume) if resume is not None else 0
    flag.install()
    try:
        result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except FinishedAtCheckpoint:
        result = None
        log.info("%s: %s is at max_steps %d: nothing left to train", cfg.stage, resume, trainer.state.max_steps)
    except LockLost as lost:
        doing = f"saving a checkpoint after step {lost.step} into {stage_dir.checkpoints}"
        if lock is not None:
            lock.ensure_held(doing)  # raises: the lock is lost
        raise LockHeld(  # the other ranks: rank 0 saw its lock taken over
            f"{cfg.stage}: rank 0 lost the lock on {stage_dir.work} at step {lost.step}; this rank stopped before "
            f"{doing}"
        ) from None
    finally:
        flag.restore()
    if flag.raised:
        raise Terminated(f"{cfg.stage}: stopped by SIGTERM at step {trainer.state.global_step} after a checkpoint")
    history = trainer.state.log_history
    if lock is not None:
        lock.ensure_held(f"writing the training log into {stage_dir.work}")
    if dist.is_main():
        atomic_write_json(stage_dir.work / "log_history.json", history)
    losses = [h["loss"] for h in history if "loss" in h]
    if losses and not all(math.isfinite(x) for x in losses):
        log.warning("%s: non-finite loss values were logged", cfg.stage)
    step = trainer.state.global_step
    if result is None:
        train_loss = (prior_sum / step) if prior_sum is not None and step > 0 else None
        runtime = 0.0
    else:
        # TrainOutput.training_loss = (this process's loss sum) / global_step; add the earlier steps' sum
        train_loss = result.training_loss + (prior_sum or 0.0) / max(step, 0.001)
        runtime = result.metrics.get("train_runtime")
    return {
        "global_step": step,
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "train_loss": train_loss,
        "train_runtime": runtime,
        "tokens_seen": trainer.state.num_input_tokens_seen,
        "resumed_from_step": resumed_step if resume else None,
        "trained_steps": step - resumed_step,  # by this process: 0 when the checkpoint was already at max_steps
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
    ctx.ensure_held(f"saving the trained weights into {ctx.dir.work}")
    paths = save_trained(trainer, loaded.tokenizer, ctx.cfg, ctx.dir)
    trainable, total = trainable_parameters(trainer.model)
    if paths["adapter_path"] and loaded.weights and loaded.weights != resolve_model(ctx.cfg.model.base_model or ""):
        # the adapter sits on other weights than the base (the vocab stage's resized model): later stages load those
        extra = {"base_weights": loaded.weights, **extra}
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
