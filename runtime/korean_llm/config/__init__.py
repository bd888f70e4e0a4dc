"""Typed stage configuration: one YAML file per stage, rendered by the chart into a ConfigMap.

One pydantic module per concern (`run`, `data`, `observe`, one per stage section, `stage` for the whole file);
`loading` reads YAML and applies the overrides.

Precedence, lowest first: the YAML file, the environment (`STAGE`, `MODEL_SIZE`,
`BASE_MODEL_PATH`, `WANDB_PROJECT`), then `--set key.sub=value` on the command line.
Every key is checked: an unknown one is an error naming the key and the file.
The `training:` block is handed to TRL's own config class for the stage, so every TRL /
transformers training argument works; its keys are checked against that class when the stage starts.
"""

from korean_llm.config.base import DEFAULT_SYSTEM_PROMPT, STAGES, Stage, Strict
from korean_llm.config.data import DataConfig, DataSource
from korean_llm.config.deploy import DeployConfig
from korean_llm.config.evaluate import EvaluateConfig, GateConfig
from korean_llm.config.loading import (
    ENV_OVERRIDES,
    build_config,
    check_training_keys,
    load_config,
    parse_set,
    read_yaml,
    set_path,
    yaml_load,
)
from korean_llm.config.observe import MetricsConfig, TrackingConfig
from korean_llm.config.preprocess import CleaningConfig, DedupConfig, PiiConfig, PiiType, PreprocessConfig
from korean_llm.config.rlhf import (
    FormatRewardConfig,
    KoreanRewardConfig,
    LengthRewardConfig,
    PythonRewardConfig,
    RewardConfig,
    RlhfConfig,
)
from korean_llm.config.run import (
    SIZE_TO_BASE_MODEL,
    CheckpointConfig,
    DistributedConfig,
    LoraConfig,
    ModelConfig,
    RunConfig,
)
from korean_llm.config.stage import StageConfig
from korean_llm.config.train import CptConfig, SftConfig

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "ENV_OVERRIDES",
    "SIZE_TO_BASE_MODEL",
    "STAGES",
    "CheckpointConfig",
    "CleaningConfig",
    "CptConfig",
    "DataConfig",
    "DataSource",
    "DedupConfig",
    "DeployConfig",
    "DistributedConfig",
    "EvaluateConfig",
    "FormatRewardConfig",
    "GateConfig",
    "KoreanRewardConfig",
    "LengthRewardConfig",
    "LoraConfig",
    "MetricsConfig",
    "ModelConfig",
    "PiiConfig",
    "PiiType",
    "PreprocessConfig",
    "PythonRewardConfig",
    "RewardConfig",
    "RlhfConfig",
    "RunConfig",
    "SftConfig",
    "Stage",
    "StageConfig",
    "Strict",
    "TrackingConfig",
    "build_config",
    "check_training_keys",
    "load_config",
    "parse_set",
    "read_yaml",
    "set_path",
    "yaml_load",
]
