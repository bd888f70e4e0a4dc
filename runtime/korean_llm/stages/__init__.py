"""The pipeline stages, each `korean_llm.stages.<stage>` with `main(config)`; their commands for the CLI.

A stage with helpers of its own is a package (`preprocess/`: cleaning, chats; `evaluate/`: inputs, scoring,
gate and report; `rlhf/`: rewards); `cpt`, `sft` and `deploy` are single modules.
"""

from __future__ import annotations

import argparse
import importlib
import os

from korean_llm.command import Command, add_overrides
from korean_llm.config import STAGES, load_config
from korean_llm.errors import ConfigError


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
    module.main(cfg)
    return 0


def _stage_from_env(args: argparse.Namespace) -> int:
    stage = os.environ.get("STAGE") or load_config(args.config, args.overrides).stage
    if stage not in STAGES:
        raise ConfigError(f"STAGE='{stage}': expected one of {', '.join(STAGES)}")
    return run_stage(stage, args.config, args.overrides)


def _stage_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", required=True, help="stage config YAML (the chart's ConfigMap entry)")
    add_overrides(p, "training.max_steps=10")


def _runner(stage: str) -> Command:
    return Command(
        stage,
        f"run the {stage} stage",
        _stage_arguments,
        lambda args: run_stage(stage, args.config, args.overrides),
    )


def commands() -> list[Command]:
    """`korean-llm <stage> --config FILE` for every stage, and `korean-llm stage` (the stage in $STAGE)."""
    return [
        *(_runner(stage) for stage in STAGES),
        Command("stage", "run the stage in $STAGE", _stage_arguments, _stage_from_env),
    ]
