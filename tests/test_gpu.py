"""The stages on a CUDA device with Unsloth: 4-bit loading, CPT then SFT with falling loss, resume, bench;
with two or more GPUs also DDP (Unsloth, QLoRA) and FSDP (HF, full fine-tuning) under torchrun.

Deselected by default (pyproject's addopts); on a GPU host (see docs/benchmarks.md, "GPU (H200)"):

    ci/gpu-tests.sh [SITE.tgz]                  # marker gpu: one device
    ci/gpu-tests.sh [SITE.tgz] -m multi_gpu     # marker multi_gpu: two devices, torchrun

Selected where the hardware or Unsloth is missing, every test fails with the reason (never skips).

Run this file on its own: Unsloth must be imported before transformers, which other test files load.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from .conftest import REPO

GPU_READY = torch.cuda.is_available() and importlib.util.find_spec("unsloth") is not None
if GPU_READY:
    import unsloth  # noqa: F401  -- patches transformers and TRL, so it must come first


@pytest.fixture(autouse=True)
def _needs_cuda_and_unsloth(request: pytest.FixtureRequest) -> None:
    """Fail, with what is missing, when a CUDA test was selected on a host that cannot run it."""
    if not torch.cuda.is_available():
        pytest.fail("this test needs a CUDA device; none is visible (torch.cuda.is_available() is False)")
    if importlib.util.find_spec("unsloth") is None:
        pytest.fail("this test needs Unsloth; it is not importable (ci/gpu-tests.sh SITE.tgz brings it)")
    if request.node.get_closest_marker("multi_gpu") and torch.cuda.device_count() < 2:
        pytest.fail(f"this test needs two CUDA devices; {torch.cuda.device_count()} visible")


# Small enough to train in seconds, with head size 64 and the builtin tokenizer's 3003-token vocabulary.
SMALL_SHAPE = dict(
    hidden_size=256,
    intermediate_size=704,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=3072,
    tie_word_embeddings=True,
)
SENTENCES = [
    "대한민국은 민주공화국이다. 대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다.",
    "모든 국민은 인간으로서의 존엄과 가치를 가지며, 행복을 추구할 권리를 가진다.",
    "모든 국민은 법 앞에 평등하다. 누구든지 성별·종교 또는 사회적 신분에 의하여 차별을 받지 아니한다.",
]


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from korean_llm.bench.throughput import build_shape

    folder = tmp_path_factory.mktemp("small-qwen2")
    build_shape(folder, SMALL_SHAPE)
    return folder


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.jsonl"
    docs = [{"text": " ".join(SENTENCES[i % 3 :] + SENTENCES[: i % 3]) * 8} for i in range(60)]
    path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    return path


def gpu_stage(small_model: Path, data: str, **training: Any) -> dict[str, Any]:
    return {
        "model": {"base_model": str(small_model), "backend": "unsloth", "max_seq_length": 256},
        "lora": {"method": "qlora", "r": 16},
        "data": {"sources": [{"path": data}]},
        "training": {"learning_rate": 2e-3, "per_device_train_batch_size": 4, "logging_steps": 1, **training},
    }


@pytest.mark.gpu
def test_unsloth_loads_4bit_base_with_lora(small_model: Path) -> None:
    from korean_llm.config import build_config
    from korean_llm.train.models import init_point, load_for_training, trainable_parameters

    cfg = build_config({"stage": "cpt", **gpu_stage(small_model, "unused")}, env={})
    loaded = load_for_training(cfg, init_point(cfg))
    assert (loaded.backend, loaded.quantization) == ("unsloth", "nf4")
    trainable, total = trainable_parameters(loaded.model)
    assert 0 < trainable < total
    kinds = {type(m).__name__ for m in loaded.model.modules()}
    assert "Linear4bit" in kinds, kinds
    assert next(loaded.model.parameters()).device.type == "cuda"


@pytest.mark.gpu
def test_cpt_then_sft_train_with_falling_loss(
    small_model: Path, corpus: Path, write_config: Callable[..., Path]
) -> None:
    from korean_llm.config import load_config
    from korean_llm.pipeline.artifacts import read_manifest
    from korean_llm.stages import cpt, sft

    cpt_cfg = load_config(write_config("cpt", gpu_stage(small_model, str(corpus), max_steps=15)))
    cpt_manifest = cpt.main(cpt_cfg)
    sft_over = gpu_stage(small_model, "builtin:sft-ko", max_steps=15)
    sft_cfg = load_config(write_config("sft", {**sft_over, "run": {"previous_stage": "cpt"}}))
    sft_manifest = sft.main(sft_cfg)
    for manifest, cfg in ((cpt_manifest, cpt_cfg), (sft_manifest, sft_cfg)):
        assert manifest.extra["backend"] == "unsloth" and manifest.extra["quantization"] == "nf4"
        assert manifest.metrics["global_step"] == 15
        history = json.loads((cfg.stage_dir / "log_history.json").read_text())
        losses = [h["loss"] for h in history if "loss" in h]
        print(cfg.stage, "losses", [round(x, 3) for x in losses])
        assert len(losses) == 15
        # single steps are noisy (SFT batches differ in length); the average of the last three is clearly lower
        assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.1, (cfg.stage, losses)
    assert sft_manifest.init_from == str(cpt_cfg.stage_dir)
    assert read_manifest(sft_cfg.stage_dir).adapter_path == "adapter"


@pytest.mark.gpu
def test_cpt_resumes_from_checkpoint_after_sigterm(
    small_model: Path, corpus: Path, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    from korean_llm.pipeline.artifacts import read_manifest

    # 100 steps: on the H200 a step of this model takes a few ms, and the run must still be going when SIGTERM
    # comes (within 0.2 s of the first checkpoint); with 400 steps it twice ran out of a device command's time.
    config = write_config("cpt", gpu_stage(small_model, str(corpus), max_steps=100, save_steps=5))
    cmd = [sys.executable, "-m", "korean_llm", "cpt", "--config", str(config)]
    env = {"PYTHONPATH": str(REPO / "runtime")}
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    marker = tmp_path / "output" / "tiny-ko" / "t" / "cpt.partial" / "checkpoints" / "checkpoint-5" / ".complete"
    deadline = time.time() + 300
    while not marker.is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, (
        "the first run ended before SIGTERM could be sent: " + proc.stderr.read().decode()[-3000:]
    )
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr.decode()[-3000:]
    again = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True, timeout=600, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    manifest = read_manifest(tmp_path / "output" / "tiny-ko" / "t" / "cpt")
    assert manifest.metrics["resumed_from_step"] >= 5
    assert manifest.metrics["global_step"] == 100


@pytest.mark.gpu
def test_bench_compares_unsloth_and_hf(small_model: Path, cli: Callable[..., Any], tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = cli(
        "bench", "--model", str(small_model), "--compare", "unsloth,hf", "--mode", "cpt,dpo,bare",
        "--steps", "3", "--warmup", "2", "--seq-len", "256", "--json-out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert [(r["backend"], r["mode"]) for r in rows] == [  # the bare loop first in each backend's process
        ("unsloth", "bare"),
        ("unsloth", "cpt"),
        ("unsloth", "dpo"),
        ("hf", "bare"),
        ("hf", "cpt"),
        ("hf", "dpo"),
    ]
    for r in rows:
        assert r["lora"] == "qlora" and r["peak_memory_gib"] > 0 and 0 < r["mfu"] < 1
        assert r["peak_source"].startswith("measured: bf16")


TWO_GPUS = pytest.mark.multi_gpu


def torchrun_stage(stage: str, config: Path, nproc: int = 2) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-port", "29517"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "runtime")}
    cmd += ["-m", "korean_llm", stage, "--config", str(config)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False)


@TWO_GPUS
def test_ddp_sft_on_two_gpus_with_unsloth(small_model: Path, write_config: Callable[..., Path], tmp_path: Path) -> None:
    from korean_llm.pipeline.artifacts import read_manifest

    over = gpu_stage(small_model, "builtin:sft-ko", max_steps=12)
    proc = torchrun_stage("sft", write_config("sft", {**over, "distributed": {"strategy": "ddp"}}))
    assert proc.returncode == 0, proc.stderr[-4000:]
    stage_dir = tmp_path / "output" / "tiny-ko" / "t" / "sft"
    manifest = read_manifest(stage_dir)
    assert manifest.extra["backend"] == "unsloth" and manifest.extra["world_size"] == 2
    assert manifest.extra["distributed_strategy"] == "ddp"
    assert manifest.metrics["final_loss"] < manifest.metrics["first_loss"], manifest.metrics
    assert (stage_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert proc.stderr.count("published") == 1  # rank 0 alone publishes


@TWO_GPUS
def test_fsdp_full_fine_tuning_on_two_gpus(
    small_model: Path, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM

    from korean_llm.pipeline.artifacts import read_manifest

    over = gpu_stage(small_model, "builtin:sft-ko", max_steps=12, learning_rate=1e-4)
    over["model"]["backend"] = "hf"
    over["lora"] = {"method": "full"}
    proc = torchrun_stage("sft", write_config("sft", {**over, "distributed": {"strategy": "fsdp"}}))
    assert proc.returncode == 0, proc.stderr[-4000:]
    stage_dir = tmp_path / "output" / "tiny-ko" / "t" / "sft"
    manifest = read_manifest(stage_dir)
    assert manifest.extra["world_size"] == 2 and manifest.extra["distributed_strategy"] == "fsdp"
    assert manifest.metrics["final_loss"] < manifest.metrics["first_loss"], manifest.metrics
    # the gathered full state dict: every weight of the model, loadable on its own
    trained = AutoModelForCausalLM.from_pretrained(stage_dir / manifest.merged_path)
    base = AutoModelForCausalLM.from_pretrained(small_model)
    assert trained.state_dict().keys() == base.state_dict().keys()
    assert not torch.equal(trained.model.layers[0].mlp.down_proj.weight, base.model.layers[0].mlp.down_proj.weight)
