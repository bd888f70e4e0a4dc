"""What the drills share: stage processes started like the chart starts them, and checks on what they left."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..conftest import REPO

# A CPT run that checkpoints often: one step takes a few tens of milliseconds with the tiny model on a CPU.
CPT: dict[str, Any] = {
    "lora": {"r": 4, "alpha": 8},
    "data": {"sources": [{"path": "builtin:korean-corpus"}]},
    "training": {
        "max_steps": 12,
        "learning_rate": 1e-3,
        "per_device_train_batch_size": 2,
        "logging_steps": 1,
        "save_steps": 6,
        "save_total_limit": 3,
    },
    "checkpoint": {"keep_after_success": True},
}


def with_training(**training: Any) -> dict[str, Any]:
    return {**CPT, "training": {**CPT["training"], **training}}


def start_stage(stage: str, config: Path, events: Path, *extra: str) -> subprocess.Popen[str]:
    """`python -m korean_llm <stage> --config ...` as its own process, events written where the runner reads them."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "runtime"), "KOREAN_LLM_EVENTS": str(events)}
    return subprocess.Popen(
        [sys.executable, "-m", "korean_llm", stage, "--config", str(config), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def events_of(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # the line being written right now
            continue
    return out


def wait_for(pred: Any, what: str, proc: subprocess.Popen[str] | None = None, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        if proc is not None and proc.poll() is not None:
            output = proc.stdout.read()[-3000:] if proc.stdout is not None else "(output in its log file)"
            raise AssertionError(f"process exited ({proc.returncode}) before {what}:\n{output}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def wait_for_step(events: Path, step: int, proc: subprocess.Popen[str]) -> None:
    wait_for(
        lambda: any(e.get("type") == "log" and e.get("step", 0) >= step for e in events_of(events)),
        f"step {step}",
        proc,
    )


def run_dir(tmp_path: Path, run_id: str = "t") -> Path:
    return tmp_path / "output" / "tiny-ko" / run_id


def manifest_of(stage_dir: Path) -> dict[str, Any]:
    return json.loads((stage_dir / "manifest.json").read_text())


def logged_steps(stage_dir: Path) -> list[int]:
    """Steps with a training loss in the published log history: each step once, none missing."""
    history = json.loads((stage_dir / "log_history.json").read_text())
    return [h["step"] for h in history if "loss" in h]
