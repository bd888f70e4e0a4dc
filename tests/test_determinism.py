"""Same config and run.seed -> bit-identical model; another seed -> another model; kill -9 + resume -> the same model.

Each run is a separate `python -m korean_llm cpt` process, as the local runner and the cluster start a stage, so
nothing is shared through the test process's generators.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file

from korean_llm.pipeline.artifacts import COMPLETE_MARKER

from .conftest import REPO, deep_merge

pytestmark = pytest.mark.slow

CPT: dict[str, Any] = {
    "lora": {"r": 4, "alpha": 8, "dropout": 0.1},  # dropout on: its draws must be seeded too
    "data": {"sources": [{"path": "builtin:korean-corpus"}]},
    "training": {
        "max_steps": 12,
        "learning_rate": 1e-3,
        "per_device_train_batch_size": 2,
        "logging_steps": 1,
        "save_steps": 4,
    },
}


def write_cpt_config(root: Path, overrides: dict[str, Any] | None = None) -> Path:
    """A CPT stage config whose data and outputs live under `root`."""
    base = {
        "stage": "cpt",
        "run": {"model_name": "tiny-ko", "run_id": "t", "data_root": str(root), "output_root": str(root / "output")},
        "model": {"base_model": "builtin:tiny-ko", "max_seq_length": 128},
        "metrics": {"port": 0, "host": "127.0.0.1"},
    }
    root.mkdir(parents=True, exist_ok=True)
    config = root / "cpt.yaml"
    config.write_text(yaml.safe_dump(deep_merge(deep_merge(base, CPT), overrides or {}), allow_unicode=True))
    return config


def cpt_command(config: Path) -> list[str]:
    return [sys.executable, "-m", "korean_llm", "cpt", "--config", str(config)]


ENV = {**os.environ, "PYTHONPATH": str(REPO / "runtime")}


def run_cpt(root: Path, overrides: dict[str, Any] | None = None) -> Path:
    """One CPT stage in its own process under `root`; returns the published stage folder."""
    config = write_cpt_config(root, overrides)
    proc = subprocess.run(cpt_command(config), env=ENV, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root / "output" / "tiny-ko" / "t" / "cpt"


def adapter(stage: Path) -> dict[str, torch.Tensor]:
    return load_file(stage / "adapter" / "adapter_model.safetensors")


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def metrics(stage: Path) -> dict[str, Any]:
    return json.loads((stage / "manifest.json").read_text())["metrics"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run every other run is compared with."""
    return run_cpt(tmp_path_factory.mktemp("reference"))


def test_same_config_and_seed_give_the_same_model(reference: Path, tmp_path: Path) -> None:
    again = run_cpt(tmp_path / "again")
    assert max_abs_diff(adapter(reference), adapter(again)) == 0.0
    first, second = metrics(reference), metrics(again)
    for key in ("first_loss", "final_loss", "train_loss", "global_step"):
        assert first[key] == second[key], key
    recorded = json.loads((again / "manifest.json").read_text())["extra"]["reproducibility"]
    assert recorded == {"seed": 42, "torch_threads": torch.get_num_threads(), "deterministic": False}


def test_another_seed_gives_another_model(reference: Path, tmp_path: Path) -> None:
    other = run_cpt(tmp_path / "other", {"run": {"seed": 7}})
    assert max_abs_diff(adapter(reference), adapter(other)) > 0.0
    assert metrics(reference)["final_loss"] != metrics(other)["final_loss"]


def test_kill_9_after_a_checkpoint_then_resume_gives_the_same_model(reference: Path, tmp_path: Path) -> None:
    """SIGKILL once a complete checkpoint exists; the restarted stage resumes from it and ends bit-identical.

    Exact on the CPU: the checkpoint holds the optimizer, scheduler and every generator's state
    (transformers 5.17.0 `Trainer._save_rng_state` / `_load_rng_state`), and the resumed epoch skips the batches
    already seen in the seeded sampler's order (`skip_first_batches`)."""
    root = tmp_path / "killed"
    config = write_cpt_config(root)
    checkpoints = root / "output" / "tiny-ko" / "t" / "cpt.partial" / "checkpoints"
    proc = subprocess.Popen(cpt_command(config), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (checkpoints / "checkpoint-4" / COMPLETE_MARKER).exists():
        assert proc.poll() is None, "the stage ended before its first checkpoint was complete"
        assert time.time() < deadline, "no complete checkpoint within 300 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (root / "output" / "tiny-ko" / "t" / "cpt").exists(), "killed before publishing, as intended"

    resumed = subprocess.run(cpt_command(config), env=ENV, capture_output=True, text=True, timeout=600, check=False)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    stage = root / "output" / "tiny-ko" / "t" / "cpt"
    assert metrics(stage)["resumed_from_step"] in (4, 8)
    assert metrics(stage)["global_step"] == 12
    assert max_abs_diff(adapter(reference), adapter(stage)) == 0.0
    assert metrics(stage)["final_loss"] == metrics(reference)["final_loss"]
