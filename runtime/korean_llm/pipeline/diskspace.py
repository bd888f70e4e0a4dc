"""A full disk, recognised wherever it happens and reported once: the path, the free space, exit 4.

Writers report a full volume in different ways: Python's own I/O raises `OSError(ENOSPC)` with the file name;
pyarrow raises `OSError` with "No space left on device" in the text; safetensors (Rust) raises
`SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, ... }")`; torch.save's zip
writer raises `RuntimeError("... PytorchStreamWriter failed writing file data/0: file write failed")` or, when the
write fails inside the archive's bookkeeping,
`RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")` (torch 2.13, full tmpfs),
which
names no cause at all (torch/csrc/jit/serialization, `caffe2::serialize::PyTorchStreamWriter`), so that one
counts as a full disk only when the volume is in fact (nearly) full. `disk_full` walks the exception chain and
returns the one `DiskFull` message; everything else is left to the caller.

Nothing that looks finished is left behind by construction: stages write into `<stage>.partial/` and rename
it only after the manifest is written; checkpoints are trusted only with their `.complete` marker; deploy
switches `current` with one rename. A retry once space is freed resumes from the newest complete checkpoint.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from korean_llm.errors import DiskFull

FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
FULL_TEXTS = ("no space left on device", "disk quota exceeded", "storagefull", "code: 28,")
# torch's stream writer says only this; with less free space than this the volume is taken as full.
TORCH_WRITE_FAILED = ("file write failed", "pytorchstreamwriter failed writing", "inline_container.cc")
NEARLY_FULL_BYTES = 64 * 1024 * 1024


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_space(path: Path) -> tuple[int, int]:
    """(free bytes for this user, total bytes) of the volume holding `path` (or its nearest existing parent)."""
    usage = shutil.disk_usage(_existing(path))
    return usage.free, usage.total


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def _says_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
        return True
    text = str(exc).lower()
    return any(t in text for t in FULL_TEXTS)


def disk_full(exc: BaseException, candidates: Iterable[Path] = ()) -> DiskFull | None:
    """The DiskFull error for `exc` when it (or its cause) is a full volume, else None.

    The path is the file the OS named, else the fullest of `candidates` (the stage's output and data folders).
    """
    places = [Path(p) for p in candidates]
    for err in _chain(exc):
        named = getattr(err, "filename", None) if isinstance(err, OSError) else None
        if _says_full(err):
            return _error(err, Path(os.fsdecode(named)) if named else _fullest(places))
        text = str(err).lower()
        if isinstance(err, RuntimeError) and any(t in text for t in TORCH_WRITE_FAILED) and places:
            fullest = _fullest(places)
            if fullest is not None and free_space(fullest)[0] < NEARLY_FULL_BYTES:
                return _error(err, fullest)
    return None


def _fullest(places: list[Path]) -> Path | None:
    existing = [p for p in places if str(p)]
    return min(existing, key=lambda p: free_space(p)[0]) if existing else None


def _error(err: BaseException, path: Path | None) -> DiskFull:
    where = f" writing {path}" if path is not None else ""
    space = ""
    if path is not None:
        try:
            free, total = free_space(path)
            space = f" ({human(free)} free of {human(total)} on that volume)"
        except OSError:
            space = ""
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return DiskFull(
        f"disk full: no space left on device{where}{space}: {first[:300]}. Nothing was published; free space "
        "(or lower training.save_total_limit) and run the same command again: it resumes from the newest complete "
        "checkpoint"
    )
