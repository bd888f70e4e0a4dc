"""Data sources read row by row, each row with its file and line: files, folders, globs, `hf:` ids, `builtin:` names.

Sources are files, folders, globs, `hf:<dataset id>` or `builtin:<name>`; formats jsonl, json,
parquet, csv and plain text (one document per file). Every row is read with its file and line,
so a rejected row can be reported as `file:line: reason` in `rejected.jsonl`. Readers are
generators: nothing is held in memory beyond the current batch.
"""

from __future__ import annotations

import csv
import glob
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from korean_llm.builtin import resolve_builtin_data
from korean_llm.config import DataConfig, DataSource
from korean_llm.data.rejects import RejectLog
from korean_llm.errors import DataError, RetryableError, transient

EXTENSIONS = {
    ".jsonl": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".csv": "csv",
    ".txt": "text",
    ".md": "text",
}


@dataclass(frozen=True)
class Record:
    """One input row with its origin; `error` is set when the row could not even be parsed.

    `replaced` marks a row whose invalid UTF-8 bytes were replaced by U+FFFD (`invalid_utf8: replace`).
    """

    file: str
    line: int
    data: dict[str, Any] | None
    error: str | None = None
    replaced: bool = False


def source_files(source: DataSource) -> list[tuple[Path, str]]:
    """Expand a source into (file, format) pairs, sorted for a deterministic order."""
    spec = source.path
    if spec.startswith("builtin:"):
        roots = resolve_builtin_data(spec)
    elif any(ch in spec for ch in "*?["):
        roots = [Path(p) for p in sorted(glob.glob(spec, recursive=True))]
        if not roots:
            raise DataError(f"data source '{spec}': the pattern matches no file")
    else:
        roots = [Path(spec)]
    files: list[Path] = []
    for root in roots:
        if root.is_dir():
            files.extend(sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS))
        elif root.is_file():
            files.append(root)
        else:
            raise DataError(f"data source '{spec}': {root} does not exist")
    if not files:
        raise DataError(f"data source '{spec}': no data files (expected {', '.join(EXTENSIONS)})")
    out = []
    for f in files:
        fmt = source.format if source.format != "auto" else EXTENSIONS.get(f.suffix.lower())
        if fmt is None:
            raise DataError(f"{f}: cannot tell the format from the extension; set format in the data source")
        out.append((f, fmt))
    return out


def _decode(raw: bytes, policy: str) -> tuple[str | None, bool]:
    """(text, had_invalid_bytes); text is None when the policy rejects invalid UTF-8."""
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        if policy == "replace":
            return raw.decode("utf-8", errors="replace"), True
        return None, True


def _read_jsonl(path: Path, policy: str) -> Iterator[Record]:
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            text, bad = _decode(raw, policy)
            if text is None:
                yield Record(str(path), lineno, None, "invalid UTF-8")
                continue
            text = text.rstrip("\r\n")
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                yield Record(str(path), lineno, None, f"malformed JSON: {exc.msg} (column {exc.colno})")
                continue
            if not isinstance(obj, dict):
                yield Record(str(path), lineno, None, f"not a JSON object: found {type(obj).__name__}")
                continue
            yield Record(str(path), lineno, obj, replaced=bad)


def _read_json(path: Path, policy: str) -> Iterator[Record]:
    text, bad = _decode(path.read_bytes(), policy)
    if text is None:
        yield Record(str(path), 1, None, "invalid UTF-8")
        return
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        yield Record(str(path), exc.lineno, None, f"malformed JSON: {exc.msg} (column {exc.colno})")
        return
    rows = obj if isinstance(obj, list) else [obj]
    for i, row in enumerate(rows, start=1):
        if isinstance(row, dict):
            yield Record(str(path), i, row, replaced=bad)
        else:
            yield Record(str(path), i, None, f"not a JSON object: found {type(row).__name__}")


def _read_parquet(path: Path) -> Iterator[Record]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:
        raise DataError(f"{path}: not a readable parquet file: {exc}") from exc
    row = 0
    for batch in pf.iter_batches(batch_size=1024):
        for obj in batch.to_pylist():
            row += 1
            yield Record(str(path), row, obj)


def _read_csv(path: Path, policy: str) -> Iterator[Record]:
    errors = "replace" if policy == "replace" else "strict"
    try:
        with open(path, encoding="utf-8", errors=errors, newline="") as fh:
            for i, obj in enumerate(csv.DictReader(fh), start=2):  # line 1 is the header
                replaced = policy == "replace" and any("\ufffd" in str(v) for v in obj.values())
                yield Record(str(path), i, dict(obj), replaced=replaced)
    except UnicodeDecodeError:
        yield Record(str(path), 0, None, "invalid UTF-8")


def _read_text(path: Path, policy: str, text_field: str) -> Iterator[Record]:
    text, bad = _decode(path.read_bytes(), policy)
    if text is None:
        yield Record(str(path), 1, None, "invalid UTF-8")
        return
    yield Record(str(path), 1, {text_field: text.replace("\r\n", "\n")}, replaced=bad)


def _read_hub(source: DataSource) -> Iterator[Record]:
    from datasets import load_dataset

    name = source.path.removeprefix("hf:")
    try:
        ds = load_dataset(name, split=source.split, streaming=True)
        for i, obj in enumerate(ds, start=1):
            yield Record(source.path, i, dict(obj))
    except Exception as exc:
        if transient(exc):
            raise RetryableError(f"data source '{source.path}': the hub cannot be reached now: {exc}") from exc
        raise DataError(f"data source '{source.path}': cannot load from the hub: {exc}") from exc


def read_source(source: DataSource, invalid_utf8: str = "reject") -> Iterator[Record]:
    """Every record of one source, in a stable order, capped at `source.max_rows`."""
    if source.path.startswith("hf:"):
        it: Iterable[Record] = _read_hub(source)
    else:
        it = _iter_files(source, invalid_utf8)
    for n, rec in enumerate(it, start=1):
        if source.max_rows is not None and n > source.max_rows:
            return
        yield rec


def _iter_files(source: DataSource, invalid_utf8: str) -> Iterator[Record]:
    for path, fmt in source_files(source):
        if fmt == "jsonl":
            yield from _read_jsonl(path, invalid_utf8)
        elif fmt == "json":
            yield from _read_json(path, invalid_utf8)
        elif fmt == "parquet":
            yield from _read_parquet(path)
        elif fmt == "csv":
            yield from _read_csv(path, invalid_utf8)
        else:
            yield from _read_text(path, invalid_utf8, source.text_field)


def collect_rows(
    data: DataConfig,
    validate: Callable[[DataSource, dict[str, Any]], dict[str, Any]],
    rejects: RejectLog,
    input: str | None = None,
) -> list[dict[str, Any]]:
    """Read every source, validate each row (ValueError = rejected with its message), keep the good ones.

    `input`: the kind recorded with each rejected row (default: the log's own)."""
    if not data.sources:
        raise DataError("data.sources is empty: name at least one file, folder, hub id or builtin source")
    rows: list[dict[str, Any]] = []
    for source in data.sources:
        for rec in read_source(source, data.invalid_utf8):
            rejects.rows_in += 1
            if rec.error is not None or rec.data is None:
                rejects.reject(rec, rec.error or "unreadable row", input=input)
                continue
            try:
                rows.append(validate(source, rec.data))
            except ValueError as exc:
                rejects.reject(rec, str(exc), input=input)
    return rows
