"""Preference tuning after SFT: DPO (default), ORPO, KTO, or GRPO with Korean reward functions.

    python -m korean_llm rlhf --config /etc/korean-llm/rlhf.yaml

Each method runs through TRL's own trainer (Unsloth's patched path on CUDA) and starts from the
SFT stage's output (`run.previous_stage`). Data:

- dpo / orpo: `prompt`, `chosen`, `rejected` (strings or message lists);
- kto: `prompt`, `completion`, `label` (true: desirable); preference pairs are unpaired into
  chosen -> true and rejected -> false;
- grpo: `prompt`; completions are sampled from the model itself (vLLM when `rlhf.use_vllm` and it
  is installed) and scored by `rlhf.rewards` (Korean-response, length, regex format, user functions).

Prompts get `rlhf.system_prompt` as their system turn when they have none, as in SFT. With LoRA
no second model is loaded: the reference is the policy with its adapter disabled, or, when the
SFT adapter is continued, a frozen copy of that adapter that TRL keeps (the SFT policy itself);
`rlhf.reference_model` names a separate reference instead.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from typing import Any

from korean_llm.config import StageConfig
from korean_llm.data import RejectLog, collect_rows, kto_row, preference_row, prompt_row, with_system_prompt
from korean_llm.errors import ConfigError
from korean_llm.observe.metrics import PREFERENCE_LOG_KEYS, REWARD_FUNCTION_KEY
from korean_llm.pipeline.artifacts import Manifest, StageDir
from korean_llm.pipeline.stage import StageContext, execute
from korean_llm.stages.rlhf.rewards import build_rewards
from korean_llm.train import packing
from korean_llm.train.args import build_args
from korean_llm.train.loop import train, training_manifest, write_config_snapshot
from korean_llm.train.models import Loaded, cuda_available, init_point, load_for_training, load_reference_model
from korean_llm.train.trainer import stage_trainer

log = logging.getLogger("korean_llm")

VALIDATORS: dict[str, Callable[..., dict[str, Any]]] = {
    "dpo": preference_row,
    "orpo": preference_row,
    "kto": kto_row,
    "grpo": prompt_row,
}
# LoRA-sized learning rates (our DEFAULT_ARGS' 2e-4 is for SFT); GRPO moves further per step, so smaller.
LEARNING_RATES = {"dpo": 5e-5, "orpo": 5e-5, "kto": 5e-5, "grpo": 1e-5}


def unpair(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """KTO rows: a preference pair becomes (chosen, True) and (rejected, False); unpaired rows stay as they are."""
    out: list[dict[str, Any]] = []
    for row in rows:
        if "chosen" in row:
            out.append({"prompt": row["prompt"], "completion": row["chosen"], "label": True})
            out.append({"prompt": row["prompt"], "completion": row["rejected"], "label": False})
        else:
            out.append(row)
    return out


def training_rows(cfg: StageConfig, rejects: RejectLog) -> list[dict[str, Any]]:
    rows = collect_rows(cfg.data, VALIDATORS[cfg.rlhf.method], rejects)
    for row in rows:
        row["prompt"] = with_system_prompt(row["prompt"], cfg.rlhf.system_prompt)
    return unpair(rows) if cfg.rlhf.method == "kto" else rows


def trl_classes(method: str) -> tuple[type, type]:
    """(trainer, config class) of TRL 1.14 for the method; ORPO lives in trl.experimental there."""
    if method == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        return ORPOTrainer, ORPOConfig
    import trl

    name = method.upper()
    return getattr(trl, f"{name}Trainer"), getattr(trl, f"{name}Config")


def grpo_settings(cfg: StageConfig, weights: list[float], notes: list[str]) -> dict[str, Any]:
    """GRPOConfig defaults of this stage: reward weights from `rlhf.rewards`, generation backend."""
    if "reward_weights" in cfg.training:
        raise ConfigError(f"{cfg.source}: set reward weights as rlhf.rewards[].weight, not training.reward_weights")
    settings: dict[str, Any] = {
        "reward_weights": weights,
        "num_generations": 8,
        "per_device_train_batch_size": 8,
        "max_completion_length": 256,
        "include_num_input_tokens_seen": "no",  # GRPO batches carry no `input_ids` for the Trainer to count
    }
    if cfg.rlhf.use_vllm:
        if importlib.util.find_spec("vllm") is not None and cuda_available():
            settings.update(use_vllm=True, vllm_mode="colocate")
        else:
            notes.append("rlhf.use_vllm is set but vLLM or CUDA is missing: generating with the model itself")
            log.warning(notes[-1])
    return settings


def patch_unsloth(method: str) -> None:
    """Unsloth's faster preference-trainer path (its GRPO patches apply on import)."""
    import unsloth

    patch = getattr(unsloth, "PatchDPOTrainer", None)
    if method != "grpo" and patch is not None:
        patch()


def rlhf_metrics(history: list[dict[str, Any]]) -> dict[str, float]:
    """First and last logged value of each preference/reward metric (`reward_margin`, `reward_korean_mean`, ...)."""
    names = {key: name for key, (name, _) in PREFERENCE_LOG_KEYS.items()}
    series: dict[str, list[float]] = {}
    for entry in history:
        for key, value in entry.items():
            match = REWARD_FUNCTION_KEY.match(key)
            name = names.get(key) or (f"reward_{match['function']}_mean" if match else None)
            if name is not None and isinstance(value, int | float):
                series.setdefault(name, []).append(float(value))
    out: dict[str, float] = {}
    for name, values in series.items():
        out[f"{name}_first"] = values[0]
        out[name] = values[-1]
    return out


def reference_kind(cfg: StageConfig, args: Any) -> str:
    """What the loss compares the policy with, for the manifest."""
    if cfg.rlhf.method == "orpo" or (cfg.rlhf.method == "grpo" and args.beta == 0):
        return "none"
    return cfg.rlhf.reference_model or "policy (LoRA adapter disabled or its frozen copy)"


def drop_reference_adapter(model: Any) -> None:
    """Remove TRL's frozen `ref` copy of a continued adapter: it is not part of the result."""
    if "ref" in getattr(model, "peft_config", {}):
        model.delete_adapter("ref")


def build_trainer(
    cfg: StageConfig,
    loaded: Loaded,
    rows: list[dict[str, Any]],
    stage_dir: StageDir,
    rewards: tuple[list[Callable[..., list[float]]], list[float]] | None = None,
) -> Any:
    """The method's TRL trainer over prepared rows; shared by the stage and `korean-llm bench --mode dpo`.

    `rewards`: GRPO's reward functions and weights when already built (else built here from the config)."""
    from datasets import Dataset

    packing.check_options(cfg)  # padding_free: refused, TRL 1.14.2's preference trainers pad
    method = cfg.rlhf.method
    if rewards is None:
        rewards = build_rewards(cfg.rlhf.rewards) if method == "grpo" else ([], [])
    reward_funcs, weights = rewards
    if loaded.backend == "unsloth":
        patch_unsloth(method)
    trainer_cls, config_cls = trl_classes(method)
    defaults: dict[str, Any] = {"learning_rate": LEARNING_RATES[method]}
    kwargs: dict[str, Any] = {}
    if method == "grpo":
        defaults.update(grpo_settings(cfg, weights, loaded.notes))
        kwargs["reward_funcs"] = reward_funcs
    else:
        defaults["max_length"] = cfg.model.max_seq_length
    if method in ("dpo", "kto") and cfg.rlhf.reference_model:
        kwargs["ref_model"] = load_reference_model(cfg, cfg.rlhf.reference_model, "rlhf.reference_model")
    args = build_args(cfg, config_cls, stage_dir, **defaults)
    return stage_trainer(trainer_cls, generates=method == "grpo")(
        model=loaded.model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=loaded.tokenizer,
        **kwargs,
    )


def _run(ctx: StageContext) -> Manifest:
    cfg = ctx.cfg
    packing.check_options(cfg)  # before the data is read and any model loads (build_trainer checks again for bench)
    method = cfg.rlhf.method
    rejects = RejectLog()
    rows = training_rows(cfg, rejects)
    ctx.record_rejects(rejects, f"rlhf ({method}) data")
    rewards = build_rewards(cfg.rlhf.rewards) if method == "grpo" else ([], [])  # fails before the model loads
    loaded = load_for_training(cfg, init_point(cfg))
    trainer = build_trainer(cfg, loaded, rows, ctx.dir, rewards)
    write_config_snapshot(cfg, ctx.dir)
    summary = train(trainer, cfg, ctx.dir, ctx.metrics, ctx.lock)
    drop_reference_adapter(trainer.model)
    return training_manifest(
        ctx,
        trainer,
        loaded,
        rejects,
        summary,
        metrics={**rlhf_metrics(trainer.state.log_history), "examples": len(rows)},
        extra={
            "method": method,
            "padding_free": packing.PREFERENCE_PADDING,
            "reference": reference_kind(cfg, trainer.args),
            "rewards": [r.model_dump() for r in cfg.rlhf.rewards] if method == "grpo" else [],
        },
    )


def main(config: StageConfig) -> Manifest:
    """python -m korean_llm rlhf --config /etc/korean-llm/rlhf.yaml"""
    return execute(config, _run)
