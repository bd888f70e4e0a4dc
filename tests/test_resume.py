"""Checkpoints: kill -9 then resume to the same final step, torn checkpoints skipped, SIGTERM -> 143 + checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from korean_llm.pipeline.artifacts import checkpoint_problem, checkpoint_step, latest_checkpoint

from .conftest import REPO

CPT = {
    "lora": {"r": 4, "alpha": 8},
    "data": {"sources": [{"path": "builtin:korean-corpus"}]},
    "training": {
        "max_steps": 60,
        "learning_rate": 1e-3,
        "per_device_train_batch_size": 2,
        "logging_steps": 1,
        "save_steps": 5,
        "save_total_limit": 3,
    },
    "checkpoint": {"keep_after_success": True},
}


def start_cpt(config: Path, events: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "runtime"), "KOREAN_LLM_EVENTS": str(events)}
    return subprocess.Popen(
        [sys.executable, "-m", "korean_llm", "cpt", "--config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_step(events: Path, step: int, proc: subprocess.Popen[str], timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        if events.exists():
            for line in events.read_text().splitlines():
                ev = json.loads(line)
                if ev.get("type") == "log" and ev.get("step", 0) >= step:
                    return
        time.sleep(0.05)
    raise AssertionError(f"step {step} not reached")


def kill_9_at_step(config: Path, events: Path, step: int) -> None:
    """Start a CPT process and SIGKILL it once it has logged `step`."""
    proc = start_cpt(config, events)
    wait_for_step(events, step, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def stage_paths(tmp_path: Path) -> tuple[Path, Path]:
    out = tmp_path / "output" / "tiny-ko" / "t"
    return out / "cpt.partial" / "checkpoints", out / "cpt"


@pytest.mark.slow
def test_kill_9_then_rerun_resumes_and_reaches_the_same_final_step(tmp_path: Path, write_config) -> None:
    config = write_config("cpt", CPT)
    kill_9_at_step(config, tmp_path / "events.jsonl", 12)
    ckpts, final = stage_paths(tmp_path)
    resumable = latest_checkpoint(ckpts)
    assert resumable is not None and not final.exists()
    step_at_kill = checkpoint_step(resumable)

    proc = start_cpt(config, tmp_path / "events2.jsonl")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    metrics = json.loads((final / "manifest.json").read_text())["metrics"]
    assert metrics["global_step"] == 60
    assert metrics["resumed_from_step"] == step_at_kill >= 10


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_143(tmp_path: Path, write_config) -> None:
    config = write_config("cpt", CPT)
    events = tmp_path / "events.jsonl"
    proc = start_cpt(config, events)
    wait_for_step(events, 3, proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out
    assert "stopped by SIGTERM" in out
    ckpts, final = stage_paths(tmp_path)
    newest = latest_checkpoint(ckpts)
    assert newest is not None and not final.exists()
    last_logged = max(json.loads(ln).get("step", 0) for ln in events.read_text().splitlines())
    assert checkpoint_step(newest) == last_logged  # saved at the step where it stopped, not an older one


def _good_checkpoint(tmp_path: Path, write_config) -> Path:
    cfg = {**CPT, "training": {**CPT["training"], "max_steps": 5}}
    proc = start_cpt(write_config("cpt", cfg), tmp_path / "ev.jsonl")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    return tmp_path / "output" / "tiny-ko" / "t" / "cpt" / "checkpoints" / "checkpoint-5"


@pytest.mark.slow
def test_torn_checkpoints_are_skipped(tmp_path: Path, write_config) -> None:
    good = _good_checkpoint(tmp_path, write_config)
    assert checkpoint_problem(good) is None
    root = good.parent
    (root / "checkpoint-9").mkdir()  # empty folder
    no_state = root / "checkpoint-8"
    shutil.copytree(good, no_state)
    (no_state / "trainer_state.json").unlink()
    truncated = root / "checkpoint-7"
    shutil.copytree(good, truncated)
    weights = truncated / "adapter_model.safetensors"
    full_size = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[: full_size // 2])
    unmarked = root / "checkpoint-6"
    shutil.copytree(good, unmarked)
    (unmarked / ".complete").unlink()

    skipped: list[str] = []
    assert latest_checkpoint(root, log=skipped.append) == good
    assert skipped == [
        "skipping checkpoint checkpoint-9: empty folder",
        "skipping checkpoint checkpoint-8: trainer_state.json listed in .complete is missing",
        f"skipping checkpoint checkpoint-7: adapter_model.safetensors is {full_size // 2} bytes,"
        f" .complete recorded {full_size} (torn or changed)",
        "skipping checkpoint checkpoint-6: no .complete marker (save was interrupted)",
    ]

    # A marker written before file lists were recorded holds a bare step number: the structural checks decide.
    for ckpt in (no_state, truncated):
        (ckpt / ".complete").write_text(str(checkpoint_step(ckpt)), encoding="utf-8")
    assert checkpoint_problem(no_state) == "missing or unreadable trainer_state.json"
    assert checkpoint_problem(truncated) == "truncated weights adapter_model.safetensors"


@pytest.mark.slow
def test_resume_after_torn_newest_checkpoint(tmp_path: Path, write_config) -> None:
    config = write_config("cpt", {**CPT, "training": {**CPT["training"], "max_steps": 14}})
    kill_9_at_step(config, tmp_path / "events.jsonl", 11)
    ckpts, final = stage_paths(tmp_path)
    newest = latest_checkpoint(ckpts)
    assert newest is not None
    step = checkpoint_step(newest)
    weights = newest / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # tear the newest one

    proc = start_cpt(config, tmp_path / "events2.jsonl")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert f"skipping checkpoint checkpoint-{step}: adapter_model.safetensors is 100 bytes" in out
    metrics = json.loads((final / "manifest.json").read_text())["metrics"]
    assert metrics["global_step"] == 14
    assert metrics["resumed_from_step"] == step - 5
