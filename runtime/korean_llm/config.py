"""Typed stage configuration: one YAML file per stage, rendered by the chart into a ConfigMap.

Precedence, lowest first: the YAML file, the seed's environment names (`STAGE`, `MODEL_SIZE`,
`BASE_MODEL_PATH`, `WANDB_PROJECT`), then `--set key.sub=value` on the command line.
Every key is checked: an unknown one is an error naming the key and the file.
The `training:` block is handed to TRL's own config class for the stage, so every TRL /
transformers training argument works; its keys are checked against that class when the stage starts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from korean_llm.errors import ConfigError

STAGES = ("preprocess", "cpt", "sft", "rlhf", "evaluate", "deploy")
Stage = Literal["preprocess", "cpt", "sft", "rlhf", "evaluate", "deploy"]

# MODEL_SIZE (the seed's switch) picks a base model when none is named explicitly.
SIZE_TO_BASE_MODEL = {
    "0.5b": "Qwen/Qwen2.5-0.5B",
    "1.5b": "Qwen/Qwen2.5-1.5B",
    "3b": "Qwen/Qwen2.5-3B",
    "7b": "Qwen/Qwen2.5-7B",
    "14b": "Qwen/Qwen2.5-14B",
    "32b": "Qwen/Qwen2.5-32B",
    "72b": "Qwen/Qwen2.5-72B",
}

DEFAULT_SYSTEM_PROMPT = "당신은 정확하고 친절한 한국어 AI 어시스턴트입니다. 질문에 한국어로 명확하게 답하세요."


class Strict(BaseModel):
    """Base for every section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RunConfig(Strict):
    """Where this run lives: `<data_root>/<model_name>/<run_id>` and `<output_root>/<model_name>/<run_id>`.

    The chart fills these; Argo passes the run id as a workflow parameter (`--set run.run_id=...`).
    """

    model_name: str = Field("tiny-ko", pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    run_id: str = Field("local", pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
    data_root: Path = Path("/data")
    output_root: Path = Path("/output")
    # The stage whose manifest this stage starts from (the chart re-wires it when stages are disabled).
    previous_stage: Stage | None = None
    seed: int = 42

    @property
    def data_dir(self) -> Path:
        return self.data_root / self.model_name / self.run_id

    @property
    def output_dir(self) -> Path:
        return self.output_root / self.model_name / self.run_id

    def stage_dir(self, stage: str) -> Path:
        return self.output_dir / stage


class ModelConfig(Strict):
    """Which weights to start from and how to load them."""

    base_model: str | None = None
    size: str | None = None
    backend: Literal["auto", "unsloth", "hf"] = "auto"
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    max_seq_length: int = Field(2048, ge=16)
    revision: str | None = None
    trust_remote_code: bool = False
    attn_implementation: str | None = None

    @model_validator(mode="after")
    def _resolve_base(self) -> ModelConfig:
        if self.base_model is None and self.size is not None:
            if self.size.lower() not in SIZE_TO_BASE_MODEL:
                raise ValueError(
                    f"unknown model.size '{self.size}': expected one of {', '.join(SIZE_TO_BASE_MODEL)} "
                    "or set model.base_model"
                )
            object.__setattr__(self, "base_model", SIZE_TO_BASE_MODEL[self.size.lower()])
        if self.base_model is None:
            raise ValueError("model.base_model (a hub id or a path) or model.size is required")
        return self


class LoraConfig(Strict):
    """Adapter settings. `method: full` trains every weight; `qlora` loads the base in 4 bits (CUDA only)."""

    method: Literal["lora", "qlora", "full"] = "lora"
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    use_rslora: bool = False
    # Unsloth's continued-pretraining recipe: also train embed_tokens and lm_head, with their own (smaller) lr.
    train_embeddings: bool = False
    embedding_learning_rate: float | None = Field(None, gt=0)


class DataSource(Strict):
    """One input: a file, folder, glob, `hf:<dataset id>` or `builtin:<name>`."""

    path: str
    format: Literal["auto", "jsonl", "json", "parquet", "csv", "text"] = "auto"
    text_field: str = "text"
    split: str = "train"
    max_rows: int | None = Field(None, ge=1)


class DataConfig(Strict):
    """Inputs of the stage and how strictly to treat bad rows."""

    sources: list[DataSource] = Field(default_factory=list)
    # The stage fails (exit 2) when more than this share of rows is rejected.
    max_rejected_fraction: float = Field(0.1, ge=0.0, le=1.0)
    invalid_utf8: Literal["reject", "replace"] = "reject"


class TrackingConfig(Strict):
    """Experiment trackers (korean_llm/tracking.py): MLflow and W&B, each optional, both usable at once.

    Credentials never live here: W&B reads `WANDB_API_KEY`, MLflow `MLFLOW_TRACKING_TOKEN` or
    `MLFLOW_TRACKING_USERNAME`/`MLFLOW_TRACKING_PASSWORD` from the environment (the chart fills them from Secrets).
    A backend that is down costs one warning and is then off for the rest of the stage; training goes on.
    """

    # W&B is used only when WANDB_API_KEY is set (mode auto) or the mode says online/offline.
    wandb_project: str | None = None  # None: "korean-llm"
    wandb_entity: str | None = None
    wandb_mode: Literal["auto", "online", "offline", "disabled"] = "auto"
    # None: $MLFLOW_TRACKING_URI (the local runner sets a sqlite store under runs/<run-id>/mlruns); neither: MLflow off.
    mlflow_tracking_uri: str | None = None
    mlflow_experiment: str = Field("korean-llm", min_length=1)
    # Model registry name for the deploy stage's release; None: run.model_name.
    registered_model_name: str | None = Field(None, min_length=1)
    # First contact (experiment lookup, run creation): short, no retries, so an unreachable server costs seconds.
    connect_timeout_seconds: float = Field(5.0, gt=0)
    # Every later request (metrics, artifacts) runs in a background thread and never blocks a training step.
    request_timeout_seconds: float = Field(10.0, gt=0)
    request_max_retries: int = Field(1, ge=0)
    # End of the stage: how long to wait for queued metrics and artifact uploads before dropping them.
    flush_timeout_seconds: float = Field(60.0, gt=0)
    # Top-level files of the finished stage folder (manifest, log history, reports) up to this size become artifacts.
    artifact_max_mb: float = Field(20.0, ge=0)


class MetricsConfig(Strict):
    """Prometheus exporter of the stage process (`/metrics`)."""

    enabled: bool = True
    port: int = Field(9400, ge=0, le=65535)  # 0: any free port (tests, several stages on one host)
    host: str = "0.0.0.0"


class CheckpointConfig(Strict):
    """Resume behaviour; the save interval itself is `training.save_steps`."""

    resume: bool = True
    keep_after_success: bool = False


class CptConfig(Strict):
    """Continued pre-training: raw text packed into fixed-length blocks, loss on every token."""

    block_size: int | None = Field(None, ge=16)  # default: model.max_seq_length
    # Token appended after every document; None: `<|endoftext|>` when the tokenizer has it, else its eos.
    document_separator: str | None = None
    num_proc: int = Field(1, ge=1)  # tokenizer workers


class SftConfig(Strict):
    """Supervised fine-tuning on chats: loss only on assistant tokens."""

    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
    packing: bool = False
    assistant_only_loss: bool = True


class StageConfig(Strict):
    """The whole configuration of one stage process."""

    stage: Stage
    run: RunConfig = Field(default_factory=RunConfig)
    model: ModelConfig = Field(default_factory=lambda: ModelConfig(base_model="builtin:tiny-ko"))
    lora: LoraConfig = Field(default_factory=LoraConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    training: dict[str, Any] = Field(default_factory=dict)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    cpt: CptConfig = Field(default_factory=CptConfig)
    sft: SftConfig = Field(default_factory=SftConfig)

    # Not part of the schema: where the config came from, for error messages.
    source: str = Field("<inline>", exclude=True)

    def fingerprint(self) -> str:
        """Hash of the resolved config (paths of this run excluded would hide real changes: keep them)."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    @property
    def stage_dir(self) -> Path:
        return self.run.stage_dir(self.stage)

    def expand(self, text: str) -> str:
        """Fill `{data_dir}`, `{output_dir}`, `{model_name}`, `{run_id}` in a path from this run's settings."""
        for key, value in (
            ("{data_dir}", self.run.data_dir),
            ("{output_dir}", self.run.output_dir),
            ("{model_name}", self.run.model_name),
            ("{run_id}", self.run.run_id),
        ):
            text = text.replace(key, str(value))
        return text

    @model_validator(mode="after")
    def _expand_source_paths(self) -> StageConfig:
        # Paths such as "{data_dir}/processed/cpt" depend on the run id, which Argo passes at submit time.
        for source in self.data.sources:
            expanded = self.expand(source.path)
            if expanded != source.path:
                object.__setattr__(source, "path", expanded)
        return self


ENV_OVERRIDES = {
    "STAGE": "stage",
    "MODEL_SIZE": "model.size",
    "BASE_MODEL_PATH": "model.base_model",
    "WANDB_PROJECT": "tracking.wandb_project",
}


def parse_set(expr: str) -> tuple[str, Any]:
    """`a.b=value` → ("a.b", value), the value read as YAML (numbers, booleans, lists)."""
    if "=" not in expr:
        raise ConfigError(f"--set {expr!r}: expected key.sub=value")
    key, raw = expr.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {expr!r}: the key is empty")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set '{dotted}': '{part}' holds {type(child).__name__}, not a mapping")
        node = child
    node[parts[-1]] = value


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = []
    for item in err.errors():
        loc = ".".join(str(p) for p in item["loc"]) or "<root>"
        if item["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown key '{loc}'")
        else:
            found = item.get("input")
            shown = json.dumps(found, ensure_ascii=False, default=str)
            if len(shown) > 80:
                shown = shown[:77] + "..."
            lines.append(f"{source}: key '{loc}': {item['msg']} (found {shown})")
    return "\n".join(lines)


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, found {type(data).__name__}")
    return data


def build_config(
    data: Mapping[str, Any],
    *,
    source: str = "<inline>",
    overrides: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> StageConfig:
    """Apply env then `--set` overrides to `data` and validate it into a StageConfig."""
    merged: dict[str, Any] = json.loads(json.dumps(dict(data), default=str))
    environ = os.environ if env is None else env
    for name, key in ENV_OVERRIDES.items():
        if environ.get(name):
            value = environ[name]
            if name == "MODEL_SIZE" and not environ.get("BASE_MODEL_PATH"):
                # The size only decides the base model when no path is given explicitly.
                merged.setdefault("model", {})["base_model"] = None
            set_path(merged, key, value)
    for expr in overrides:
        set_path(merged, *parse_set(expr))
    try:
        cfg = StageConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None
    cfg.source = source
    return cfg


def load_config(path: str | Path, overrides: Sequence[str] = (), env: Mapping[str, str] | None = None) -> StageConfig:
    """Read a stage config file; see the module docstring for precedence."""
    path = Path(path)
    return build_config(read_yaml(path), source=str(path), overrides=overrides, env=env)


def check_training_keys(cfg: StageConfig, config_class: type) -> None:
    """Fail with the file and key when `training:` holds something the TRL config class does not know."""
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(cfg.training) - known)
    if unknown:
        raise ConfigError(
            f"{cfg.source}: unknown key 'training.{unknown[0]}' for {config_class.__name__} "
            f"(stage {cfg.stage}); see the TRL documentation of {config_class.__name__} for valid arguments"
        )
