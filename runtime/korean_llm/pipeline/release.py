"""Releases of a model: `<output_root>/<model>/releases/<version>/` and an atomically switched `current` pointer.

    releases/<version>/            a complete model folder; release.json is written last, before the rename
    releases/current -> <version>  relative symlink, replaced by renaming a temporary symlink over it (os.replace)
    releases/current.json          the same facts for readers that cannot follow links, written after the switch

A release is assembled in `releases/.<version>.partial-<pid>` and renamed into place only when
complete, so at every instant `current` names a finished release: a crash before the switch leaves
the previous one serving, and a rerun finishes the job (an identical finished release is reused).
One deploy per model runs at a time (the DAG is sequential), so stale staging folders are removed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from korean_llm.config import StageConfig
from korean_llm.errors import ConfigError
from korean_llm.pipeline.artifacts import atomic_write_json, atomic_write_text, fsync_dir

log = logging.getLogger("korean_llm")

RELEASES = "releases"
CURRENT = "current"
RELEASE_INFO = "release.json"
# Test hook: the process kills itself (SIGKILL, no clean-up) at the named point: publish or switch.
CRASH_ENV = "KOREAN_LLM_TEST_CRASH_AT"
# Set by the chart for the deploy container: the released version is written to <dir>/version (Argo output).
RESULT_DIR_ENV = "KOREAN_LLM_RESULT_DIR"


def releases_dir(cfg: StageConfig) -> Path:
    if cfg.run.run_id == RELEASES:
        raise ConfigError(f"{cfg.source}: run.run_id '{RELEASES}' collides with the releases folder; pick another")
    return cfg.run.output_root / cfg.run.model_name / RELEASES


def crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        log.warning("%s=%s: killing this process to simulate a crash", CRASH_ENV, name)
        os.kill(os.getpid(), signal.SIGKILL)


def release_info(folder: Path) -> dict[str, Any] | None:
    """The release.json of a finished release, or None when the folder is not one."""
    path = folder / RELEASE_INFO
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def current_release(root: Path) -> Path | None:
    """The folder `current` points at, when it is a finished release."""
    link = root / CURRENT
    if not link.is_symlink():
        return None
    target = link.resolve()
    return target if release_info(target) is not None else None


def new_staging(root: Path, version: str) -> Path:
    """An empty folder to assemble a release in; leftovers of crashed publishes are removed first."""
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".*.partial-*"):
        log.info("removing %s left by an interrupted publish", stale)
        shutil.rmtree(stale, ignore_errors=True)
    staging = root / f".{version}.partial-{os.getpid()}"
    staging.mkdir()
    return staging


def publish(staging: Path, root: Path, version: str, info: dict[str, Any]) -> Path:
    """Write release.json into the complete staging folder and rename it to `releases/<version>`."""
    final = root / version
    if final.exists():
        raise ConfigError(
            f"{final}: release '{version}' already exists with other content (source {release_info(final)}); "
            "set deploy.version to a new version"
        )
    crash_point("publish")
    # The inference server runs as another user: weights are written 0600 by some savers.
    for path in staging.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    staging.chmod(0o755)
    atomic_write_json(staging / RELEASE_INFO, info)
    fsync_dir(staging)
    os.rename(staging, final)
    fsync_dir(root)
    return final


def switch_current(root: Path, version: str) -> None:
    """Point `current` at `version` in one rename, then refresh current.json."""
    link = root / CURRENT
    if link.exists() and not link.is_symlink():
        raise ConfigError(f"{link}: exists and is not a symlink; move it away so releases can be switched")
    for stale in root.glob(f".{CURRENT}.tmp-*"):  # left by a switch that was killed
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    tmp = root / f".{CURRENT}.tmp-{os.getpid()}"
    os.symlink(version, tmp)  # relative: the volume may be mounted at another path by the server
    crash_point("switch")
    os.replace(tmp, link)
    fsync_dir(root)
    info = release_info(root / version) or {}
    atomic_write_json(root / "current.json", {**info, "version": version, "switched_at": time.time()})


def prune(root: Path, keep: int) -> list[str]:
    """Delete the oldest finished releases beyond `keep`, never the current one; return what was removed."""
    current = current_release(root)
    found = []
    for folder in root.iterdir():
        info = release_info(folder) if folder.is_dir() and not folder.name.startswith(".") else None
        if info is not None and not folder.is_symlink():
            found.append((float(info.get("released_at", 0.0)), folder))
    found.sort(reverse=True)
    removed = []
    for _, folder in found[keep:]:
        if current is not None and folder.resolve() == current:
            continue
        shutil.rmtree(folder)
        removed.append(folder.name)
    return removed


def write_result(version: str) -> Path | None:
    """Write the version where the Argo step's output parameter reads it, when the chart asks for it."""
    folder = os.environ.get(RESULT_DIR_ENV)
    if not folder:
        return None
    path = Path(folder) / "version"
    atomic_write_text(path, version)
    return path
