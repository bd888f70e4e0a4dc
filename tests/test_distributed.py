"""Two processes under torchrun (gloo, CPU) with the environment the Kubeflow operator injects."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from korean_llm.config import build_config
from korean_llm.errors import ConfigError

from .conftest import REPO

CPT = {
    "lora": {"r": 8, "alpha": 16},
    "data": {"sources": [{"path": "builtin:korean-corpus"}]},
    "training": {
        "max_steps": 16,
        "learning_rate": 1e-2,
        "per_device_train_batch_size": 4,
        "logging_steps": 1,
        "save_steps": 4,
        "save_total_limit": 2,
    },
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(config: Path, events: Path) -> subprocess.Popen[str]:
    port = str(free_port())
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "runtime"),
        "KOREAN_LLM_EVENTS": str(events),
        # what the training operator injects into the Master pod of a 1-node, 2-process PyTorchJob
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": port,
        "WORLD_SIZE": "1",
        "RANK": "0",
        "PET_NNODES": "1",
        "PET_NPROC_PER_NODE": "2",
        "PET_NODE_RANK": "0",
        "PET_MASTER_ADDR": "127.0.0.1",
        "PET_MASTER_PORT": port,
        "OMP_NUM_THREADS": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "-m", "korean_llm", "cpt", "--config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def logged(events: Path) -> list[dict]:
    if not events.exists():
        return []
    return [json.loads(line) for line in events.read_text().splitlines()]


@pytest.mark.slow
def test_two_processes_train_publish_once_and_resume(tmp_path: Path, write_config) -> None:
    config = write_config("cpt", CPT)
    events = tmp_path / "events.jsonl"
    proc = torchrun(config, events)
    deadline = time.time() + 300
    while not any(e.get("step", 0) >= 9 for e in logged(events) if e["type"] == "log"):
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGTERM)  # as the kubelet does on preemption: every process of the pod
    out, _ = proc.communicate(timeout=180)
    stage = tmp_path / "output" / "tiny-ko" / "t"
    assert not (stage / "cpt").exists(), out
    ckpts = sorted((stage / "cpt.partial" / "checkpoints").glob("checkpoint-*"))
    stopped_at = max(int(p.name.split("-")[1]) for p in ckpts)
    assert (
        stopped_at >= 9 and (stage / "cpt.partial" / "checkpoints" / f"checkpoint-{stopped_at}" / ".complete").exists()
    )
    # both ranks stopped at the same step and saved their RNG state into the same checkpoint
    assert len(list((stage / "cpt.partial" / "checkpoints" / f"checkpoint-{stopped_at}").glob("rng_state_*.pth"))) == 2

    events2 = tmp_path / "events2.jsonl"
    proc = torchrun(config, events2)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    manifests = list(tmp_path.rglob("manifest.json"))
    assert manifests == [stage / "cpt" / "manifest.json"]
    manifest = json.loads(manifests[0].read_text())
    assert manifest["extra"]["world_size"] == 2 and manifest["extra"]["distributed_strategy"] == "ddp"
    metrics = manifest["metrics"]
    assert metrics["global_step"] == 16 and metrics["resumed_from_step"] == stopped_at
    losses = [e["loss"] for e in logged(events) + logged(events2) if "loss" in e]
    assert len(losses) == 16  # each step logged once: rank 0 alone writes events
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.05, losses
    assert out.count("published") == 1  # logs are not duplicated by the second rank


def test_fsdp_is_refused_for_lora_and_for_unsloth(monkeypatch) -> None:
    from korean_llm.train.args import distributed_args

    monkeypatch.setenv("WORLD_SIZE", "2")
    lora = build_config({"stage": "sft", "distributed": {"strategy": "fsdp"}}, source="sft.yaml", env={})
    with pytest.raises(ConfigError, match=r"'fsdp' is for lora\.method 'full'"):
        distributed_args(lora, {})
    full = build_config({"stage": "sft", "distributed": {"strategy": "fsdp"}, "lora": {"method": "full"}}, env={})
    args = distributed_args(full, {"gradient_checkpointing": True})
    assert args["fsdp"] is True and args["fsdp_config"]["version"] == 2
    assert args["fsdp_config"]["reshard_after_forward"] is True and args["fsdp_config"]["cpu_offload"] is False
    # checkpointing moves into FSDP's wrapping (the Trainer's would all-gather every block a second time)
    assert args["fsdp_config"]["activation_checkpointing"] is True and args["gradient_checkpointing"] is False
    ddp = build_config({"stage": "sft"}, env={})
    assert distributed_args(ddp, {}) == {"ddp_find_unused_parameters": False, "use_cpu": True, "ddp_backend": "gloo"}
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed_args(full, {}) == {}


def test_fsdp_sft_uses_the_plain_loss(monkeypatch, tmp_path: Path) -> None:
    """TRL's chunked loss reads lm_head.weight directly, which FSDP2 keeps sharded outside lm_head's own forward."""
    from trl import DPOConfig, SFTConfig

    from korean_llm.pipeline.artifacts import StageDir
    from korean_llm.train.args import build_args

    def capturing(config_class: type) -> type:  # the arguments build_args hands to TRL, without a process group
        return type("Capture", (), {"__dataclass_fields__": config_class.__dataclass_fields__, "__init__": _keep})

    monkeypatch.setenv("WORLD_SIZE", "2")
    for stage, config_class, expected in (("sft", SFTConfig, "nll"), ("rlhf", DPOConfig, None)):
        data = {"stage": stage, "distributed": {"strategy": "fsdp"}, "lora": {"method": "full"}}
        args = build_args(build_config(data, env={}), capturing(config_class), StageDir(tmp_path / stage, stage))
        assert args.kwargs["fsdp"] is True and args.kwargs.get("loss_type") == expected, stage
    monkeypatch.setenv("WORLD_SIZE", "1")
    sft = build_config({"stage": "sft", "lora": {"method": "full"}}, env={})
    assert "loss_type" not in build_args(sft, capturing(SFTConfig), StageDir(tmp_path / "one", "sft")).kwargs


def _keep(self: object, **kwargs: object) -> None:
    self.kwargs = kwargs  # type: ignore[attr-defined]
