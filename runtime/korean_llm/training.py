"""The training path shared by every training stage and both backends.

`TrainingRun` turns a stage config into TRL arguments (the `training:` block passed through),
adds the project's callbacks (metrics, progress, checkpoint markers, SIGTERM), resumes from the
newest complete checkpoint and saves the result into the stage's work folder.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from korean_llm import dist
from korean_llm.artifacts import (
    Manifest,
    StageDir,
    atomic_write_json,
    checkpoint_step,
    latest_checkpoint,
    tokenizer_fingerprint,
    write_checkpoint_marker,
)
from korean_llm.config import StageConfig, check_training_keys
from korean_llm.console import stderr_console
from korean_llm.data import RejectLog
from korean_llm.errors import ConfigError, Terminated
from korean_llm.models import Loaded, choose_backend, trainable_parameters
from korean_llm.telemetry import StageMetrics, emit_event
from korean_llm.tracking import log_step, reject_trainer_trackers

if TYPE_CHECKING:
    from korean_llm.stage import StageContext

log = logging.getLogger("korean_llm")
console = stderr_console()

# Written into every checkpoint next to trainer_state.json: the loss sum that transformers does not keep.
LOSS_STATE = "korean_llm_state.json"


class _FinishedAtCheckpoint(Exception):
    """Raised from on_train_begin when the resumed checkpoint is already at max_steps."""


# Our defaults for TRL's config; anything in the stage's `training:` block wins (except output_dir).
DEFAULT_ARGS: dict[str, Any] = {
    "learning_rate": 2e-4,
    "num_train_epochs": 1,
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 1,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0,
    "weight_decay": 0.0,
    "logging_steps": 10,
    "save_strategy": "steps",
    "save_steps": 200,
    "save_total_limit": 2,
    "disable_tqdm": True,
    "include_num_input_tokens_seen": "non_padding",  # counted on the device, read back when logging (StageTrainer)
    "dataloader_num_workers": 0,
    # Both backends the same optimizer, the one of the bare loops: Unsloth's configs default to bitsandbytes'
    # 8-bit AdamW, which launches kernels parameter by parameter and saves a few MB on LoRA weights.
    "optim": "adamw_torch_fused",
    # transformers' default (True) replaces a NaN/inf step loss by the running mean in the logs, hiding a diverged
    # run, and tests every step's loss on the host (a GPU sync per step). Unsloth's configs already turn it off.
    "logging_nan_inf_filter": False,
}


def build_args(cfg: StageConfig, config_class: type, stage_dir: StageDir, **stage_defaults: Any) -> Any:
    """TRL config for this stage: our defaults < the stage's defaults < the user's `training:` block."""
    check_training_keys(cfg, config_class)
    if "output_dir" in cfg.training:
        raise ConfigError(f"{cfg.source}: training.output_dir is managed by the stage (it is {stage_dir.checkpoints})")
    reject_trainer_trackers(cfg)
    # W&B and MLflow are logged by korean_llm.tracking (from the callback below), not by the Trainer.
    kwargs = {**DEFAULT_ARGS, "seed": cfg.run.seed, "report_to": "none", **stage_defaults}
    kwargs.update(cfg.training)
    kwargs["output_dir"] = str(stage_dir.checkpoints)
    kwargs.setdefault("run_name", f"{cfg.run.model_name}-{cfg.run.run_id}-{cfg.stage}")
    import torch

    if not torch.cuda.is_available():
        kwargs["bf16"] = kwargs["fp16"] = False
    checkpointing = getattr(config_class, "__dataclass_fields__", {}).get("gradient_checkpointing")
    if checkpointing is not None:  # TRL's default (True) made explicit: the FSDP arguments depend on it
        kwargs.setdefault("gradient_checkpointing", checkpointing.default)
    kwargs.update(distributed_args(cfg, kwargs))
    fields = getattr(config_class, "__dataclass_fields__", {})
    if kwargs.get("fsdp") and "loss_type" in fields and fields["loss_type"].default is None:
        # SFTConfig's default "chunked_nll" reads lm_head.weight without calling lm_head, which FSDP2 shards as a
        # unit of its own (its forward hook is what gathers it): the plain loss under FSDP.
        kwargs.setdefault("loss_type", "nll")
    try:
        return config_class(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{cfg.source}: invalid training arguments for {config_class.__name__}: {exc}") from exc


def distributed_args(cfg: StageConfig, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Trainer arguments for the configured strategy when launched with more than one process."""
    if dist.world_size() == 1:
        return {}
    import torch

    # Without CUDA, accelerate only starts a process group when told to run on the CPU (gloo).
    device = {} if torch.cuda.is_available() else {"use_cpu": True, "ddp_backend": "gloo"}
    if device:
        dist.allow_indexed_cpu_location()
    if cfg.distributed.strategy == "ddp":
        # LoRA leaves most weights frozen; unused-parameter search only costs time.
        return {"ddp_find_unused_parameters": kwargs.get("ddp_find_unused_parameters", False), **device}
    if choose_backend(cfg.model.backend) == "unsloth":
        raise ConfigError(
            f"{cfg.source}: distributed.strategy 'fsdp' needs model.backend 'hf' (Unsloth does not run under FSDP; "
            "use strategy 'ddp' with Unsloth)"
        )
    if cfg.lora.method != "full":
        raise ConfigError(
            f"{cfg.source}: distributed.strategy 'fsdp' is for lora.method 'full' (found '{cfg.lora.method}'); "
            "use 'ddp' for LoRA / QLoRA"
        )
    if device:
        log.warning("distributed.strategy 'fsdp' shards over CUDA devices only: on the CPU accelerate runs DDP (gloo)")
    version = cfg.distributed.fsdp_version
    fsdp_config: dict[str, Any] = {
        "version": version,
        "cpu_ram_efficient_loading": True,
        # fully sharded: parameters are freed after each block's forward and gathered again for backward
        "reshard_after_forward": True if version == 2 else "FULL_SHARD",
        "cpu_offload": cfg.distributed.fsdp_cpu_offload,
        # recomputation inside FSDP's wrapping; the Trainer's own gradient checkpointing would gather twice
        "activation_checkpointing": bool(kwargs.get("gradient_checkpointing", False)),
    }
    if cfg.distributed.fsdp_wrap_layer:
        fsdp_config["transformer_layer_cls_to_wrap"] = [cfg.distributed.fsdp_wrap_layer]
    return {"fsdp": True, "fsdp_config": fsdp_config, "gradient_checkpointing": False, **device}


class StageTrainerMixin:
    """What every stage adds to its TRL trainer: less host work per step, which short GPU steps wait for.

    - Tokens seen: transformers reads the count of each batch back with `.item()`, so the host waits for the GPU
      after every step and the step's host-side work (optimizer launches, callbacks, the next batch) then runs with
      the GPU idle. Here the count is summed on the device and read back when the Trainer logs, saves or ends.
    - FLOPs: transformers counts the model's parameters again for every batch (730 tensors on a 1.5B QLoRA
      model, about 5 ms of Python per step); here they are counted once.
    - Train mode: transformers calls `model.train()`, a walk over every module, at every step (5 ms of Python on
      a 28-layer PEFT model); here at the first step and whenever the model has left train mode (evaluation).
      Unsloth's patched training step does the same.
    - SFT metrics: TRL's `SFTTrainer.compute_loss` reads entropy, token accuracy and the token count back at every
      step (five syncs with its chunked loss). Where TRL's own `compute_loss` is in use with that loss (the HF
      backend; Unsloth replaces it and logs none of them), their sums stay on the device until the Trainer logs:
      the same metrics, weighted by tokens over the logging window instead of averaged per step.
    """

    _pending_tokens: Any = None
    _parameter_count: int | None = None
    _sft_sums: Any = None  # entropy sum, scored tokens, correct tokens, attention-mask tokens since the last log
    _walked: Any = None  # the model whose modules this trainer has put in train mode
    # False for trainers that generate inside their training step (GRPO): generation switches modes itself
    walk_train_mode_once = True

    def _defers_sft_metrics(self, model: Any, inputs: dict[str, Any]) -> bool:
        from transformers import Trainer

        args = self.args  # type: ignore[attr-defined]
        theirs = super().compute_loss.__func__  # type: ignore[misc]
        return (
            # TRL's own SFT loss with transformers' own Trainer below it: not Unsloth's rewrites of either (Unsloth
            # also rebinds trl.SFTTrainer), whose paths this does not reproduce
            (theirs.__module__, theirs.__qualname__) == ("trl.trainer.sft_trainer", "SFTTrainer.compute_loss")
            and Trainer.compute_loss.__module__ == "transformers.trainer"
            and model.training
            and getattr(args, "loss_type", None) == "chunked_nll"
            and not args.use_liger_kernel
            and not getattr(self, "aux_loss_enabled", False)
            and getattr(self, "_tp_size", 1) == 1
            and "attention_mask" in inputs
            and "shift_labels" not in inputs
        )

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, **kwargs: Any) -> Any:
        if not self._defers_sft_metrics(model, inputs):
            return super().compute_loss(model, inputs, return_outputs=return_outputs, **kwargs)  # type: ignore[misc]
        import torch
        from transformers import Trainer

        inputs["use_cache"] = False  # as TRL's compute_loss
        loss, outputs = Trainer.compute_loss(self, model, inputs, return_outputs=True, **kwargs)  # type: ignore[arg-type]
        parts = (
            outputs.entropy_sum,
            outputs.num_valid_tokens,
            outputs.num_correct_tokens,
            inputs["attention_mask"].sum(),
        )
        dtype = torch.float32 if loss.device.type == "mps" else torch.float64  # exact counts where float64 exists
        local = torch.stack([torch.as_tensor(t, device=loss.device).detach().to(dtype) for t in parts])
        sums = self.accelerator.gather(local).view(-1, 4).sum(0)  # type: ignore[attr-defined]
        self._sft_sums = sums if self._sft_sums is None else self._sft_sums + sums
        return (loss, outputs) if return_outputs else loss

    def _flush_sft_metrics(self) -> None:
        if self._sft_sums is None:
            return
        entropy, scored, correct, tokens = self._sft_sums.tolist()
        self._sft_sums = None
        self._total_train_tokens += int(tokens)  # type: ignore[attr-defined]
        metrics = self._metrics["train"]  # type: ignore[attr-defined]
        metrics["num_tokens"] = [self._total_train_tokens]  # type: ignore[attr-defined]
        if scored > 0:
            metrics["entropy"].append(entropy / scored)
            metrics["mean_token_accuracy"].append(correct / scored)

    def training_step(self, model: Any, *args: Any, **kwargs: Any) -> Any:
        # `model.training` alone says nothing about the modules below: after loading, the root can be in train mode
        # while the base model's modules are still in eval mode (and skip gradient checkpointing, dropout).
        if not self.walk_train_mode_once or not model.training or self._walked is not model:
            self._walked = model
            return super().training_step(model, *args, **kwargs)  # type: ignore[misc]
        model.train = _already_training(model)  # shadows the method for this call only
        try:
            return super().training_step(model, *args, **kwargs)  # type: ignore[misc]
        finally:
            del model.train

    def floating_point_ops(self, inputs: dict[str, Any]) -> int:
        name = getattr(self.model, "main_input_name", "input_ids")  # type: ignore[attr-defined]
        if name not in inputs or not hasattr(self.model, "num_parameters"):  # type: ignore[attr-defined]
            return super().floating_point_ops(inputs)  # type: ignore[misc]
        if self._parameter_count is None:
            self._parameter_count = self.model.num_parameters(exclude_embeddings=True)  # type: ignore[attr-defined]
        return 6 * inputs[name].numel() * self._parameter_count

    def _track_num_input_tokens(self, inputs: dict[str, Any]) -> None:
        import torch

        mode = self.args.include_num_input_tokens_seen  # type: ignore[attr-defined]
        name = getattr(self.model, "main_input_name", "input_ids")  # type: ignore[attr-defined]
        if mode == "no" or name not in inputs:
            super()._track_num_input_tokens(inputs)  # type: ignore[misc]  # (its warning for a missing input)
            return
        ids = inputs[name]
        pad = getattr(self.processing_class, "pad_token_id", None)  # type: ignore[attr-defined]
        if mode == "non_padding" and "attention_mask" in inputs:
            count = inputs["attention_mask"].sum()
        elif mode == "non_padding" and pad is not None:
            count = (ids != pad).sum()
        else:
            count = ids.numel()
        count = torch.as_tensor(count, device=self.args.device, dtype=torch.int64)  # type: ignore[attr-defined]
        count = self.accelerator.gather(count).sum()  # type: ignore[attr-defined]
        self._pending_tokens = count if self._pending_tokens is None else self._pending_tokens + count

    def flush_token_count(self) -> None:
        if self._pending_tokens is not None:
            self.state.num_input_tokens_seen += int(self._pending_tokens.item())  # type: ignore[attr-defined]
            self._pending_tokens = None

    def log(self, *args: Any, **kwargs: Any) -> None:
        self.flush_token_count()
        self._flush_sft_metrics()
        super().log(*args, **kwargs)  # type: ignore[misc]

    # Sum of the step losses of the steps before this process's first one (read from the resumed checkpoint).
    prior_loss_sum: float = 0.0

    def _save_checkpoint(self, *args: Any, **kwargs: Any) -> None:
        self.flush_token_count()
        super()._save_checkpoint(*args, **kwargs)  # type: ignore[misc]
        if dist.is_main():
            from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

            step = self.state.global_step  # type: ignore[attr-defined]
            ckpt = Path(self.args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{step}"  # type: ignore[attr-defined]
            atomic_write_json(ckpt / LOSS_STATE, {"global_step": step, "loss_sum": self.loss_sum_so_far()})

    def loss_sum_so_far(self) -> float:
        """Sum of every step's loss up to the current step, resumed steps included.

        transformers 5.17.0 `Trainer._inner_training_loop` (trainer.py) starts `_total_loss_scalar` at 0.0 in every
        process; each log drains the on-device `_tr_loss` into it (`_maybe_log_save_evaluate`), and
        `_finalize_training` returns `train_loss = _total_loss_scalar / global_step`. After a resume global_step
        counts the checkpoint's steps while the sum holds only this process's, so its `train_loss` is too low. The
        sum saved with each checkpoint (LOSS_STATE) carries the earlier steps over.
        """
        tr_loss = getattr(self, "_tr_loss", None)
        pending = float(tr_loss.item()) if tr_loss is not None else 0.0
        return self.prior_loss_sum + float(getattr(self, "_total_loss_scalar", 0.0)) + pending

    def train(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().train(*args, **kwargs)  # type: ignore[misc]
        finally:
            self.flush_token_count()


def _already_training(model: Any) -> Any:
    def train(mode: bool = True) -> Any:
        if mode and model.training:  # still in train mode: nothing to walk
            return model
        return type(model).train(model, mode)

    return train


def stage_trainer(base: type, embedding_lr: float | None = None, *, generates: bool = False) -> type:
    """Subclass a TRL trainer (or Unsloth's patched one) with `StageTrainerMixin`.

    With `embedding_lr`, embed_tokens/lm_head get their own learning rate (the CPT recipe). `generates`: the
    trainer generates inside its training step (GRPO), so train mode is asserted at every step as transformers
    does."""

    class StageTrainer(StageTrainerMixin, base):  # type: ignore[misc,valid-type]
        walk_train_mode_once = not generates

        def create_optimizer(self, model: Any = None) -> Any:
            if embedding_lr is None or self.optimizer is not None:
                return super().create_optimizer(model)
            opt_model = self.model if model is None else model
            decay = set(self.get_decay_parameter_names(opt_model))
            groups: dict[tuple[bool, bool], list[Any]] = {}
            for name, param in opt_model.named_parameters():
                if param.requires_grad:
                    is_embedding = "embed_tokens" in name or "lm_head" in name
                    groups.setdefault((is_embedding, name in decay), []).append(param)
            param_groups = [
                {
                    "params": params,
                    "weight_decay": self.args.weight_decay if decayed else 0.0,
                    **({"lr": embedding_lr} if is_embedding else {}),
                }
                for (is_embedding, decayed), params in groups.items()
            ]
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            self.optimizer = optimizer_cls(param_groups, **optimizer_kwargs)
            return self.optimizer

    # Unsloth and TRL look at trainer class names ("...SFTTrainer"): keep the base's name in ours.
    StageTrainer.__name__ = StageTrainer.__qualname__ = f"Stage{base.__name__}"
    return StageTrainer


class _SigtermFlag:
    def __init__(self) -> None:
        self.raised = False
        self._previous: Any = None

    def install(self) -> None:
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def _handle(self, signum: int, frame: Any) -> None:
        self.raised = True
        log.warning("SIGTERM: saving a checkpoint at the end of this step, then stopping")


def make_callbacks(metrics: StageMetrics, flag: _SigtermFlag, stage: str, checksums: bool = True) -> list[Any]:
    from transformers import TrainerCallback
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    class StageCallback(TrainerCallback):
        """Metrics, progress, checkpoint markers and SIGTERM handling in one place."""

        def __init__(self) -> None:
            self.started = time.time()
            self.start_step = 0
            self.start_tokens = 0
            self.progress: Progress | None = None
            self.task: Any = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.max_steps > 0 and state.global_step >= state.max_steps:
                # transformers 5.17.0 `_run_epoch` runs one optimizer step before it looks at should_training_stop:
                # resuming from the checkpoint taken at max_steps would train step max_steps + 1. The model already
                # holds that checkpoint's weights here (`_prepare_for_training` loaded them): stop before any step.
                raise _FinishedAtCheckpoint()
            self.started = time.time()
            self.start_step = state.global_step
            self.start_tokens = state.num_input_tokens_seen or 0
            emit_event({"type": "start", "stage": stage, "step": state.global_step, "max_steps": state.max_steps})
            if console.is_terminal and dist.is_main():
                self.progress = Progress(
                    TextColumn(f"[bold]{stage}"),
                    BarColumn(),
                    TextColumn("{task.completed}/{task.total} steps {task.fields[info]}"),
                    TimeRemainingColumn(),
                    console=console,
                )
                self.progress.start()
                self.task = self.progress.add_task(stage, total=state.max_steps, completed=state.global_step, info="")

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            if self.progress is not None:
                self.progress.update(self.task, completed=state.global_step)
            if dist.any_rank(flag.raised):  # every rank stops at the same step, or DDP would hang
                control.should_save = True
                control.should_training_stop = True
            return control

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            logs = logs or {}
            elapsed = max(time.time() - self.started, 1e-9)
            done = state.global_step - self.start_step
            tokens = (state.num_input_tokens_seen or 0) - self.start_tokens
            tps = tokens / elapsed if tokens else None
            eta = (state.max_steps - state.global_step) * elapsed / done if done > 0 else None
            numeric = {k: float(v) for k, v in logs.items() if isinstance(v, int | float)}
            metrics.record(state.global_step, state.max_steps, numeric, tps, eta)
            log_step(state.global_step, {**numeric, **({"tokens_per_second": tps} if tps is not None else {})})
            emit_event(
                {
                    "type": "log",
                    "stage": stage,
                    "step": state.global_step,
                    "max_steps": state.max_steps,
                    "tokens_per_second": tps,
                    "eta_seconds": eta,
                    **numeric,
                }
            )
            if self.progress is not None and "loss" in numeric:
                self.progress.update(self.task, info=f"loss {numeric['loss']:.4f}")
            elif "loss" in numeric:
                log.info("%s step %d/%d loss %.4f", stage, state.global_step, state.max_steps, numeric["loss"])

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            ckpt = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            dist.barrier()  # every rank has written its part (rng state) before the marker says "complete"
            if dist.is_main() and ckpt.is_dir():
                write_checkpoint_marker(ckpt, state.global_step, checksums=checksums)

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.progress is not None:
                self.progress.stop()
                self.progress = None

    return [StageCallback()]


def _resumed_loss_sum(ckpt: Path) -> float | None:
    """The loss sum saved with `ckpt`, or None for a checkpoint written without it."""
    try:
        state = json.loads((ckpt / LOSS_STATE).read_text(encoding="utf-8"))
        return float(state["loss_sum"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def train(trainer: Any, cfg: StageConfig, stage_dir: StageDir, metrics: StageMetrics) -> dict[str, Any]:
    """Run `trainer` with resume and SIGTERM handling; return a summary for the manifest.

    A resume from the checkpoint taken at max_steps trains nothing: the model is that checkpoint's, as an
    uninterrupted run's final model is. `train_loss` is the mean step loss over all steps, resumed ones included.
    """
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # our callback logs; the printer would dump raw dicts to stdout
    flag = _SigtermFlag()
    for cb in make_callbacks(metrics, flag, cfg.stage, cfg.checkpoint.checksums):
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
    except _FinishedAtCheckpoint:
        result = None
        log.info("%s: %s is at max_steps %d: nothing left to train", cfg.stage, resume, trainer.state.max_steps)
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
            "rows_rejected": len(rejects.rejected),
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
