"""Releases of a model: `<output_root>/<model>/releases/<version>/` and an atomically switched `current` pointer.

    releases/<version>/            a complete model folder; release.json is written last, before the rename
    releases/current -> <version>  relative symlink, replaced by renaming a temporary symlink over it (os.replace)
    releases/current.json -> current/release.json   fixed relative symlink: the metadata of whatever `current`
                                   names, so the pointer and its metadata change in the same single rename

A release is assembled in `releases/.<version>.partial-<pid>` and renamed into place only when
complete, so at every instant `current` names a finished release: a crash before the switch leaves
the previous one serving, and a rerun finishes the job (an identical finished release is reused).
Publishing holds `<model>/releases.lock` (korean_llm.pipeline.locking, safe on NFS): one deploy of a model publishes
at a time, so the staging folders it finds are really left by interrupted publishes and can be removed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
from pathlib import Path
from typing import Any

from korean_llm.config import StageConfig
from korean_llm.errors import ConfigError
from korean_llm.pipeline.artifacts import atomic_write_json, atomic_write_text, fsync_dir
from korean_llm.pipeline.locking import DirLock

log = logging.getLogger("korean_llm")

RELEASES = "releases"
CURRENT = "current"
CURRENT_INFO = "current.json"
RELEASE_INFO = "release.json"
# Test hook: the process kills itself (SIGKILL, no clean-up) at the named point: publish, switch (just before the
# rename of `current`) or switched (just after it).
CRASH_ENV = "KOREAN_LLM_TEST_CRASH_AT"
# Set by the chart for the deploy container: the released version is written to <dir>/version (Argo output).
RESULT_DIR_ENV = "KOREAN_LLM_RESULT_DIR"


def releases_dir(cfg: StageConfig) -> Path:
    if cfg.run.run_id == RELEASES:
        raise ConfigError(f"{cfg.source}: run.run_id '{RELEASES}' collides with the releases folder; pick another")
    return cfg.run.output_root / cfg.run.model_name / RELEASES


def publish_lock(cfg: StageConfig, root: Path) -> DirLock:
    """The lock every deploy of this model holds from staging to pruning: `<model>/releases.lock`."""
    lc = cfg.lock
    return DirLock(
        root.with_name(f"{RELEASES}.lock"),
        what=f"publishing into {root}",
        info={"stage": cfg.stage, "run_id": cfg.run.run_id, "model_name": cfg.run.model_name},
        stale_seconds=lc.stale_seconds,
        heartbeat_seconds=lc.heartbeat_seconds,
        wait=lc.wait,
        wait_timeout_seconds=lc.wait_timeout_seconds,
    )


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


def _ensure_symlink(link: Path, target: str) -> None:
    """Make `link` a symlink to `target` with one rename (a temporary link renamed over it)."""
    if link.is_symlink() and os.readlink(link) == target:
        return
    if link.exists() and not link.is_symlink() and link.is_dir():
        raise ConfigError(f"{link}: exists and is a folder; move it away so releases can be switched")
    tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)


def switch_current(root: Path, version: str) -> None:
    """Point `current` at `version` in one rename; `current.json` follows it (a symlink through `current`).

    There is no second write after the switch: a crash or a full disk at any instant leaves `current` and
    `current.json` naming the same finished release, the old one or the new one.
    """
    link = root / CURRENT
    if link.exists() and not link.is_symlink():
        raise ConfigError(f"{link}: exists and is not a symlink; move it away so releases can be switched")
    for stale in [*root.glob(f".{CURRENT}.tmp-*"), *root.glob(f".{CURRENT}.json.tmp-*")]:  # left by a killed switch
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    # Before the switch: a finished release carries its own release.json, so the link resolves at once.
    _ensure_symlink(root / CURRENT_INFO, f"{CURRENT}/{RELEASE_INFO}")
    tmp = root / f".{CURRENT}.tmp-{os.getpid()}"
    os.symlink(version, tmp)  # relative: the volume may be mounted at another path by the server
    crash_point("switch")
    os.replace(tmp, link)
    crash_point("switched")  # switched, not yet synced nor pruned, the stage not finished: a rerun completes it
    fsync_dir(root)


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
