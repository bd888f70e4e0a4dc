"""Drill: checkpoints damaged after their save. The `.complete` marker lists every file with size and SHA-256;
resume verifies all of it, skips each damaged checkpoint with the reason and resumes from an intact older one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from korean_llm.pipeline.artifacts import checkpoint_problem, latest_checkpoint

from .helpers import logged_steps, manifest_of, run_dir, start_stage, with_training

pytestmark = pytest.mark.slow  # every drill here trains the tiny model


def _checkpoints_of_an_interrupted_run(
    tmp_path: Path, write_config, max_steps: int, died_after: int
) -> tuple[Path, Path]:
    """The work folder a run killed after step `died_after` leaves: its checkpoints up to that step, every one kept.

    Made from a finished run (moved back to `cpt.partial/`, later checkpoints removed) so the set of checkpoints is
    exact; a kill -9 lands a step or two late on a loaded machine.
    """
    config = write_config("cpt", with_training(max_steps=max_steps, save_steps=3, save_total_limit=None))
    proc = start_stage("cpt", config, tmp_path / "events1.jsonl")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    stage = run_dir(tmp_path) / "cpt"
    partial = stage.with_name("cpt.partial")
    stage.rename(partial)
    for name in ("manifest.json", "log_history.json"):
        (partial / name).unlink()
    for name in ("adapter", "tokenizer"):
        shutil.rmtree(partial / name)
    ckpts = partial / "checkpoints"
    for ckpt in ckpts.glob("checkpoint-*"):
        if int(ckpt.name.rsplit("-", 1)[1]) > died_after:
            shutil.rmtree(ckpt)
    return config, ckpts


def test_the_marker_lists_every_file_with_size_and_checksum(tmp_path: Path, write_config) -> None:
    _, ckpts = _checkpoints_of_an_interrupted_run(tmp_path, write_config, 9, 7)
    ckpt = latest_checkpoint(ckpts)
    assert ckpt is not None
    marker = json.loads((ckpt / ".complete").read_text())
    on_disk = sorted(p.relative_to(ckpt).as_posix() for p in ckpt.rglob("*") if p.is_file() and p.name != ".complete")
    assert sorted(marker["files"]) == on_disk
    for must in ("adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"):
        assert must in marker["files"], must
    assert all(len(e["sha256"]) == 64 and e["size"] == (ckpt / n).stat().st_size for n, e in marker["files"].items())


def test_torn_files_with_the_marker_present_are_skipped_and_resume_works(tmp_path: Path, write_config) -> None:
    config, ckpts = _checkpoints_of_an_interrupted_run(tmp_path, write_config, 14, 10)
    newest = latest_checkpoint(ckpts)
    assert newest is not None and newest.name == "checkpoint-9"
    older = ckpts / "checkpoint-6"
    assert checkpoint_problem(older) is None

    rng = newest / "rng_state.pth"  # truncated after the save: the marker is there and says otherwise
    rng.write_bytes(rng.read_bytes()[: rng.stat().st_size // 2])
    assert checkpoint_problem(newest) == (
        f"rng_state.pth is {rng.stat().st_size} bytes, .complete recorded "
        f"{json.loads((newest / '.complete').read_text())['files']['rng_state.pth']['size']} (torn or changed)"
    )
    flipped = ckpts / "checkpoint-flipped-copy"
    shutil.copytree(older, flipped)
    opt = flipped / "optimizer.pt"
    data = bytearray(opt.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed
    opt.write_bytes(bytes(data))
    assert checkpoint_problem(flipped) == "optimizer.pt does not match its SHA-256 in .complete (corrupted)"
    shutil.rmtree(flipped)
    missing = ckpts / "checkpoint-8"
    shutil.copytree(older, missing)
    (missing / "scheduler.pt").unlink()
    assert checkpoint_problem(missing) == "scheduler.pt listed in .complete is missing"

    proc = start_stage("cpt", config, tmp_path / "events2.jsonl")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    assert "skipping checkpoint checkpoint-9: rng_state.pth is" in out
    assert "skipping checkpoint checkpoint-8: scheduler.pt listed in .complete is missing" in out
    stage = run_dir(tmp_path) / "cpt"
    metrics = manifest_of(stage)["metrics"]
    assert metrics["resumed_from_step"] == 6 and metrics["global_step"] == 14
    assert logged_steps(stage) == list(range(1, 15))


def test_a_marker_without_file_list_still_gets_the_structural_checks(tmp_path: Path, write_config) -> None:
    _, ckpts = _checkpoints_of_an_interrupted_run(tmp_path, write_config, 6, 4)
    ckpt = ckpts / "checkpoint-3"
    (ckpt / ".complete").write_text("3")  # a marker in the older format: the step number only
    assert checkpoint_problem(ckpt) is None
    rng = ckpt / "rng_state.pth"
    rng.write_bytes(rng.read_bytes()[:100])
    assert checkpoint_problem(ckpt) == "truncated rng_state.pth"
