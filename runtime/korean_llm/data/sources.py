"""Data sources read row by row, each row with its file and line: files, folders, globs, `hf:` ids, `builtin:` names.

Sources are files, folders, globs, `hf:<dataset id>` or `builtin:<name>`; formats jsonl, json,
parquet, csv and plain text (one document per file), read by `korean_llm.data.readers` (one
encoding per file, every record with its real line or record number) and mapped to the stage's
field names by the source's `mapping` (`korean_llm.data.mapping`). A rejected row is reported as
`file:line: reason` in `rejected.jsonl`, and `collect_rows` checks that rows read = rows kept +
rows rejected. Readers are generators: nothing is held in memory beyond the current batch.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from korean_llm.builtin import resolve_builtin_data
from korean_llm.config import DataConfig, DataSource
from korean_llm.data import readers
from korean_llm.data.mapping import apply as apply_mapping
from korean_llm.data.mapping import check_columns
from korean_llm.data.readers import ReadLog, Record
from korean_llm.data.rejects import RejectLog
from korean_llm.errors import DataError

EXTENSIONS = {
    ".jsonl": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".csv": "csv",
    ".txt": "text",
    ".md": "text",
}


def _mount_hint(path: Path) -> str:
    """Under the local runner, where a container folder such as /data really is (it sets KOREAN_LLM_LOCAL_MOUNTS)."""
    try:
        mounts = json.loads(os.environ.get("KOREAN_LLM_LOCAL_MOUNTS") or "{}")
    except json.JSONDecodeError:
        return ""
    for mount, local in mounts.items():
        if str(path).startswith(str(local).rstrip("/") + "/"):
            return (
                f" (the local runner maps {mount} to {local}: copy the file there, or name it by a path outside "
                f"{mount}, which is read where it is)"
            )
    return ""


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
            raise DataError(f"data source '{spec}': {root} does not exist{_mount_hint(root)}")
    if not files:
        raise DataError(f"data source '{spec}': no data files (expected {', '.join(EXTENSIONS)})")
    out = []
    for f in files:
        fmt = source.format if source.format != "auto" else EXTENSIONS.get(f.suffix.lower())
        if fmt is None:
            raise DataError(f"{f}: cannot tell the format from the extension; set format in the data source")
        out.append((f, fmt))
    return out


def read_source(source: DataSource, invalid_utf8: str = "reject", read_log: ReadLog | None = None) -> Iterator[Record]:
    """Every record of one source, in a stable order, capped at `source.max_rows`, with its mapping applied.

    Each file is read by `korean_llm.readers` (one encoding per file, every record with its line or
    record number); `read_log` collects how each file was read. The source's mapping is checked
    against the first record of each file (a missing column stops the stage) and applied to every
    record: a row that lacks a mapped field comes back as a reject with that reason.
    """
    if source.path.startswith("hf:"):
        # One report for the whole hub dataset (split and streaming decode are the `datasets` library's).
        hub = readers.FileReport(source.path, "hub", "datasets", note=f"split {source.split}")
        if read_log is not None:
            read_log.files.append(hub)
        it: Iterable[Record] = readers.read_hub(source.path, source.split, hub)
    else:
        it = _iter_files(source, invalid_utf8, read_log)
    checked: set[str] = set()
    for n, rec in enumerate(it, start=1):
        if source.max_rows is not None and n > source.max_rows:
            # Read one record past the cap: it is not part of the input. It came from the report appended last,
            # which is this source's (the hub's, or the file being read): sources are read one after another.
            if read_log is not None and read_log.files:
                last = read_log.files[-1]
                last.records -= 1
                last.note = "; ".join(filter(None, [last.note, f"max_rows {source.max_rows}"]))
            return
        if source.mapping is None or rec.data is None:
            yield rec
            continue
        if rec.file not in checked:
            check_columns(source.mapping, rec.data, source.dataset or source.path, rec.file)
            checked.add(rec.file)
        try:
            data = apply_mapping(source.mapping, rec.data)
        except ValueError as exc:
            yield dataclasses.replace(rec, data=None, error=str(exc))
            continue
        yield dataclasses.replace(rec, data=data)


def _iter_files(source: DataSource, invalid_utf8: str, read_log: ReadLog | None) -> Iterator[Record]:
    for path, fmt in source_files(source):
        report = readers.FileReport(str(path), fmt, source.encoding)
        if read_log is not None:
            read_log.files.append(report)
        if fmt == "jsonl":
            yield from readers.read_jsonl(path, source.encoding, invalid_utf8, report)
        elif fmt == "json":
            yield from readers.read_json(path, source.encoding, invalid_utf8, report, source.records)
        elif fmt == "parquet":
            report.encoding = "parquet"
            yield from readers.read_parquet(path, report)
        elif fmt == "csv":
            yield from readers.read_csv(path, source.encoding, invalid_utf8, report)
        else:
            yield from readers.read_text(path, source.encoding, invalid_utf8, source.text_field, report)


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
        for rec in read_source(source, data.invalid_utf8, rejects.read):
            rejects.rows_in += 1
            if rec.error is not None or rec.data is None:
                rejects.reject(rec, rec.error or "unreadable row", input=input)
                continue
            try:
                rows.append(validate(source, rec.data))
            except ValueError as exc:
                rejects.reject(rec, str(exc), input=input)
    rejects.rows_out += len(rows)
    rejects.check_accounting(input or rejects.input)
    return rows
