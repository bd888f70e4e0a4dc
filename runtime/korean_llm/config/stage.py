"""The whole configuration of one stage process."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from korean_llm.config.base import Stage, Strict
from korean_llm.config.data import DataConfig
from korean_llm.config.deploy import DeployConfig
from korean_llm.config.evaluate import EvaluateConfig
from korean_llm.config.observe import MetricsConfig, TrackingConfig
from korean_llm.config.preprocess import PreprocessConfig
from korean_llm.config.rlhf import RlhfConfig
from korean_llm.config.run import CheckpointConfig, DistributedConfig, LoraConfig, ModelConfig, RunConfig
from korean_llm.config.train import CptConfig, SftConfig


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
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    cpt: CptConfig = Field(default_factory=CptConfig)
    sft: SftConfig = Field(default_factory=SftConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    deploy: DeployConfig = Field(default_factory=DeployConfig)
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    rlhf: RlhfConfig = Field(default_factory=RlhfConfig)

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
        evaluate = [*self.evaluate.perplexity, *self.evaluate.tasks, *self.evaluate.prompts]
        for source in [*self.data.sources, *self.preprocess.all_sources, *evaluate]:
            expanded = self.expand(source.path)
            if expanded != source.path:
                object.__setattr__(source, "path", expanded)
        return self
