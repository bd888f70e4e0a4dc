"""The whole configuration of one stage process."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from korean_llm.config.base import Stage, Strict
from korean_llm.config.data import DataConfig, DataSource
from korean_llm.config.deploy import DeployConfig
from korean_llm.config.evaluate import EvaluateConfig
from korean_llm.config.mapping import check_kind
from korean_llm.config.observe import MetricsConfig, TrackingConfig
from korean_llm.config.preprocess import PreprocessConfig
from korean_llm.config.rlhf import RlhfConfig
from korean_llm.config.run import CheckpointConfig, DistributedConfig, LockConfig, LoraConfig, ModelConfig, RunConfig
from korean_llm.config.train import CptConfig, SftConfig, VocabConfig
from korean_llm.errors import ConfigError

# Every list of data sources in a stage config: (section, key); section "" is the top level.
SOURCE_LISTS = (
    ("data", "sources"),
    ("preprocess", "cpt_sources"),
    ("preprocess", "sft_sources"),
    ("preprocess", "preference_sources"),
    ("evaluate", "perplexity"),
    ("evaluate", "tasks"),
    ("evaluate", "prompts"),
    ("vocab", "fertility_sources"),
)


def _resolve_source(entry: Any, registry: dict[str, Any], where: str) -> Any:
    if isinstance(entry, str):
        entry = {"dataset": entry}
    if not isinstance(entry, dict) or "dataset" not in entry or "path" in entry:
        return entry
    name = entry["dataset"]
    if name not in registry:
        known = ", ".join(sorted(registry)) or "none"
        raise ValueError(f"{where}: unknown dataset '{name}' (datasets: {known})")
    base = registry[name]
    if not isinstance(base, dict):
        return entry
    return {**base, **entry, "dataset": name}


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
    lock: LockConfig = Field(default_factory=LockConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    cpt: CptConfig = Field(default_factory=CptConfig)
    sft: SftConfig = Field(default_factory=SftConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    deploy: DeployConfig = Field(default_factory=DeployConfig)
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    rlhf: RlhfConfig = Field(default_factory=RlhfConfig)
    vocab: VocabConfig = Field(default_factory=VocabConfig)

    # Named data sets (path or hf: id, format, split, mapping, encoding, max rows) that source lists refer to by name.
    datasets: dict[str, DataSource] = Field(default_factory=dict)

    # Not part of the schema: where the config came from, for error messages.
    source: str = Field("<inline>", exclude=True)

    def fingerprint(self) -> str:
        """Hash of the resolved config (paths of this run excluded would hide real changes: keep them)."""
        # `lock` only says how to wait for another process, not what is computed: it stays out of the hash.
        payload = json.dumps(self.model_dump(mode="json", exclude={"lock"}), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    @property
    def stage_folder(self) -> str:
        """Folder of this stage under the run's output: `evaluations/<name>` for a named evaluation."""
        if self.stage == "evaluate" and self.evaluate.name:
            return f"evaluations/{self.evaluate.name}"
        return self.stage

    @property
    def stage_dir(self) -> Path:
        return self.run.output_dir / self.stage_folder

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

    @model_validator(mode="before")
    @classmethod
    def _resolve_datasets(cls, data: Any) -> Any:
        """Replace `{dataset: NAME, ...}` (or `NAME`) in every source list by the registry entry NAME."""
        if not isinstance(data, dict):
            return data
        registry = data.get("datasets") or {}
        if not isinstance(registry, dict):
            return data
        for section, key in SOURCE_LISTS:
            block = data.get(section) if section else data
            if not isinstance(block, dict) or not isinstance(block.get(key), list):
                continue
            block[key] = [
                _resolve_source(entry, registry, f"{section}.{key}.{i}") for i, entry in enumerate(block[key])
            ]
        return data

    @model_validator(mode="after")
    def _mapping_fits_rows(self) -> StageConfig:
        """A mapping key that the stage's kind of rows does not read is a config error, before any data is read."""
        kinds: list[tuple[str, str, list[DataSource]]] = [
            ("preprocess.cpt_sources", "text", self.preprocess.cpt_sources),
            ("preprocess.sft_sources", "chat", self.preprocess.sft_sources),
            ("preprocess.preference_sources", "preference", self.preprocess.preference_sources),
            ("evaluate.perplexity", "text", self.evaluate.perplexity),
            ("evaluate.tasks", "task", self.evaluate.tasks),
            ("evaluate.prompts", "prompt", self.evaluate.prompts),
            ("vocab.fertility_sources", "text", self.vocab.fertility_sources),
        ]
        data_kind = {"vocab": "text", "cpt": "text", "sft": "chat"}.get(self.stage)
        if self.stage == "rlhf":
            data_kind = {"dpo": "preference", "orpo": "preference", "kto": "kto", "grpo": "prompt"}[self.rlhf.method]
        if data_kind is not None:
            kinds.append(("data.sources", data_kind, self.data.sources))
        for where, kind, sources in kinds:
            for i, source in enumerate(sources):
                try:
                    check_kind(source.mapping, kind, f"key '{where}.{i}.mapping'")
                except ConfigError as exc:
                    raise ValueError(str(exc)) from None
        return self

    @model_validator(mode="after")
    def _expand_source_paths(self) -> StageConfig:
        # Paths such as "{data_dir}/processed/cpt" depend on the run id, which Argo passes at submit time.
        evaluate = [*self.evaluate.perplexity, *self.evaluate.tasks, *self.evaluate.prompts]
        every = [*self.data.sources, *self.preprocess.all_sources, *evaluate, *self.vocab.fertility_sources]
        for source in [*every, *self.datasets.values()]:
            expanded = self.expand(source.path)
            if expanded != source.path:
                object.__setattr__(source, "path", expanded)
        return self
