"""Merge the evaluated model into 16-bit weights, verify the merge, publish it as a release.

    python -m korean_llm deploy --config /etc/korean-llm/deploy.yaml

The candidate is the model the evaluate stage passed (its manifest's `candidate_stage`), or the
previous stage's model directly when the pipeline has no evaluate stage. The LoRA adapter is merged
into the base weights, cast to `deploy.dtype` and saved as safetensors with the tokenizer and its
chat template. Logits on fixed Korean inputs check the merge (merged vs adapter model, in
`deploy.merge_dtype`: float32 by default, 16-bit for models whose float32 copy does not fit), and the
saved files are compared tensor by tensor with the model in memory: both max |difference| must stay
under `deploy.merge_tolerance`, else exit 3 and nothing is published. The peak memory is one copy of
the weights in the merge type (4 or 2 bytes per parameter), which the chart's deploy step requests.

The folder becomes `<output_root>/<model>/releases/<version>/` (version: `deploy.version`, default
the run id) and `current` is switched to it atomically (release.py); the last `deploy.keep_releases`
releases are kept. With `$KOREAN_LLM_RESULT_DIR` set (the chart's Argo step), the version is
written to `$KOREAN_LLM_RESULT_DIR/version` for the rollout step; it is also in the manifest
(`extra.release_version`, `extra.release_path`). GGUF export runs when llama.cpp's converter exists.
"""

from __future__ import annotations

import hashlib
import logging
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from korean_llm.config import DeployConfig, StageConfig
from korean_llm.errors import ConfigError, GateFailed, KoreanLLMError
from korean_llm.observe.tracking import register_release
from korean_llm.pipeline import release
from korean_llm.pipeline.artifacts import Manifest, read_manifest, tokenizer_fingerprint
from korean_llm.pipeline.stage import StageContext, execute
from korean_llm.train.models import InitPoint, init_point, load_tokenizer

log = logging.getLogger("korean_llm")

# Fixed inputs of the merge check: Korean text of different lengths, so padding is exercised as well.
CHECKS = ("merge_max_abs_diff", "save_max_abs_diff", "rounding_max_abs_diff", "merge_tolerance", "probe_max_abs_logit")
PROBE_TEXTS = (
    "대한민국은 민주공화국이다. 대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다.",
    "한국어 모델을 배포하기 전에 병합된 가중치를 확인합니다.",
    "오늘 날씨가 맑다.",
)


def candidate_point(cfg: StageConfig) -> tuple[InitPoint, StageConfig]:
    """The model to release: through the evaluate manifest to the stage it judged, else the previous stage."""
    if cfg.run.previous_stage != "evaluate":
        return init_point(cfg), cfg
    evaluated = read_manifest(cfg.run.stage_dir("evaluate"), expected_stage="evaluate")
    judged = evaluated.extra.get("candidate_stage")
    target = cfg.model_copy(update={"run": cfg.run.model_copy(update={"previous_stage": judged})})
    return init_point(target), target


def probe_logits(model: Any, tokenizer: Any) -> Any:
    import torch

    enc = tokenizer(list(PROBE_TEXTS), return_tensors="pt", padding=True, add_special_tokens=False)
    enc = {k: v.to(next(model.parameters()).device) for k, v in enc.items()}
    with torch.no_grad():
        logits = model(**enc).logits.float()
    return logits[enc["attention_mask"].bool()]  # padded positions are not compared


def _saved_weights_diff(folder: Path, merged: Any) -> float:
    """Max |difference| between the safetensors files in `folder` and the model in memory, one tensor at a time.

    Reading tensor by tensor (safetensors `safe_open`) instead of reloading the folder as a second model keeps the
    stage's peak at one copy of the weights. A state-dict entry absent from the files must share its storage with
    one that is there (tied embeddings: `save_pretrained` writes the shared tensor once); anything else is inf.
    """
    from safetensors import safe_open

    state = merged.state_dict()
    seen: dict[str, int] = {}
    worst = 0.0
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 -- safe_open handles are not iterable
                if name not in state:
                    return math.inf  # a tensor the model does not have: renamed or foreign
                saved = handle.get_tensor(name)
                tensor = state[name].detach()
                if saved.shape != tensor.shape or saved.dtype != tensor.dtype:
                    return math.inf
                worst = max(worst, float((saved - tensor.to(saved.device)).abs().max()) if saved.numel() else 0.0)
                seen[name] = tensor.data_ptr()
    written = set(seen.values())
    for name, tensor in state.items():
        if name not in seen and tensor.data_ptr() not in written:
            return math.inf  # neither saved nor tied to a saved tensor
    return worst


def merge_into(folder: Path, point: InitPoint, cfg: StageConfig) -> dict[str, float]:
    """Save the merged 16-bit model and tokenizer into `folder`; return the checks, each a max |difference|.

    The model is loaded in `deploy.merge_dtype`: float32 (4 bytes per parameter, the exact merge) or the 16-bit
    type (2 bytes; PEFT computes each LoRA delta in float32 on the CPU and adds it in 16 bits, one extra rounding
    of the kind serving in 16 bits has anyway). The cast to `deploy.dtype` converts the tensors in place, and the
    saved files are compared tensor by tensor, so the peak is one copy of the weights in the merge type.

    merge_max_abs_diff: logits of the merged vs the adapter model, both in the merge type (is the merge exact?);
    save_max_abs_diff: the saved files vs the merged 16-bit weights in memory (did saving keep every tensor, tied
    embeddings included?). Both are held to `deploy.merge_tolerance`.
    rounding_max_abs_diff: logits of the 16-bit model (the saved weights, when save_max_abs_diff is 0) vs the
    adapter model, reported only: the cost of serving in 16 bits, which grows with depth and is not a defect.
    """
    import torch
    from transformers import AutoModelForCausalLM

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = getattr(torch, cfg.deploy.dtype)
    merge_dtype = getattr(torch, cfg.deploy.merge_dtype)
    remote = cfg.model.trust_remote_code
    tokenizer = load_tokenizer(point, cfg)
    # Any: transformers types `.to` of a loaded model as taking a model, not a device
    model: Any = AutoModelForCausalLM.from_pretrained(point.weights, dtype=merge_dtype, trust_remote_code=remote)
    if point.adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(point.adapter))
    model = model.to(device).eval()
    reference = probe_logits(model, tokenizer)
    merged = model.merge_and_unload() if point.adapter is not None else model
    del model
    merge_diff = float((probe_logits(merged, tokenizer) - reference).abs().max())
    merged = merged.to(dtype)  # in place, tensor by tensor (Module._apply swaps each parameter's data)
    merged.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    save_diff = _saved_weights_diff(folder, merged)
    rounding = float((probe_logits(merged, tokenizer) - reference).abs().max())
    del merged
    return {
        "merge_max_abs_diff": merge_diff,
        "save_max_abs_diff": save_diff,
        "rounding_max_abs_diff": rounding,
        "merge_tolerance": cfg.deploy.merge_tolerance,
        "probe_max_abs_logit": float(reference.abs().max()),
    }


def export_gguf(folder: Path, dc: DeployConfig) -> str:
    """Convert the merged folder with llama.cpp's converter; returns what happened, for the manifest."""
    if dc.gguf == "off":
        return "off"
    converter = dc.gguf_converter or shutil.which("convert_hf_to_gguf.py")
    if converter is None or not Path(converter).is_file():
        missing = f"llama.cpp converter {converter or 'convert_hf_to_gguf.py'} not found"
        reason = f"GGUF export skipped: {missing} (set deploy.gguf_converter or put it on PATH)"
        if dc.gguf == "required":
            raise ConfigError(f"deploy.gguf is 'required' but the {missing}")
        log.info(reason)
        return reason
    out = folder / f"model-{dc.gguf_outtype}.gguf"
    cmd = [sys.executable, converter, str(folder), "--outfile", str(out), "--outtype", dc.gguf_outtype]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not out.is_file():
        raise KoreanLLMError(f"GGUF export failed ({' '.join(cmd)}, exit {done.returncode}): {done.stderr[-2000:]}")
    return out.name


def _run(ctx: StageContext) -> Manifest:
    cfg, dc = ctx.cfg, ctx.cfg.deploy
    version = dc.version or cfg.run.run_id
    root = release.releases_dir(cfg)
    point, target_cfg = candidate_point(cfg)
    source = point.previous.config_hash if point.previous else point.weights
    source_hash = hashlib.sha256(f"{cfg.fingerprint()}|{source}".encode()).hexdigest()[:16]
    with release.publish_lock(cfg, root) as lock:
        info = release.release_info(root / version)
        if info is not None and info.get("source_hash") == source_hash:
            log.info(
                "release %s already published from this model (an earlier run stopped after it): reusing it", version
            )
        else:
            lock.ensure_held("removing the staging folders of interrupted publishes")
            staging = release.new_staging(root, version)
            check = merge_into(staging, point, target_cfg)
            worst = max(("merge_max_abs_diff", "save_max_abs_diff"), key=lambda k: check[k])
            if check[worst] > dc.merge_tolerance:
                raise GateFailed(
                    f"deploy: {worst} is {check[worst]:.4g}, above deploy.merge_tolerance {dc.merge_tolerance} "
                    f"(all checks: {check}); nothing published, merged model left in {staging}"
                )
            gguf = export_gguf(staging, dc)
            from transformers import AutoTokenizer

            info = {
                "version": version,
                "model_name": cfg.run.model_name,
                "run_id": cfg.run.run_id,
                "base_model": cfg.model.base_model,
                "source_stage": str(point.previous_dir) if point.previous_dir else point.weights,
                "source_hash": source_hash,
                "dtype": dc.dtype,
                "tokenizer_hash": tokenizer_fingerprint(AutoTokenizer.from_pretrained(staging)),
                "gguf": gguf,
                "released_at": time.time(),
                **check,
            }
            # Another deploy took the lock over while this one stalled (merging): publish nothing under it.
            lock.ensure_held(f"publishing release {version}")
            release.publish(staging, root, version, info)
        lock.ensure_held(f"switching {root / release.CURRENT} to {version}")
        release.switch_current(root, version)
        registered = register_release(cfg, root / version, version)  # MLflow model registry, when configured
        lock.ensure_held("pruning old releases")
        pruned = release.prune(root, dc.keep_releases)
        result_file = release.write_result(version)
    log.info(
        "released %s as %s (current); removed old releases: %s", cfg.run.model_name, root / version, pruned or "none"
    )
    return ctx.manifest(
        tokenizer_hash=info["tokenizer_hash"],
        inputs=[info["source_stage"]],
        metrics={k: info[k] for k in CHECKS},
        extra={
            "release_version": version,
            "release_path": str(root / version),
            "current_path": str(root / release.CURRENT),
            "gguf": info["gguf"],
            "pruned_releases": pruned,
            "result_file": str(result_file) if result_file else None,
            "mlflow_model_version": registered,
        },
    )


def main(config: StageConfig) -> Manifest:
    """python -m korean_llm deploy --config /etc/korean-llm/deploy.yaml"""
    return execute(config, _run)
