"""Backends, telemetry and the stage contract helpers."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

from korean_llm.config import build_config
from korean_llm.errors import ConfigError, ManifestError
from korean_llm.observe.metrics import StageMetrics
from korean_llm.pipeline.artifacts import Manifest, StageDir, atomic_write_json, read_manifest, safetensors_complete
from korean_llm.train.models import choose_backend


def test_auto_backend_is_hf_without_cuda_and_unsloth_is_refused_on_cpu() -> None:
    import sys

    assert choose_backend("auto") == "hf"
    assert choose_backend("hf") == "hf"
    with pytest.raises(ConfigError, match="no CUDA device"):
        choose_backend("unsloth")
    assert "unsloth" not in sys.modules  # never imported on a CPU machine


def test_metrics_endpoint_serves_labelled_korean_llm_metrics() -> None:
    cfg = build_config(
        {"stage": "sft", "run": {"model_name": "m1", "run_id": "r1"}, "metrics": {"port": 0, "host": "127.0.0.1"}},
        env={},
    )
    metrics = StageMetrics(cfg)
    metrics.serve()
    try:
        metrics.record(7, 20, {"loss": 1.25, "learning_rate": 1e-4}, tokens_per_s=1234.0, eta=30.0)
        body = urllib.request.urlopen(f"http://127.0.0.1:{metrics.port}/metrics", timeout=5).read().decode()
    finally:
        metrics.close(failed=True)
    labels = 'model="m1",rank="0",run="r1",stage="sft"'
    for line in (
        f"korean_llm_loss{{{labels}}} 1.25",
        f"korean_llm_step{{{labels}}} 7.0",
        f"korean_llm_total_steps{{{labels}}} 20.0",
        f"korean_llm_tokens_per_second{{{labels}}} 1234.0",
        f"korean_llm_eta_seconds{{{labels}}} 30.0",
        f"korean_llm_learning_rate{{{labels}}} 0.0001",
        f"korean_llm_stage_running{{{labels}}} 1.0",
    ):
        assert line in body
    assert metrics.failures.labels(**metrics.labels)._value.get() == 1


def test_stage_dir_publishes_atomically_and_refuses_to_overwrite(tmp_path: Path) -> None:
    sd = StageDir(tmp_path, "sft")
    sd.prepare()
    (sd.work / "adapter").mkdir()
    m = Manifest(stage="sft", model_name="m", run_id="r", base_model="b", config_hash="h", adapter_path="adapter")
    sd.commit(m)
    assert not sd.work.exists() and read_manifest(sd.final, "sft").adapter_path == "adapter"
    with pytest.raises(ManifestError, match="expected 'cpt'"):
        read_manifest(sd.final, "cpt")
    sd2 = StageDir(tmp_path, "sft")
    sd2.prepare()
    with pytest.raises(ManifestError, match="refusing to overwrite"):
        sd2.commit(m)


def test_manifest_pointing_at_missing_files_is_rejected(tmp_path: Path) -> None:
    m = Manifest(stage="cpt", model_name="m", run_id="r", base_model="b", config_hash="h", adapter_path="adapter")
    atomic_write_json(tmp_path / "manifest.json", m.model_dump())
    with pytest.raises(ManifestError, match="adapter_path 'adapter' does not exist"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="unreadable manifest"):
        read_manifest(tmp_path)


def test_safetensors_completeness(tiny_model: Path, tmp_path: Path) -> None:
    weights = tiny_model / "model.safetensors"
    assert safetensors_complete(weights)
    torn = tmp_path / "w.safetensors"
    torn.write_bytes(weights.read_bytes()[:-10])
    assert not safetensors_complete(torn)
    torn.write_bytes(b"\x00" * 4)
    assert not safetensors_complete(torn)
