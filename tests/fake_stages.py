"""Finished training stages made without training: a tiny model plus a chosen adapter or damaged weights.

They let the evaluate and deploy tests control exactly how good the candidate is, in a second.
"""

from __future__ import annotations

from pathlib import Path

from korean_llm.builtin import TINY_MODEL, tiny_model_path
from korean_llm.pipeline.artifacts import MANIFEST, Manifest, atomic_write_json, tokenizer_fingerprint


def _manifest_for(stage: str, out: Path, tok: object, **paths: str | None) -> None:
    manifest = Manifest(
        stage=stage,
        model_name="tiny-ko",
        run_id=out.parent.name,
        base_model=TINY_MODEL,
        config_hash=f"fake-{stage}",
        tokenizer_path="tokenizer",
        tokenizer_hash=tokenizer_fingerprint(tok),
        **paths,
    )
    atomic_write_json(out / MANIFEST, manifest.model_dump(mode="json"))


def adapter_stage(run_dir: Path, stage: str = "sft", lora_scale: float = 0.0, seed: int = 0) -> Path:
    """`<run_dir>/<stage>/` holding a LoRA adapter; lora_scale 0 leaves the model unchanged (B = 0)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_path(), dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(tiny_model_path())
    model = get_peft_model(
        base,
        LoraConfig(
            r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"], init_lora_weights=lora_scale == 0
        ),
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.mul_(lora_scale)
    out = run_dir / stage
    model.save_pretrained(out / "adapter", safe_serialization=True)
    tok.save_pretrained(out / "tokenizer")
    _manifest_for(stage, out, tok, adapter_path="adapter")
    return out


def damaged_stage(run_dir: Path, stage: str = "sft", noise: float = 1.0, seed: int = 0) -> Path:
    """`<run_dir>/<stage>/` holding full weights multiplied by (1 + noise * N(0, 1))."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path(), dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(tiny_model_path())
    with torch.no_grad():
        for param in model.parameters():
            param.mul_(1 + noise * torch.randn_like(param))
    out = run_dir / stage
    model.save_pretrained(out / "model", safe_serialization=True)
    tok.save_pretrained(out / "tokenizer")
    _manifest_for(stage, out, tok, merged_path="model")
    return out
