"""Dataset loading and row validation shared by the stages.

Sources are files, folders, globs, `hf:<dataset id>` or `builtin:<name>`; formats jsonl, json,
parquet, csv and plain text (one document per file). Every row is read with its file and line,
so a rejected row can be reported as `file:line: reason` in `rejected.jsonl`. Readers are
generators: nothing is held in memory beyond the current batch.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from korean_llm import readers
from korean_llm.artifacts import atomic_write_text
from korean_llm.builtin import resolve_builtin_data
from korean_llm.config import DataConfig, DataSource
from korean_llm.errors import AccountingError, DataError
from korean_llm.mapping import apply as apply_mapping
from korean_llm.mapping import check_columns
from korean_llm.readers import ReadLog, Record

__all__ = ["ReadLog", "Record", "RejectLog", "collect_rows", "read_source", "source_files"]

EXTENSIONS = {
    ".jsonl": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".csv": "csv",
    ".txt": "text",
    ".md": "text",
}
ROLES = {"system", "user", "assistant"}
# Role names seen in ShareGPT-style and other public chat dumps, mapped to the chat-template roles.
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "model": "assistant",
    "bot": "assistant",
    "assistant": "assistant",
    "system": "system",
}
# Keys under which a conversation (a list of turns) is stored, in order of preference.
CHAT_KEYS = ("messages", "conversations", "conversation")


@dataclass
class RejectLog:
    """Rejected rows with their reasons; written to `rejected.jsonl` and checked against a limit."""

    rows_in: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    rows_out: int = 0
    read: ReadLog = field(default_factory=ReadLog)

    def check_accounting(self, what: str) -> None:
        """Every row read is either kept or rejected, and every record the readers saw was counted."""
        seen = sum(f.records for f in self.read.files)
        if self.rows_in != self.rows_out + len(self.rejected) or (self.read.files and seen != self.rows_in):
            raise AccountingError(
                f"{what}: row accounting does not add up: rows_in {self.rows_in} != rows_out {self.rows_out} "
                f"+ rejected {len(self.rejected)} (records read from files: {seen})"
            )

    def reject(self, record: Record, reason: str) -> None:
        self.rejected.append({"file": record.file, "line": record.line, "reason": reason})

    def counts(self) -> dict[str, int]:
        return dict(Counter(r["reason"].split(":")[0] for r in self.rejected).most_common())

    @property
    def fraction(self) -> float:
        return len(self.rejected) / self.rows_in if self.rows_in else 0.0

    def write(self, path: Path) -> None:
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.rejected))

    def check(self, limit: float, what: str) -> None:
        if self.rows_in == 0:
            raise DataError(f"{what}: the input has no rows")
        kept = self.rows_in - len(self.rejected)
        if kept == 0 or self.fraction > limit:
            counts = ", ".join(f"{k}: {v}" for k, v in self.counts().items())
            raise DataError(
                f"{what}: {len(self.rejected)} of {self.rows_in} rows rejected ({self.fraction:.1%}, "
                f"limit {limit:.1%}); reasons: {counts}; first: {self.rejected[0]['file']}:"
                f"{self.rejected[0]['line']}: {self.rejected[0]['reason']}"
            )


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
        it: Iterable[Record] = readers.read_hub(source.path, source.split)
    else:
        it = _iter_files(source, invalid_utf8, read_log)
    checked: set[str] = set()
    for n, rec in enumerate(it, start=1):
        if source.max_rows is not None and n > source.max_rows:
            if read_log is not None and read_log.files:  # read one record past the cap: it is not part of the input
                read_log.files[-1].records -= 1
                read_log.files[-1].note = "; ".join(
                    filter(None, [read_log.files[-1].note, f"max_rows {source.max_rows}"])
                )
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
    data: DataConfig, validate: Callable[[DataSource, dict[str, Any]], dict[str, Any]], rejects: RejectLog
) -> list[dict[str, Any]]:
    """Read every source, validate each row (ValueError = rejected with its message), keep the good ones."""
    if not data.sources:
        raise DataError("data.sources is empty: name at least one file, folder, hub id or builtin source")
    rows: list[dict[str, Any]] = []
    for source in data.sources:
        for rec in read_source(source, data.invalid_utf8, rejects.read):
            rejects.rows_in += 1
            if rec.error is not None or rec.data is None:
                rejects.reject(rec, rec.error or "unreadable row")
                continue
            try:
                rows.append(validate(source, rec.data))
            except ValueError as exc:
                rejects.reject(rec, str(exc))
    rejects.rows_out += len(rows)
    rejects.check_accounting("data.sources")
    return rows


def _with_system(msgs: list[dict[str, str]], obj: dict[str, Any]) -> list[dict[str, str]]:
    """Prepend the mapped system prompt (`mapping.system`) unless the turns already start with one."""
    system = obj.get("_system")
    if isinstance(system, str) and system.strip() and (not msgs or msgs[0]["role"] != "system"):
        return [{"role": "system", "content": system}, *msgs]
    return msgs


def text_row(source: DataSource, obj: dict[str, Any]) -> dict[str, Any]:
    """A CPT document: the configured text field, a non-empty string."""
    if source.text_field not in obj:
        raise ValueError(f"missing field '{source.text_field}'")
    text = obj[source.text_field]
    if not isinstance(text, str):
        raise ValueError(f"field '{source.text_field}' is {type(text).__name__}, expected a string")
    if not text.strip():
        raise ValueError(f"empty text in field '{source.text_field}'")
    return {"text": text}


def _message(i: int, msg: Any) -> dict[str, str]:
    if not isinstance(msg, dict):
        raise ValueError(f"messages[{i}] is {type(msg).__name__}, expected an object")
    if "from" in msg and "value" in msg:  # ShareGPT
        raw_role, content = msg["from"], msg["value"]
    else:
        raw_role, content = msg.get("role"), msg.get("content")
    role = SHAREGPT_ROLES.get(str(raw_role).lower()) if raw_role is not None else None
    if role is None:
        raise ValueError(f"unknown role '{raw_role}' in messages[{i}] (expected one of {sorted(ROLES)})")
    if content is None:
        raise ValueError(f"content is null in messages[{i}]")
    if not isinstance(content, str):
        raise ValueError(f"content of messages[{i}] is {type(content).__name__}, expected a string")
    if not content.strip():
        raise ValueError(f"empty content in messages[{i}]")
    return {"role": role, "content": content}


def chat_messages(obj: dict[str, Any]) -> list[dict[str, str]]:
    """Normalise a chat row to `[{"role", "content"}, ...]` ending with an assistant turn.

    Accepted: `messages` / ShareGPT `conversations` / `conversation` (turns as `role`/`content` or
    `from`/`value`, roles such as `human`/`gpt` mapped), `instruction`/`input`/`output` (Alpaca), and
    `prompt` with `completion` or `response`.
    """
    chat_key = next((k for k in CHAT_KEYS if k in obj), None)
    if chat_key is not None:
        raw = obj[chat_key]
        if not isinstance(raw, list):
            raise ValueError(f"messages is {type(raw).__name__}, expected a list")
        if not raw:
            raise ValueError("empty messages list")
        msgs = [_message(i, m) for i, m in enumerate(raw)]
    elif "instruction" in obj:
        instruction, extra, output = obj.get("instruction"), obj.get("input") or "", obj.get("output")
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError("empty or non-string 'instruction'")
        if not isinstance(output, str) or not output.strip():
            raise ValueError("missing or empty 'output'")
        if not isinstance(extra, str):
            raise ValueError(f"'input' is {type(extra).__name__}, expected a string")
        prompt = f"{instruction.strip()}\n\n{extra.strip()}" if extra.strip() else instruction.strip()
        msgs = [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
    elif "prompt" in obj and ("completion" in obj or "response" in obj):
        answer_key = "completion" if "completion" in obj else "response"
        msgs = [
            _message(0, {"role": "user", "content": obj["prompt"]}),
            _message(1, {"role": "assistant", "content": obj[answer_key]}),
        ]
    else:
        raise ValueError("missing field 'messages' (or 'conversations', 'instruction'/'output', 'prompt'/'completion')")
    if not any(m["role"] == "assistant" for m in msgs):
        raise ValueError("no assistant message")
    if msgs[-1]["role"] != "assistant":
        raise ValueError(f"last message is from '{msgs[-1]['role']}', expected 'assistant'")
    return msgs


def sft_row(system_prompt: str | None) -> Callable[[DataSource, dict[str, Any]], dict[str, Any]]:
    def validate(_: DataSource, obj: dict[str, Any]) -> dict[str, Any]:
        msgs = _with_system(chat_messages(obj), obj)
        if system_prompt and msgs[0]["role"] != "system":
            msgs = [{"role": "system", "content": system_prompt}, *msgs]
        return {"messages": msgs}

    return validate


class ParquetShardWriter:
    """Rows appended in order to `part-00000.parquet`, `part-00001.parquet`, ... under `folder`.

    Rows are buffered and written as row groups of `row_group_rows` rows or `row_group_bytes` bytes, whichever
    comes first, so memory holds one small row group whatever the input size; a new
    shard starts once the current one holds `shard_bytes` of (UTF-8) content. `close()` always leaves at
    least one file, empty when no row came, so a reader finds the folder and its schema. A string column
    takes `str` or UTF-8 `bytes` values (arrow validates them).
    """

    def __init__(
        self,
        folder: Path,
        schema: Any,
        shard_bytes: int,
        row_group_rows: int = 2048,
        row_group_bytes: int = 4 << 20,
        use_dictionary: bool = True,  # False for columns of long, mostly unique texts: it only costs time there
    ) -> None:
        self.folder = folder
        self.use_dictionary = use_dictionary
        self.schema = schema
        self.shard_bytes = shard_bytes
        self.row_group_rows = row_group_rows
        self.row_group_bytes = row_group_bytes
        self._buffered_bytes = 0
        self.rows = 0
        self.files: list[Path] = []
        self._buffer: list[dict[str, Any]] = []
        self._writer: Any = None
        self._shard_used = 0

    def write(self, row: dict[str, Any], nbytes: int) -> None:
        if self._writer is not None and self._shard_used >= self.shard_bytes:
            self._flush()
            self._writer.close()
            self._writer = None
        if self._writer is None:
            self._open()
        self._buffer.append(row)
        self._shard_used += nbytes
        self._buffered_bytes += nbytes
        self.rows += 1
        if len(self._buffer) >= self.row_group_rows or self._buffered_bytes >= self.row_group_bytes:
            self._flush()

    def _open(self) -> None:
        import pyarrow.parquet as pq

        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"part-{len(self.files):05d}.parquet"
        self._writer = pq.ParquetWriter(path, self.schema, compression="zstd", use_dictionary=self.use_dictionary)
        self.files.append(path)
        self._shard_used = 0

    def _flush(self) -> None:
        import pyarrow as pa

        if self._buffer:
            columns = {name: [row[name] for row in self._buffer] for name in self.schema.names}
            self._writer.write_table(pa.Table.from_pydict(columns, schema=self.schema))
            self._buffer = []
            self._buffered_bytes = 0

    def close(self) -> list[Path]:
        if self._writer is None and not self.files:
            self._open()
        if self._writer is not None:
            self._flush()
            self._writer.close()
            self._writer = None
        return self.files


def _turns(value: Any, field_name: str, role: str) -> list[dict[str, str]]:
    """A plain string or a message list, as chat messages; a string becomes one `role` turn."""
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(f"empty '{field_name}'")
        return [{"role": role, "content": value}]
    if not isinstance(value, list):
        raise ValueError(f"'{field_name}' is {type(value).__name__}, expected a string or a list of messages")
    if not value:
        raise ValueError(f"empty '{field_name}'")
    try:
        msgs = [_message(i, m) for i, m in enumerate(value)]
    except ValueError as exc:
        raise ValueError(f"'{field_name}': {exc}") from None
    if msgs[-1]["role"] != role:
        raise ValueError(f"last message of '{field_name}' is from '{msgs[-1]['role']}', expected '{role}'")
    return msgs


def _required(obj: dict[str, Any], *names: str) -> None:
    for name in names:
        if name not in obj or obj[name] is None:
            raise ValueError(f"missing field '{name}'")


def preference_row(_: DataSource, obj: dict[str, Any]) -> dict[str, Any]:
    """A preference pair in TRL's conversational form: `{"prompt": [...], "chosen": [...], "rejected": [...]}`.

    `prompt` is a non-empty string (one user turn) or messages ending with a user turn; `chosen` and
    `rejected` are strings (one assistant turn) or messages ending with an assistant turn. Identical
    `chosen` and `rejected` are refused: the pair teaches nothing. A `collect_rows` validator.
    """
    _required(obj, "prompt", "chosen", "rejected")
    prompt = _with_system(_turns(obj["prompt"], "prompt", "user"), obj)
    chosen = _turns(obj["chosen"], "chosen", "assistant")
    rejected = _turns(obj["rejected"], "rejected", "assistant")
    if [m["content"].strip() for m in chosen] == [m["content"].strip() for m in rejected]:
        raise ValueError("'chosen' and 'rejected' are identical")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


_LABELS = {"true": True, "false": False, "1": True, "0": False}


def _label(value: Any) -> bool:
    """A KTO label: a boolean, 1 / 0, or (CSV cells, surrounding spaces ignored) true / false / 1 / 0."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _LABELS:
        return _LABELS[value.strip().lower()]
    raise ValueError(f"'label' is {value!r}, expected true or false (or 1 / 0)")


def kto_row(source: DataSource, obj: dict[str, Any]) -> dict[str, Any]:
    """A KTO example: `prompt` + `completion` + boolean `label` (desirable or not), or a preference pair.

    A pair is kept whole here; the stage unpairs it into chosen -> True and rejected -> False.
    """
    if "chosen" in obj or "rejected" in obj:
        return preference_row(source, obj)
    _required(obj, "prompt", "completion", "label")
    return {
        "prompt": _with_system(_turns(obj["prompt"], "prompt", "user"), obj),
        "completion": _turns(obj["completion"], "completion", "assistant"),
        "label": _label(obj["label"]),
    }


def prompt_row(_: DataSource, obj: dict[str, Any]) -> dict[str, Any]:
    """A GRPO prompt (string or messages); other fields are kept for user reward functions (TRL passes them on)."""
    _required(obj, "prompt")
    kept = {k: v for k, v in obj.items() if k != "_system"}
    return {**kept, "prompt": _with_system(_turns(obj["prompt"], "prompt", "user"), obj)}
