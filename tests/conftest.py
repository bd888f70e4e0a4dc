"""Shared fixtures: the tiny model, stage config files, and a CLI runner (in-process or as a process)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("KOREAN_LLM_CACHE", str(REPO / ".cache" / "korean-llm"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One intra-op thread per process, this one and every stage process it starts: the tiny model's matrices are too
# small for a second thread to pay, and `make test` runs several workers (pytest-xdist) on the two cores instead,
# where two threads per process would only spin against each other. Set before anything imports torch.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    from korean_llm.builtin import tiny_model_path

    return tiny_model_path()


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """write_config("cpt", {...overrides}) -> path of a stage config whose outputs live under tmp_path."""

    def make(stage: str, overrides: dict[str, Any] | None = None, name: str | None = None) -> Path:
        base: dict[str, Any] = {
            "stage": stage,
            "run": {
                "model_name": "tiny-ko",
                "run_id": "t",
                "data_root": str(tmp_path / "data"),
                "output_root": str(tmp_path / "output"),
            },
            "model": {"base_model": "builtin:tiny-ko", "max_seq_length": 128},
            "metrics": {"port": 0, "host": "127.0.0.1"},
        }
        cfg = deep_merge(base, overrides or {})
        path = tmp_path / (name or f"{stage}.yaml")
        path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
        return path

    return make


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run `python -m korean_llm ...` as a separate process (exit codes, signals, real isolation)."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO / "runtime"), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "korean_llm", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )


@pytest.fixture
def cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_cli


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests that train a model first (a stable sort): on xdist workers the longest tests then start at
    once instead of finishing last on one worker while the other idles."""
    items.sort(key=lambda item: 0 if item.get_closest_marker("slow") else 1)
