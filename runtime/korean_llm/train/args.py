"""TRL arguments of a training stage: our defaults, the stage's, the user's `training:` block, the launch."""

from __future__ import annotations

import logging
from typing import Any

from korean_llm import dist
from korean_llm.config import StageConfig, check_training_keys
from korean_llm.errors import ConfigError
from korean_llm.observe.tracking import reject_trainer_trackers
from korean_llm.pipeline.artifacts import (
    StageDir,
)
from korean_llm.train.models import choose_backend

log = logging.getLogger("korean_llm")


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
    # W&B and MLflow are logged by korean_llm.observe.tracking (from the callback below), not by the Trainer.
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
