"""The pipeline stages, each `korean_llm.stages.<stage>` with `main(config)`; their commands for the CLI.

A stage with helpers of its own is a package (`preprocess/`: cleaning, chats; `evaluate/`: inputs, scoring,
gate and report; `rlhf/`: rewards); `cpt`, `sft` and `deploy` are single modules.
"""

from __future__ import annotations

import argparse
import importlib
import os
from pathlib import Path

from korean_llm.command import Command, add_overrides
from korean_llm.config import STAGES, StageConfig, load_config
from korean_llm.errors import ConfigError, KoreanLLMError
from korean_llm.pipeline.diskspace import disk_full


def run_stage(stage: str, config_path: str, overrides: list[str]) -> int:
    cfg = load_config(config_path, overrides)
    if cfg.stage != stage:
        raise ConfigError(f"{config_path}: key 'stage' is '{cfg.stage}' but the command runs '{stage}'")
    try:
        module = importlib.import_module(f"korean_llm.stages.{stage}")
    except ModuleNotFoundError as exc:
        if exc.name == f"korean_llm.stages.{stage}":
            raise ConfigError(f"stage '{stage}' is not available in this version of korean-llm") from None
        raise
    try:
        module.main(cfg)
    except KoreanLLMError:
        raise
    except Exception as exc:  # a full volume anywhere (data, checkpoint, manifest, release) is reported as such
        full = disk_full(exc, write_targets(cfg))
        if full is not None:
            raise full from exc
        raise
    return 0


def write_targets(cfg: StageConfig) -> list[Path]:
    """Where a stage writes, the main place first (named when a full volume's error carries no file name)."""
    work = cfg.run.output_dir / f"{cfg.stage}.partial"
    if cfg.stage == "preprocess":
        return [cfg.run.data_dir, work]
    if cfg.stage == "deploy":
        return [cfg.run.output_root / cfg.run.model_name / "releases", work]
    return [work, cfg.run.data_dir]


def _with_lock_wait(args: argparse.Namespace) -> list[str]:
    return [*args.overrides, *(["lock.wait=true"] if args.wait_lock else [])]


def _stage_from_env(args: argparse.Namespace) -> int:
    overrides = _with_lock_wait(args)
    stage = os.environ.get("STAGE") or load_config(args.config, overrides).stage
    if stage not in STAGES:
        raise ConfigError(f"STAGE='{stage}': expected one of {', '.join(STAGES)}")
    return run_stage(stage, args.config, overrides)


def _stage_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", required=True, help="stage config YAML (the chart's ConfigMap entry)")
    add_overrides(p, "training.max_steps=10")
    p.add_argument(
        "--wait-lock",
        action="store_true",
        help="wait for another process working on this stage (lock.wait) instead of refusing with exit 2",
    )


def _runner(stage: str) -> Command:
    return Command(
        stage,
        f"run the {stage} stage",
        _stage_arguments,
        lambda args: run_stage(stage, args.config, _with_lock_wait(args)),
    )


def commands() -> list[Command]:
    """`korean-llm <stage> --config FILE` for every stage, and `korean-llm stage` (the stage in $STAGE)."""
    return [
        *(_runner(stage) for stage in STAGES),
        Command("stage", "run the stage in $STAGE", _stage_arguments, _stage_from_env),
    ]
