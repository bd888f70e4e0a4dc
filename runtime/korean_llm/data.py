"""Dataset loading and row validation shared by the stages.

Sources are files, folders, globs, `hf:<dataset id>` or `builtin:<name>`; formats jsonl, json,
parquet, csv and plain text (one document per file). Every row is read with its file and line,
so a rejected row can be reported as `file:line: reason` in `rejected.jsonl`. Readers are
generators: nothing is held in memory beyond the current batch.
"""

from __future__ import annotations

import csv
import glob
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from korean_llm.artifacts import atomic_write_text
from korean_llm.builtin import resolve_builtin_data
from korean_llm.config import DataConfig, DataSource
from korean_llm.errors import DataError

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


@dataclass
class RejectLog:
    """Rejected rows with their reasons; written to `rejected.jsonl` and checked against a limit."""

    rows_in: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

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
            except RecursionError:  # the C decoder's depth guard: a row nested thousands of levels deep
                yield Record(str(path), lineno, None, "JSON nested too deeply")
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
    except RecursionError:
        yield Record(str(path), 1, None, "JSON nested too deeply")
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
    except Exception as exc:
        raise DataError(f"data source '{source.path}': cannot load from the hub: {exc}") from exc
    for i, obj in enumerate(ds, start=1):
        yield Record(source.path, i, dict(obj))


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
    data: DataConfig, validate: Callable[[DataSource, dict[str, Any]], dict[str, Any]], rejects: RejectLog
) -> list[dict[str, Any]]:
    """Read every source, validate each row (ValueError = rejected with its message), keep the good ones."""
    if not data.sources:
        raise DataError("data.sources is empty: name at least one file, folder, hub id or builtin source")
    rows: list[dict[str, Any]] = []
    for source in data.sources:
        for rec in read_source(source, data.invalid_utf8):
            rejects.rows_in += 1
            if rec.error is not None or rec.data is None:
                rejects.reject(rec, rec.error or "unreadable row")
                continue
            try:
                rows.append(validate(source, rec.data))
            except ValueError as exc:
                rejects.reject(rec, str(exc))
    return rows


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
    check_turn_order(msgs)
    return msgs


def check_turn_order(msgs: list[dict[str, str]]) -> None:
    """A chat is an optional system message first, then user and assistant turns alternating, user first.

    Anything else (two user turns in a row, an assistant speaking first, a system message mid-chat) is
    rejected with the position: chat templates render such rows differently or not at all, and the loss
    masks of assistant turns would no longer line up with what the model sees.
    """
    turns = msgs[1:] if msgs and msgs[0]["role"] == "system" else msgs
    offset = len(msgs) - len(turns)
    for i, m in enumerate(turns):
        if m["role"] == "system":
            raise ValueError(f"system message at messages[{i + offset}]: only messages[0] may be 'system'")
        expected = "user" if i % 2 == 0 else "assistant"
        if m["role"] != expected:
            previous = f" after '{turns[i - 1]['role']}'" if i else " first"
            raise ValueError(
                f"roles do not alternate: messages[{i + offset}] is '{m['role']}'{previous}, expected '{expected}'"
            )


def sft_row(system_prompt: str | None) -> Callable[[DataSource, dict[str, Any]], dict[str, Any]]:
    def validate(_: DataSource, obj: dict[str, Any]) -> dict[str, Any]:
        msgs = chat_messages(obj)
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
    prompt = _turns(obj["prompt"], "prompt", "user")
    chosen = _turns(obj["chosen"], "chosen", "assistant")
    rejected = _turns(obj["rejected"], "rejected", "assistant")
    if [m["content"].strip() for m in chosen] == [m["content"].strip() for m in rejected]:
        raise ValueError("'chosen' and 'rejected' are identical")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _label(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):  # CSV cells
        return value.strip().lower() == "true"
    raise ValueError(f"'label' is {value!r}, expected true or false")


def kto_row(source: DataSource, obj: dict[str, Any]) -> dict[str, Any]:
    """A KTO example: `prompt` + `completion` + boolean `label` (desirable or not), or a preference pair.

    A pair is kept whole here; the stage unpairs it into chosen -> True and rejected -> False.
    """
    if "chosen" in obj or "rejected" in obj:
        return preference_row(source, obj)
    _required(obj, "prompt", "completion", "label")
    return {
        "prompt": _turns(obj["prompt"], "prompt", "user"),
        "completion": _turns(obj["completion"], "completion", "assistant"),
        "label": _label(obj["label"]),
    }


def prompt_row(_: DataSource, obj: dict[str, Any]) -> dict[str, Any]:
    """A GRPO prompt (string or messages); other fields are kept for user reward functions (TRL passes them on)."""
    _required(obj, "prompt")
    return {**obj, "prompt": _turns(obj["prompt"], "prompt", "user")}
