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
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from korean_llm.errors import ConfigError
from korean_llm.mapping import FieldMapping, check_kind

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
    """One input: a file, folder, glob, `hf:<dataset id>` or `builtin:<name>`.

    In a source list, `{dataset: NAME}` (or just `NAME`) takes the entry NAME of the top-level
    `datasets:` registry; keys given next to it override the registry's.
    """

    path: str
    format: Literal["auto", "jsonl", "json", "parquet", "csv", "text"] = "auto"
    text_field: str = "text"
    split: str = "train"
    max_rows: int | None = Field(None, ge=1)
    # auto: a UTF-8 BOM, else UTF-8, falling back to CP949 when the first non-ASCII line is not UTF-8
    # (korean_llm/readers.py).
    encoding: Literal["auto", "utf-8", "utf-8-sig", "cp949", "euc-kr"] = "auto"
    # Where the stage's fields come from in these rows (korean_llm/mapping.py); None: the rows already use them.
    mapping: FieldMapping | None = None
    # JSON files whose records sit inside the document: dotted path of the list (e.g. "data.items").
    records: str | None = None
    # Registry name this source came from (set when it is resolved; shown by `korean-llm data inspect`).
    dataset: str | None = None


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


class DistributedConfig(Strict):
    """Multi-process training under torchrun (the PyTorchJob launch). One process per GPU.

    `ddp` replicates the model (LoRA / QLoRA, or full fine-tuning that fits one GPU); `fsdp` shards
    parameters, gradients and optimizer state for full fine-tuning of models that do not fit one
    GPU (HF backend only: Unsloth does not run under FSDP).
    """

    strategy: Literal["ddp", "fsdp"] = "ddp"
    fsdp_version: Literal[1, 2] = 2
    # Decoder layer class to wrap; None: the model's `_no_split_modules` (e.g. Qwen2DecoderLayer).
    fsdp_wrap_layer: str | None = None
    fsdp_cpu_offload: bool = False


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


class GateConfig(Strict):
    """What a candidate must reach to be released; a check left unset (null) is not applied.

    Regression limits compare the candidate with the baseline measured in the same run.
    """

    max_perplexity: float | None = Field(None, gt=0)
    # Task name (the task file's stem, or an lm-eval task name) -> lowest accuracy accepted; "*" applies to every task.
    min_accuracy: dict[str, float] = Field(default_factory=dict)
    # Share of generated answers that are Korean (see evaluate.korean_threshold).
    min_korean_share: float | None = Field(None, ge=0.0, le=1.0)
    # Largest accepted drop in accuracy per task, in absolute points (0.05 = five points), against the baseline.
    max_accuracy_drop: float | None = Field(None, ge=0.0, le=1.0)
    # Largest accepted candidate/baseline perplexity ratio (1.1 = at most 10% worse).
    max_perplexity_ratio: float | None = Field(None, gt=0)
    max_korean_share_drop: float | None = Field(None, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _accuracies_in_range(self) -> GateConfig:
        for task, value in self.min_accuracy.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"gate.min_accuracy.{task} is {value}: expected a share between 0 and 1")
        return self


class EvaluateConfig(Strict):
    """Korean evaluation of the previous stage's model against a baseline, with a release gate.

    Task files are JSONL rows `{"question", "choices", "answer", "context"?}` (answer: 0-based index
    into choices); each file is one task named by its stem. Prompt files are JSONL rows `{"prompt"}`.
    """

    # A named evaluation writes `<output>/<model>/<run>/evaluations/<name>/` instead of `evaluate/`, so a trained
    # model can be evaluated again on other data without touching the pipeline's own evaluation (deploy reads that).
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
    # Held-out text for perplexity (`text_field` of each row, or whole text files).
    perplexity: list[DataSource] = Field(default_factory=list)
    perplexity_max_tokens: int = Field(20000, ge=16)  # stop after this many scored tokens (bounds the cost)
    tasks: list[DataSource] = Field(default_factory=list)
    prompts: list[DataSource] = Field(default_factory=list)
    prompt_field: str = "prompt"
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
    max_new_tokens: int = Field(64, ge=1)
    # An answer counts as Korean when Hangul is at least this share of its letters.
    korean_threshold: float = Field(0.5, ge=0.0, le=1.0)
    # lm-evaluation-harness task names (kobest_*, kmmlu, haerae_*): run only when lm_eval imports and its data loads.
    lm_eval_tasks: list[str] = Field(default_factory=list)
    lm_eval_limit: int | None = Field(None, ge=1)  # items per harness task (None: all)
    # base: model.base_model; release: <output_root>/<model>/releases/current (base when none yet);
    # none: no baseline; anything else: a model folder.
    baseline: str = "base"
    batch_size: int = Field(8, ge=1)
    gate: GateConfig = Field(default_factory=GateConfig)


class DeployConfig(Strict):
    """Merge, verify and publish the evaluated model as `<output_root>/<model>/releases/<version>/`."""

    version: str | None = Field(None, pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")  # None: the run id
    dtype: Literal["bfloat16", "float16"] = "bfloat16"
    # Max difference accepted between the merged and the adapter model's logits (float32) and between the saved
    # and the in-memory 16-bit weights. 16-bit rounding itself is reported, not limited: it grows with depth.
    merge_tolerance: float = Field(0.01, gt=0)
    keep_releases: int = Field(3, ge=1)
    # auto: export when a converter is found; required: fail without one; off: never.
    gguf: Literal["auto", "required", "off"] = "auto"
    gguf_converter: str | None = None  # path of llama.cpp's convert_hf_to_gguf.py (default: looked up on PATH)
    gguf_outtype: str = "f16"


PiiType = Literal["RRN", "PHONE", "EMAIL", "CARD", "ACCOUNT"]


class CleaningConfig(Strict):
    """Per-document cleaning of CPT text, in this order; every step is counted in `stats.json`."""

    nfc: bool = True
    remove_invisible: bool = True  # control, zero-width, BOM, soft-hyphen and bidi characters
    normalize_whitespace: bool = True
    # One sentence per line with kss; skipped with a warning when kss is not installed (it is not a dependency).
    split_sentences: bool = False
    min_chars: int = Field(50, ge=0)
    max_chars: int | None = Field(1_000_000, ge=1)
    # Share of Hangul among letters (digits and punctuation do not count); 0 keeps everything.
    min_hangul_ratio: float = Field(0.3, ge=0.0, le=1.0)
    # Share of characters in lines that repeat an earlier line (menus, boilerplate); 1 keeps everything.
    max_duplicate_line_fraction: float = Field(0.3, ge=0.0, le=1.0)
    # Share of character n-grams seen earlier in the same document; Korean statutes reach ~0.25 at n=10,
    # spam ("ㅋㅋㅋ", copy-pasted lines) > 0.6. 1 keeps everything.
    max_repeated_ngram_fraction: float = Field(0.5, ge=0.0, le=1.0)
    repetition_ngram: int = Field(10, ge=2)

    @model_validator(mode="after")
    def _lengths(self) -> CleaningConfig:
        if self.max_chars is not None and self.max_chars < self.min_chars:
            raise ValueError(f"max_chars ({self.max_chars}) is below min_chars ({self.min_chars})")
        return self


class PiiConfig(Strict):
    """Masking of personal data with typed placeholders such as `<PHONE>`."""

    enabled: bool = True
    types: list[PiiType] = Field(default_factory=lambda: ["RRN", "PHONE", "EMAIL", "CARD", "ACCOUNT"])
    # Also mask SFT and preference message contents (not only CPT text).
    apply_to_chats: bool = True


class DedupConfig(Strict):
    """Exact (hash of the cleaned text) and near-duplicate (MinHash LSH on character shingles) removal."""

    exact: bool = True
    near: bool = True
    # Estimated Jaccard similarity of character shingle sets above which a later document is dropped.
    threshold: float = Field(0.8, gt=0.0, lt=1.0)
    num_perm: int = Field(128, ge=16, le=1024)
    # Characters per shingle: Korean word spacing is unreliable, so shingles are characters, not words.
    shingle_size: int = Field(5, ge=1)
    seed: int = 1


class PreprocessConfig(Strict):
    """The preprocess stage: which inputs are CPT text, SFT chats and preference pairs, and how to clean them.

    Output goes to `<run.data_dir>/processed/` (cpt/, sft/{train,eval}/, preference/{train,eval}/).
    """

    cpt_sources: list[DataSource] = Field(default_factory=list)
    sft_sources: list[DataSource] = Field(default_factory=list)
    preference_sources: list[DataSource] = Field(default_factory=list)
    cleaning: CleaningConfig = Field(default_factory=CleaningConfig)
    pii: PiiConfig = Field(default_factory=PiiConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    # Worker processes for CPT cleaning; the output is identical for any value (dedup runs in input order).
    num_proc: int = Field(1, ge=1)
    batch_size: int = Field(256, ge=1)  # documents per worker task
    shard_size_mb: float = Field(256.0, gt=0)  # UTF-8 text per parquet shard before a new one starts
    # Share of SFT / preference rows put in the eval split, chosen by a hash of the row (stable across runs).
    eval_fraction: float = Field(0.05, ge=0.0, lt=1.0)

    @property
    def all_sources(self) -> list[DataSource]:
        return [*self.cpt_sources, *self.sft_sources, *self.preference_sources]


class KoreanReward(Strict):
    """Share of Hangul among the letters of the answer; answers mostly in another language are penalised.

    LogicKor gives an answer that is not in Korean no points whatever its content: below
    `min_hangul_share` the reward drops by `penalty`.
    """

    type: Literal["korean"] = "korean"
    weight: float = 1.0
    min_hangul_share: float = Field(0.5, ge=0.0, le=1.0)
    penalty: float = Field(1.0, ge=0.0)


class LengthReward(Strict):
    """1 inside [min_chars, max_chars] (characters of the answer), falling off linearly outside."""

    type: Literal["length"] = "length"
    weight: float = 1.0
    min_chars: int = Field(20, ge=0)
    max_chars: int = Field(400, ge=1)

    @model_validator(mode="after")
    def _range(self) -> LengthReward:
        if self.min_chars > self.max_chars:
            raise ValueError(f"min_chars ({self.min_chars}) is above max_chars ({self.max_chars})")
        return self


class FormatReward(Strict):
    """1 when the answer matches `pattern` (Python regex, `re.search`, DOTALL), else 0."""

    type: Literal["format"] = "format"
    weight: float = 1.0
    pattern: str

    @model_validator(mode="after")
    def _compiles(self) -> FormatReward:
        import re

        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"pattern {self.pattern!r} is not a valid regular expression: {exc}") from None
        return self


class PythonReward(Strict):
    """A user reward `package.module:function` with TRL's signature (prompts, completions, **kwargs) -> list[float]."""

    type: Literal["python"] = "python"
    weight: float = 1.0
    function: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


Reward = Annotated[KoreanReward | LengthReward | FormatReward | PythonReward, Field(discriminator="type")]


class RlhfConfig(Strict):
    """Preference tuning after SFT: DPO (default), ORPO, KTO, or GRPO with reward functions."""

    method: Literal["dpo", "orpo", "kto", "grpo"] = "dpo"
    # A frozen reference model (path or hub id) for DPO/KTO. None: no second model in memory; TRL takes the
    # policy with its LoRA adapter disabled, or a frozen copy of the adapter the stage continues (the SFT policy).
    reference_model: str | None = None
    # Added as the system turn of prompts that have none, as the SFT stage does, so prompts look like SFT's.
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
    # GRPO only: the reward functions, summed with their weights (GRPOConfig.reward_weights).
    rewards: list[Reward] = Field(default_factory=lambda: [KoreanReward()])
    # GRPO only: generate with vLLM (colocated) when it is installed and CUDA is present; else with the model.
    use_vllm: bool = False

    @model_validator(mode="after")
    def _method_options(self) -> RlhfConfig:
        if self.reference_model is not None and self.method not in ("dpo", "kto"):
            raise ValueError(f"reference_model is used by dpo and kto only; method is {self.method}")
        if self.method == "grpo" and not self.rewards:
            raise ValueError("method grpo needs at least one entry in rewards")
        return self


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

    # Named data sets (path or hf: id, format, split, mapping, encoding, max rows) that source lists refer to by name.
    datasets: dict[str, DataSource] = Field(default_factory=dict)

    # Not part of the schema: where the config came from, for error messages.
    source: str = Field("<inline>", exclude=True)

    def fingerprint(self) -> str:
        """Hash of the resolved config (paths of this run excluded would hide real changes: keep them)."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
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
        ]
        data_kind = {"cpt": "text", "sft": "chat"}.get(self.stage)
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
        for source in [*self.data.sources, *self.preprocess.all_sources, *evaluate, *self.datasets.values()]:
            expanded = self.expand(source.path)
            if expanded != source.path:
                object.__setattr__(source, "path", expanded)
        return self


# Every list of data sources in a stage config: (section, key); section "" is the top level.
SOURCE_LISTS = (
    ("data", "sources"),
    ("preprocess", "cpt_sources"),
    ("preprocess", "sft_sources"),
    ("preprocess", "preference_sources"),
    ("evaluate", "perplexity"),
    ("evaluate", "tasks"),
    ("evaluate", "prompts"),
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


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader that also reads `5e-05` as a number (YAML 1.2 does; PyYAML's 1.1 rules want a dot).

    Helm renders small floats from values files in that form, so without this a learning rate of
    0.00005 would reach TRL as the string "5e-05".
    """


_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def yaml_load(text: str) -> Any:
    """Parse one YAML document with YAML 1.2 number rules (see `_Yaml12Loader`)."""
    return yaml.load(text, Loader=_Yaml12Loader)


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml_load(path.read_text(encoding="utf-8"))
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
