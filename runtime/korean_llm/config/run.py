"""Where a run lives and what it trains: run folders, base model, LoRA / QLoRA / full, checkpoints, launch."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from korean_llm.config.base import Stage, Strict

# MODEL_SIZE picks a base model when none is named explicitly.
SIZE_TO_BASE_MODEL = {
    "0.5b": "Qwen/Qwen2.5-0.5B",
    "1.5b": "Qwen/Qwen2.5-1.5B",
    "3b": "Qwen/Qwen2.5-3B",
    "7b": "Qwen/Qwen2.5-7B",
    "14b": "Qwen/Qwen2.5-14B",
    "32b": "Qwen/Qwen2.5-32B",
    "72b": "Qwen/Qwen2.5-72B",
}


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
    # Seeds the adapter's initial weights, the data order and dropout (korean_llm/pipeline/reproducibility.py).
    seed: int = 42
    # Torch's intra-op threads; the reduction order of CPU matrix products, hence the last bits of every weight,
    # follows it. None keeps torch's default (one per core the process may use).
    num_threads: int | None = Field(None, ge=1)
    # Deterministic CUDA kernels where PyTorch has them (slower; bitsandbytes/Unsloth kernels are not covered).
    deterministic: bool = False

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
    # Unsloth's per-decoder-layer torch.compile (false sets UNSLOTH_BLOCK_COMPILE=0 before the model is loaded and
    # patched). It covers full-length rows; Unsloth 2026.10.9 runs packed (padding-free) batches through the eager
    # layer either way, and the setting made no difference to their speed (docs/benchmarks.md). Ignored on hf.
    unsloth_block_compile: bool = True

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


class CheckpointConfig(Strict):
    """Resume behaviour; the save interval itself is `training.save_steps`."""

    resume: bool = True
    keep_after_success: bool = False
    # The completion marker of each checkpoint lists its files with sizes and SHA-256 sums, and resume verifies
    # them; false: sizes only (multi-GB full-weight checkpoints, where hashing costs a minute per save).
    checksums: bool = True


class LockConfig(Strict):
    """The lock on the stage's work folder and on deploy's publish (`korean_llm.pipeline.locking`: works on NFS)."""

    # Wait for another process holding the lock instead of refusing at once (exit 2); `--wait-lock` sets it.
    wait: bool = False
    # How long to wait before giving up (exit 2); None: as long as it takes.
    wait_timeout_seconds: float | None = Field(None, gt=0)
    # A lock whose heartbeat is older than this is taken over (its owner crashed or lost its node).
    stale_seconds: float = Field(120.0, gt=0)
    # How often the owner refreshes its heartbeat; at most half of stale_seconds.
    heartbeat_seconds: float = Field(10.0, gt=0)

    @model_validator(mode="after")
    def _beats_in_time(self) -> LockConfig:
        if self.heartbeat_seconds * 2 > self.stale_seconds:
            raise ValueError(
                f"lock.heartbeat_seconds ({self.heartbeat_seconds}) must be at most half of lock.stale_seconds "
                f"({self.stale_seconds})"
            )
        return self


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
