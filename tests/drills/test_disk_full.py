"""Drill: a full volume (a small tmpfs, mounted here as root, as in CI) while writing data, a checkpoint, a
manifest or a release. One message naming the path and the free space, exit 4, nothing that looks finished, and
the same command succeeds once space is freed."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from korean_llm.pipeline.artifacts import Manifest, StageDir
from korean_llm.pipeline.diskspace import disk_full, free_space

from ..conftest import run_cli
from .helpers import logged_steps, manifest_of, with_training

MB = 1024 * 1024


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of 64 MiB at tmp_path/vol; `fill(vol, leave)` shrinks what is free to `leave` bytes."""
    if os.geteuid() != 0:
        pytest.fail("the disk-full drills mount a tmpfs and need root (CI and the dev container run as root)")
    vol = tmp_path / "vol"
    vol.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(vol)], check=True)
    try:
        yield vol
    finally:
        subprocess.run(["umount", "-l", str(vol)], check=False)


def fill(vol: Path, leave: int) -> Path:
    """Write a ballast file so that `leave` bytes stay free on the volume."""
    ballast = vol / "ballast"
    free, _ = free_space(vol)
    with open(ballast, "ab") as fh:
        fh.truncate(0)
        remaining = free - leave
        block = b"\0" * MB
        while remaining > 0:
            fh.write(block[: min(MB, remaining)])
            remaining -= min(MB, remaining)
    assert abs(free_space(vol)[0] - leave) <= 64 * 1024, free_space(vol)
    return ballast


def _on(vol: Path, write_config, stage: str, overrides: dict, name: str | None = None) -> Path:
    run = {"data_root": str(vol / "data"), "output_root": str(vol / "output")}
    return write_config(stage, {**overrides, "run": {**overrides.get("run", {}), **run}}, name=name)


def _assert_one_clear_message(result: subprocess.CompletedProcess[str], where: Path) -> None:
    assert result.returncode == 4, result.stderr[-3000:]
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert errors[0].startswith(f"error: disk full: no space left on device writing {where}"), errors[0]
    assert " free of 64.0 MiB on that volume" in errors[0]
    assert "Traceback" not in result.stderr


def test_the_real_writers_errors_are_recognised(volume: Path) -> None:
    """Python, torch.save (zip writer) and safetensors, each on a full volume: all three become one DiskFull."""
    import torch
    from safetensors.torch import save_file

    fill(volume, 0)
    big = {"w": torch.zeros(256 * 1024)}
    errors: list[BaseException] = []
    for write in (
        lambda: (volume / "plain.bin").write_bytes(b"x" * MB),
        lambda: torch.save(big, volume / "optimizer.pt"),
        lambda: save_file(big, str(volume / "adapter_model.safetensors")),
    ):
        with pytest.raises(Exception) as caught:
            write()
        errors.append(caught.value)
    assert isinstance(errors[0], OSError) and errors[0].errno == errno.ENOSPC
    assert "inline_container.cc" in str(errors[1])  # torch names no cause: recognised by the free space
    for err in errors:
        full = disk_full(err, [volume])
        assert full is not None and full.exit_code == 4, err
        assert f"writing {volume}" in str(full) and "free of 64.0 MiB" in str(full)
    assert disk_full(ValueError("file write failed"), [volume]) is None


def test_manifest_write_on_a_full_disk_leaves_the_work_folder_unpublished(volume: Path) -> None:
    sdir = StageDir(volume / "output", "cpt")
    sdir.prepare()
    (sdir.work / "adapter.bin").write_bytes(b"w" * 1000)
    fill(volume, 0)
    manifest = Manifest(stage="cpt", model_name="m", run_id="r", base_model="b", config_hash="h", extra={"x": "y" * MB})
    with pytest.raises(OSError) as caught:
        sdir.commit(manifest)
    full = disk_full(caught.value, [sdir.work])
    assert full is not None and "free of 64.0 MiB" in str(full)
    assert not sdir.final.exists() and sorted(p.name for p in sdir.work.iterdir()) == ["adapter.bin"]  # no temp file
    (volume / "ballast").unlink()
    sdir.commit(manifest)
    assert Manifest.model_validate_json((sdir.final / "manifest.json").read_text()).extra["x"] == "y" * MB


def _checkpoint_bytes(tmp_path: Path, write_config) -> int:
    """Size of one CPT checkpoint of this config, from a run on an ordinary disk."""
    cfg = write_config("cpt", with_training(max_steps=2, save_steps=2), name="probe.yaml")
    probe = run_cli("cpt", "--config", str(cfg))
    assert probe.returncode == 0, probe.stderr[-3000:]
    ckpt = tmp_path / "output" / "tiny-ko" / "t" / "cpt" / "checkpoints" / "checkpoint-2"
    return sum(p.stat().st_size for p in ckpt.rglob("*") if p.is_file())


@pytest.mark.slow
def test_checkpoint_save_on_a_full_disk_then_retry(tmp_path: Path, volume: Path, write_config) -> None:
    size = _checkpoint_bytes(tmp_path, write_config)
    cfg = _on(volume, write_config, "cpt", with_training(max_steps=6, save_steps=3))
    ballast = fill(volume, size // 2)  # room for the config snapshot, not for a whole checkpoint
    failed = run_cli("cpt", "--config", str(cfg))
    run = volume / "output" / "tiny-ko" / "t"
    _assert_one_clear_message(failed, run / "cpt.partial")
    assert not (run / "cpt").exists()
    torn = run / "cpt.partial" / "checkpoints" / "checkpoint-3"
    assert not (torn / ".complete").exists()  # the torn save is not taken for a checkpoint

    ballast.unlink()
    retried = run_cli("cpt", "--config", str(cfg))
    assert retried.returncode == 0, retried.stderr[-3000:]
    assert manifest_of(run / "cpt")["metrics"]["global_step"] == 6
    assert logged_steps(run / "cpt") == [1, 2, 3, 4, 5, 6]


def test_preprocess_data_on_a_full_disk_then_retry(volume: Path, write_config) -> None:
    cfg = _on(volume, write_config, "preprocess", {"preprocess": {"cpt_sources": [{"path": "builtin:korean-corpus"}]}})
    ballast = fill(volume, 16 * 1024)
    failed = run_cli("preprocess", "--config", str(cfg))
    data = volume / "data" / "tiny-ko" / "t"
    _assert_one_clear_message(failed, volume)
    assert not (data / "processed").exists()
    assert not (volume / "output" / "tiny-ko" / "t" / "preprocess").exists()

    ballast.unlink()
    retried = run_cli("preprocess", "--config", str(cfg))
    assert retried.returncode == 0, retried.stderr[-3000:]
    stats = json.loads((data / "processed" / "stats.json").read_text())
    assert stats["inputs"]["cpt"]["rows_in"] > 0


def test_deploy_publish_on_a_full_disk_keeps_current_and_retries(volume: Path, write_config) -> None:
    from ..fake_stages import adapter_stage

    for run_id in ("r1", "r2"):
        adapter_stage(volume / "output" / "tiny-ko" / run_id, lora_scale=2.0)
    releases = volume / "output" / "tiny-ko" / "releases"

    def deploy(run_id: str) -> subprocess.CompletedProcess[str]:
        over = {"run": {"run_id": run_id, "previous_stage": "sft"}}
        return run_cli("deploy", "--config", str(_on(volume, write_config, "deploy", over, name=f"d-{run_id}.yaml")))

    assert deploy("r1").returncode == 0
    release_size = sum(p.stat().st_size for p in (releases / "r1").rglob("*") if p.is_file())
    ballast = fill(volume, release_size // 2)
    failed = deploy("r2")
    _assert_one_clear_message(failed, releases)
    assert os.readlink(releases / "current") == "r1"
    assert json.loads((releases / "current.json").read_text())["version"] == "r1"
    assert not (releases / "r2").exists()
    assert not (volume / "output" / "tiny-ko" / "r2" / "deploy").exists()

    ballast.unlink()
    retried = deploy("r2")
    assert retried.returncode == 0, retried.stderr[-3000:]
    assert os.readlink(releases / "current") == "r2"
    assert json.loads((releases / "current.json").read_text())["version"] == "r2"
    assert sorted(p.name for p in releases.iterdir()) == ["current", "current.json", "r1", "r2"]  # no temp, no staging
