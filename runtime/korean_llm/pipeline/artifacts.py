"""Stage contract: manifests, atomic stage folders and checkpoint discovery.

A stage works in `<output>/<stage>.partial/` (its checkpoints live there too) and, once
everything is written, renames it to `<output>/<stage>/` with `manifest.json` inside. A folder
without a manifest is never taken as a finished stage, so a killed pod cannot fake success.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import struct
import time
import zipfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from korean_llm.errors import ManifestError

MANIFEST = "manifest.json"
CHECKPOINTS = "checkpoints"
COMPLETE_MARKER = ".complete"
SCHEMA_VERSION = 1


class Manifest(BaseModel):
    """What a stage produced, read by the stages after it."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    stage: str
    model_name: str
    run_id: str
    status: str = "complete"
    base_model: str
    # Folder of the stage this one started from (None: started from base_model).
    init_from: str | None = None
    # Paths relative to the stage folder.
    adapter_path: str | None = None
    merged_path: str | None = None
    tokenizer_path: str | None = None
    tokenizer_hash: str | None = None
    config_hash: str
    inputs: list[str] = Field(default_factory=list)
    outputs: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, float | int | None] = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)

    def resolve(self, stage_dir: Path, rel: str | None) -> Path | None:
        return None if rel is None else stage_dir / rel


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder, fsync, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_manifest(stage_dir: Path, expected_stage: str | None = None) -> Manifest:
    """Load and check `<stage_dir>/manifest.json`; every failure names the file and what was wrong."""
    path = stage_dir / MANIFEST
    if not path.is_file():
        partial = stage_dir.with_name(stage_dir.name + ".partial")
        hint = f" ({partial} exists: that stage did not finish)" if partial.exists() else ""
        raise ManifestError(f"{path}: manifest not found, the stage has not completed{hint}")
    try:
        manifest = Manifest.model_validate_json(path.read_text(encoding="utf-8"))
    except Exception as exc:  # pydantic or decode error: either way the file is unusable
        raise ManifestError(f"{path}: unreadable manifest: {exc}") from exc
    if manifest.status != "complete":
        raise ManifestError(f"{path}: status is '{manifest.status}', expected 'complete'")
    if expected_stage is not None and manifest.stage != expected_stage:
        raise ManifestError(f"{path}: manifest is for stage '{manifest.stage}', expected '{expected_stage}'")
    for key in ("adapter_path", "merged_path", "tokenizer_path"):
        rel = getattr(manifest, key)
        if rel is not None and not (stage_dir / rel).exists():
            raise ManifestError(f"{path}: {key} '{rel}' does not exist in {stage_dir}")
    return manifest


class StageDir:
    """The folder of one stage run: work in `<stage>.partial`, publish as `<stage>`."""

    def __init__(self, output_dir: Path, stage: str) -> None:
        self.final = output_dir / stage
        self.work = output_dir / f"{stage}.partial"
        self.checkpoints = self.work / CHECKPOINTS
        self.started = time.time()

    def completed_manifest(self) -> Manifest | None:
        if (self.final / MANIFEST).is_file():
            return read_manifest(self.final)
        return None

    def prepare(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)

    def commit(self, manifest: Manifest, keep_checkpoints: bool = False) -> Path:
        """Write the manifest into the work folder, then rename it into place (atomic on one filesystem)."""
        if self.final.exists():
            raise ManifestError(f"{self.final}: already exists; refusing to overwrite a finished stage")
        if not keep_checkpoints and self.checkpoints.exists():
            shutil.rmtree(self.checkpoints)
        manifest.timings.setdefault("started_at", self.started)
        manifest.timings["finished_at"] = time.time()
        manifest.timings["wall_seconds"] = round(manifest.timings["finished_at"] - self.started, 3)
        atomic_write_json(self.work / MANIFEST, manifest.model_dump(mode="json"))
        fsync_dir(self.work)
        os.rename(self.work, self.final)
        fsync_dir(self.final.parent)
        return self.final


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Hash of the vocabulary, special tokens and chat template: equal hashes mean interchangeable tokenizers."""
    h = hashlib.sha256()
    vocab = tokenizer.get_vocab()
    h.update(json.dumps(sorted(vocab.items()), ensure_ascii=False).encode())
    h.update(json.dumps(sorted(map(str, tokenizer.all_special_tokens))).encode())
    h.update((getattr(tokenizer, "chat_template", None) or "").encode())
    return h.hexdigest()[:16]


def safetensors_complete(path: Path) -> bool:
    """True when the header parses and the file is as long as the tensors it declares."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            raw = fh.read(8)
            if len(raw) < 8:
                return False
            (header_len,) = struct.unpack("<Q", raw)
            if header_len <= 0 or 8 + header_len > size:
                return False
            header = json.loads(fh.read(header_len))
    except (OSError, ValueError):
        return False
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    return size >= 8 + header_len + end


def _zip_complete(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return len(zf.namelist()) > 0
    except (OSError, zipfile.BadZipFile):
        return False


def checkpoint_problem(ckpt: Path) -> str | None:
    """Why `ckpt` cannot be resumed from, or None when it is complete."""
    if not ckpt.is_dir() or not any(ckpt.iterdir()):
        return "empty folder"
    if not (ckpt / COMPLETE_MARKER).is_file():
        return f"no {COMPLETE_MARKER} marker (save was interrupted)"
    state = ckpt / "trainer_state.json"
    try:
        json.loads(state.read_text(encoding="utf-8"))["global_step"]
    except (OSError, ValueError, KeyError):
        return "missing or unreadable trainer_state.json"
    weights = sorted(ckpt.glob("*.safetensors"))
    if not weights and not list(ckpt.glob("pytorch_model*.bin")):
        return "no weights file"
    for w in weights:
        if not safetensors_complete(w):
            return f"truncated weights {w.name}"
    for name in ("optimizer.pt", "scheduler.pt"):
        if (ckpt / name).exists() and not _zip_complete(ckpt / name):
            return f"truncated {name}"
    return None


def checkpoint_step(path: Path) -> int:
    try:
        return int(path.name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def latest_checkpoint(checkpoints_dir: Path, log: Any = None) -> Path | None:
    """Newest complete `checkpoint-<step>` folder; torn ones are skipped (and reported through `log`)."""
    if not checkpoints_dir.is_dir():
        return None
    candidates = sorted(
        (p for p in checkpoints_dir.glob("checkpoint-*") if checkpoint_step(p) >= 0),
        key=checkpoint_step,
        reverse=True,
    )
    for ckpt in candidates:
        problem = checkpoint_problem(ckpt)
        if problem is None:
            return ckpt
        if log is not None:
            log(f"skipping checkpoint {ckpt.name}: {problem}")
    return None
