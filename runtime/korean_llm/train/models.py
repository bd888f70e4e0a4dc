"""Model loading for training and scoring: backend choice, 4-bit/16-bit load, LoRA / QLoRA / full, adapters.

`backend: auto` takes Unsloth when CUDA is present and Unsloth imports, otherwise plain
transformers + PEFT. Unsloth is imported only on that path, never on a CPU machine. Everything
after loading (trainer, callbacks, saving) is the same for both backends.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from korean_llm import dist
from korean_llm.builtin import resolve_model
from korean_llm.config import StageConfig
from korean_llm.errors import ConfigError, ManifestError, RetryableError, transient
from korean_llm.pipeline.artifacts import Manifest, read_manifest, tokenizer_fingerprint
from korean_llm.pipeline.reproducibility import seed_for_model

log = logging.getLogger("korean_llm")

Prepare = Callable[[Any], None]


@dataclass
class InitPoint:
    """Where training starts: weights (hub id or folder), an optional adapter to continue, the tokenizer."""

    weights: str
    adapter: Path | None = None
    tokenizer: str | None = None
    previous: Manifest | None = None
    previous_dir: Path | None = None


@dataclass
class Loaded:
    model: Any
    tokenizer: Any
    backend: str
    quantization: str
    notes: list[str] = field(default_factory=list)
    weights: str = ""  # the weights the model was loaded from (an adapter trained on it needs them again)
    block_compile: bool | None = None  # whether Unsloth's per-layer block compile is on (None on the hf backend)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def this_device() -> int:
    """This process's CUDA device (LOCAL_RANK under torchrun), made current so plain `cuda` allocations land there."""
    import torch

    index = dist.local_rank()
    if torch.cuda.current_device() != index:
        torch.cuda.set_device(index)
    return index


def choose_backend(requested: str) -> str:
    """Resolve `auto` and check that an explicit choice can run here."""
    has_unsloth = importlib.util.find_spec("unsloth") is not None
    if requested == "hf":
        return "hf"
    if requested == "unsloth":
        if not cuda_available():
            raise ConfigError("model.backend is 'unsloth' but no CUDA device is visible; use 'auto' or 'hf'")
        if not has_unsloth:
            raise ConfigError("model.backend is 'unsloth' but unsloth is not installed (pip install 'korean-llm[gpu]')")
        return "unsloth"
    return "unsloth" if has_unsloth and cuda_available() else "hf"


def init_point(cfg: StageConfig) -> InitPoint:
    """The base model, or the previous stage's output after checking its manifest against this config."""
    base = cfg.model.base_model or ""
    prev = cfg.run.previous_stage
    if prev is None:
        weights = resolve_model(base)
        if weights.startswith(("/", "./", "../", "~")) and not Path(weights).expanduser().exists():
            raise ConfigError(f"{cfg.source}: key 'model.base_model': folder '{weights}' does not exist")
        return InitPoint(weights=weights)
    prev_dir = cfg.run.stage_dir(prev)
    manifest = read_manifest(prev_dir, expected_stage=prev)
    if manifest.base_model != base:
        raise ManifestError(
            f"{prev_dir / 'manifest.json'}: stage '{prev}' trained on base model '{manifest.base_model}', "
            f"but this stage's config ({cfg.source}) says model.base_model '{base}'"
        )
    if manifest.model_name != cfg.run.model_name or manifest.run_id != cfg.run.run_id:
        raise ManifestError(
            f"{prev_dir / 'manifest.json'}: belongs to model '{manifest.model_name}' run '{manifest.run_id}', "
            f"expected model '{cfg.run.model_name}' run '{cfg.run.run_id}'"
        )
    if manifest.merged_path:
        weights = str(prev_dir / manifest.merged_path)
    else:  # an adapter: on the weights it was trained on (e.g. the vocab stage's resized model), else the base
        weights = str(manifest.extra.get("base_weights") or resolve_model(base))
    adapter = prev_dir / manifest.adapter_path if manifest.adapter_path else None
    tok = str(prev_dir / manifest.tokenizer_path) if manifest.tokenizer_path else None
    return InitPoint(weights, adapter, tok, manifest, prev_dir)


def torch_dtype(name: str) -> Any:
    """`model.dtype` as a torch dtype; `auto`: bfloat16 (float16 without bf16 support) on CUDA, float32 elsewhere."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return getattr(torch, name)


def load_tokenizer(init: InitPoint, cfg: StageConfig) -> Any:
    from transformers import AutoTokenizer

    path = init.tokenizer or init.weights
    try:
        tok = AutoTokenizer.from_pretrained(
            path, revision=cfg.model.revision, trust_remote_code=cfg.model.trust_remote_code
        )
    except OSError as exc:
        if transient(exc):
            raise RetryableError(f"{cfg.source}: cannot reach the tokenizer of '{path}' now: {exc}") from exc
        raise ConfigError(f"{cfg.source}: cannot load a tokenizer from '{path}': {exc}") from exc
    prev = init.previous
    if prev is not None and prev.tokenizer_hash is not None and prev.tokenizer_hash != tokenizer_fingerprint(tok):
        raise ManifestError(
            f"{init.previous_dir}/manifest.json: tokenizer hash {prev.tokenizer_hash} does not match "
            f"the tokenizer in {path} ({tokenizer_fingerprint(tok)})"
        )
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _quantization(cfg: StageConfig, notes: list[str]) -> Any:
    if cfg.lora.method != "qlora":
        return None
    if not cuda_available() or importlib.util.find_spec("bitsandbytes") is None:
        notes.append("lora.method qlora needs CUDA and bitsandbytes: loaded in full precision with LoRA instead")
        log.warning(notes[-1])
        return None
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def _peft_config(cfg: StageConfig) -> Any:
    from peft import LoraConfig as PeftLoraConfig

    lc = cfg.lora
    return PeftLoraConfig(
        r=lc.r,
        lora_alpha=lc.alpha,
        lora_dropout=lc.dropout,
        target_modules=lc.target_modules,
        modules_to_save=["embed_tokens", "lm_head"] if lc.train_embeddings else None,
        use_rslora=lc.use_rslora,
        bias="none",
        task_type="CAUSAL_LM",
    )


def _pretrained_kwargs(cfg: StageConfig) -> dict[str, Any]:
    """`from_pretrained` arguments every load shares: dtype, revision, remote code, attention implementation."""
    kwargs: dict[str, Any] = {
        "dtype": torch_dtype(cfg.model.dtype),
        "revision": cfg.model.revision,
        "trust_remote_code": cfg.model.trust_remote_code,
    }
    if cfg.model.attn_implementation:
        kwargs["attn_implementation"] = cfg.model.attn_implementation
    return kwargs


def _from_pretrained(path: str, cfg: StageConfig, what: str | None = None, **extra: Any) -> Any:
    """`AutoModelForCausalLM.from_pretrained`; a model that does not load is a ConfigError saying what it was for."""
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(path, **{**_pretrained_kwargs(cfg), **extra})
    except OSError as exc:
        if transient(exc):
            raise RetryableError(f"{cfg.source}: cannot reach model '{path}' now: {exc}") from exc
        raise ConfigError(f"{cfg.source}: {what or f'cannot load model {path!r}'}: {exc}") from exc


def _load_hf(cfg: StageConfig, init: InitPoint, tokenizer: Any, prepare: Prepare | None = None) -> Loaded:
    notes: list[str] = []
    quant = _quantization(cfg, notes)
    kwargs: dict[str, Any] = {}
    if quant is not None:
        kwargs["quantization_config"] = quant
        # 4-bit weights cannot be moved after loading: place them on this process's GPU (its LOCAL_RANK under torchrun).
        kwargs["device_map"] = {"": this_device()}
    model = _from_pretrained(init.weights, cfg, **kwargs)
    if prepare is not None:
        prepare(model)
    if quant is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    model = _attach_adapter(cfg, init, model, notes)
    return Loaded(model, tokenizer, "hf", "nf4" if quant is not None else str(torch_dtype(cfg.model.dtype)), notes)


def _attach_adapter(cfg: StageConfig, init: InitPoint, model: Any, notes: list[str]) -> Any:
    from peft import PeftModel, get_peft_model

    if init.adapter is not None:
        if cfg.lora.method == "full":
            notes.append(f"merged the adapter of {init.previous_dir} before full fine-tuning")
            return PeftModel.from_pretrained(model, str(init.adapter)).merge_and_unload()
        notes.append(f"continuing the adapter of {init.previous_dir}")
        return PeftModel.from_pretrained(model, str(init.adapter), is_trainable=True)
    if cfg.lora.method == "full":
        return model
    return get_peft_model(model, _peft_config(cfg))


def unsloth_block_compile_enabled(env: Mapping[str, str]) -> bool:
    """Unsloth 2026.10.9's own rule for its per-layer compile (`models/_block_compile.py` `_enabled()`, read at patch
    time and at every block call): on unless UNSLOTH_BLOCK_COMPILE is "0" or UNSLOTH_COMPILE_DISABLE is "1" or
    "partial"."""
    disabled = env.get("UNSLOTH_COMPILE_DISABLE", "0") in ("1", "partial")
    return env.get("UNSLOTH_BLOCK_COMPILE", "1") != "0" and not disabled


def _load_unsloth(cfg: StageConfig, init: InitPoint, prepare: Prepare | None = None) -> Loaded:
    notes: list[str] = []
    if not cfg.model.unsloth_block_compile:
        # Unsloth 2026.10.9 reads it only when it patches a model (models/_block_compile.py `_enabled()`, called by
        # patch_block_compile from get_peft_model and by every block call), never at import: set before the load.
        os.environ["UNSLOTH_BLOCK_COMPILE"] = "0"
        notes.append("Unsloth's per-layer block compile off (model.unsloth_block_compile false)")
    from unsloth import FastLanguageModel

    lc = cfg.lora
    source = str(init.adapter) if init.adapter is not None and lc.method != "full" else init.weights
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=source,
        max_seq_length=cfg.model.max_seq_length,
        dtype=None if cfg.model.dtype == "auto" else torch_dtype(cfg.model.dtype),
        load_in_4bit=lc.method == "qlora",
        full_finetuning=lc.method == "full",
        trust_remote_code=cfg.model.trust_remote_code,
    )
    if prepare is not None:
        prepare(model)
    if init.adapter is not None and lc.method != "full":
        notes.append(f"continuing the adapter of {init.previous_dir}")
    elif lc.method != "full":
        targets = list(lc.target_modules) if isinstance(lc.target_modules, list) else lc.target_modules
        if lc.train_embeddings:
            targets = [*targets, "embed_tokens", "lm_head"]
        model = FastLanguageModel.get_peft_model(
            model,
            r=lc.r,
            lora_alpha=lc.alpha,
            lora_dropout=lc.dropout,
            target_modules=targets,
            use_rslora=lc.use_rslora,
            bias="none",
            use_gradient_checkpointing="unsloth",
            random_state=cfg.run.seed,
        )
    compiled = cfg.model.unsloth_block_compile and unsloth_block_compile_enabled(os.environ)
    quantization = "nf4" if lc.method == "qlora" else "16-bit"
    return Loaded(model, tokenizer, "unsloth", quantization, notes, block_compile=compiled)


def load_for_training(cfg: StageConfig, init: InitPoint, prepare: Prepare | None = None) -> Loaded:
    """Load the model and tokenizer this stage trains, on the backend the config and machine allow.

    `prepare` is called on the loaded base model before any adapter is attached (CPT's embedding warm-up
    writes its trained rows there)."""
    backend = choose_backend(cfg.model.backend)
    if cuda_available():
        this_device()
    seed_for_model(cfg)  # the adapter's initial weights come from torch's global generator
    if backend == "unsloth":
        loaded = _load_unsloth(cfg, init, prepare)
        if init.tokenizer:  # keep the previous stage's tokenizer files (chat template included)
            loaded.tokenizer = load_tokenizer(init, cfg)
    else:
        loaded = _load_hf(cfg, init, load_tokenizer(init, cfg), prepare)
    loaded.weights = init.weights
    return loaded


def load_reference_model(cfg: StageConfig, spec: str, key: str) -> Any:
    """A frozen reference model (hub id, folder or builtin name) in the policy's dtype, for preference losses."""
    model = _from_pretrained(resolve_model(spec), cfg, f"key '{key}': cannot load the reference model '{spec}'")
    model.requires_grad_(False)
    return model.eval()


def load_plain(weights: str, cfg: StageConfig) -> Any:
    """The weights alone with the shared `from_pretrained` arguments, no adapter (CPT's embedding warm-up)."""
    return _from_pretrained(weights, cfg)


def load_for_scoring(point: InitPoint, cfg: StageConfig) -> Any:
    """The model at `point` (weights plus its adapter, with PEFT) in eval mode, on CUDA when there is one."""
    import torch

    model = _from_pretrained(point.weights, cfg)
    if point.adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(point.adapter))
    if torch.cuda.is_available():
        model = model.to("cuda")
    return model.eval()


def trainable_parameters(model: Any) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
