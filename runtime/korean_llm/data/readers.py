"""File readers that account for every row: each record comes back with its real line (or record) number.

Decoding is done here, never by a text-mode file object: `open(path, encoding=...)` decodes in
blocks of 8 KiB, so one bad byte raises out of the middle of a block and every row of that block
and after it is lost. Line-based formats (CSV, JSONL) are read as bytes, split on `\\n` and
decoded one physical line at a time, so a bad byte costs exactly the record that holds it. The
`\\n` byte never occurs inside a multi-byte character of UTF-8 or CP949/EUC-KR (their trail bytes
are >= 0x41 / >= 0x80), so the split is safe in every supported encoding.

Encodings, per source (`DataSource.encoding`):

- `utf-8`, `utf-8-sig`, `cp949`, `euc-kr`: that encoding; a UTF-8 byte order mark is dropped.
- `auto` (default): a UTF-8 BOM means UTF-8; a UTF-16 BOM is refused with a clear message.
  Otherwise lines are read as UTF-8 until the first line that is not plain ASCII: when it is not
  valid UTF-8 but is valid CP949 (the superset of EUC-KR that Windows writes for Korean), the file
  is read as CP949 from there on, and that decision is logged and recorded (`FileReport.note`,
  which the stages put in their manifest). Once decided, a file has one encoding.

A line the file's encoding cannot decode makes its record a reject ("invalid UTF-8" /
"not valid cp949") under `data.invalid_utf8: reject`, or is decoded with U+FFFD replacement
characters and counted under `replace`. Undecodable bytes are kept as lone surrogates
(`errors="surrogateescape"`) while a record is parsed, so quotes and separators around them are
still seen where they are: a CSV record with one bad byte is still exactly one record.

CSV follows Python's `csv` module (RFC 4180 quoting): a quoted field may hold newlines, so a record
can span several physical lines; `csv.reader.line_num` counts the physical lines read from the
source iterator (Python docs, csv module, "Reader Objects": "The number of lines read from the
source iterator. This is not the same as the number of records returned, as records can span
multiple lines"), and the line of a record is `line_num` before it plus one. Readers run with
`strict=True` so an unterminated quote is one reject naming its line, not the rest of the file
swallowed into one field. Header names and cells keep their text; CRLF inside a quoted cell
becomes LF. A record whose field count differs from the header's is rejected with both counts.

For comparison, the Hugging Face `datasets` 4.8.5 builders (used here only for `hf:` sources)
decode in blocks too: `packaged_modules/csv/csv.py` reads through `pandas.read_csv(...,
chunksize=10_000, encoding_errors="strict")` and re-raises the `ValueError` (a
`UnicodeDecodeError` is one) for the whole file; `packaged_modules/json/json.py` decodes
`chunksize`-byte batches. `read_hub` therefore turns any error while streaming into a DataError
that names the record where it stopped, instead of losing the rest silently.
"""

from __future__ import annotations

import codecs
import csv
import json
import logging
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from korean_llm.errors import DataError, RetryableError, transient

log = logging.getLogger("korean_llm")

ENCODINGS = ("auto", "utf-8", "utf-8-sig", "cp949", "euc-kr")
UTF8_BOM = codecs.BOM_UTF8
UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_ESCAPED = re.compile("[\udc80-\udcff]")  # bytes kept by errors="surrogateescape"
# A JSON row nested deeper than this is rejected before json.loads could hit Python's recursion limit.
MAX_JSON_DEPTH = 500


@dataclass(frozen=True)
class Record:
    """One input row with its origin; `error` is set when the row could not be read.

    `line` is the physical line where the record starts (CSV, JSONL, JSON arrays, text files) or,
    for formats without lines (parquet, nested JSON lists, `hf:` streams), the record number.
    `record` is always the 1-based number of the record in its file. `replaced` marks a row whose
    undecodable bytes were replaced by U+FFFD (`invalid_utf8: replace`).
    """

    file: str
    line: int
    data: dict[str, Any] | None
    error: str | None = None
    replaced: bool = False
    record: int = 0


@dataclass
class FileReport:
    """How one file was read: format, encoding used (and why), records and lines seen."""

    file: str
    format: str
    encoding: str
    note: str | None = None
    records: int = 0
    lines: int = 0
    undecodable: int = 0
    replaced: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class ReadLog:
    """Every file a stage read, for its manifest and stats (`encodings` block)."""

    files: list[FileReport] = field(default_factory=list)

    def as_dict(self) -> list[dict[str, Any]]:
        return [f.as_dict() for f in self.files]

    def notes(self) -> list[str]:
        return [f"{f.file}: {f.note}" for f in self.files if f.note]


def undecodable_reason(encoding: str) -> str:
    return "invalid UTF-8" if encoding.startswith("utf-8") else f"not valid {encoding}"


class LineDecoder:
    """Decodes the physical lines of one file, deciding the encoding on the way when it is `auto`."""

    def __init__(self, path: Path, declared: str, policy: str, report: FileReport) -> None:
        self.path = path
        self.declared = declared
        self.policy = policy
        self.report = report
        self.encoding: str | None = None if declared == "auto" else _codec(declared)
        self.bad_lines: set[int] = set()
        report.encoding = self.encoding or "utf-8"

    def decode(self, lineno: int, raw: bytes) -> str:
        if lineno == 1:
            raw = self._bom(raw)
        if self.encoding is None:
            if raw.isascii():
                return raw.decode("ascii")
            self._decide(lineno, raw)
        enc = self.encoding or "utf-8"
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            self.bad_lines.add(lineno)
            if self.policy == "replace":
                return raw.decode(enc, errors="replace")
            return raw.decode(enc, errors="surrogateescape")

    def _bom(self, raw: bytes) -> bytes:
        if raw.startswith(UTF16_BOMS):
            raise DataError(
                f"{self.path}: starts with a UTF-16 byte order mark; UTF-16 is not supported "
                f"(expected encoding {' | '.join(ENCODINGS)}): save the file as UTF-8"
            )
        if raw.startswith(UTF8_BOM):
            if self.encoding is None:
                self.encoding = "utf-8"
                self.report.encoding = "utf-8-sig"
                self.report.note = "auto: UTF-8 byte order mark found"
            if self.encoding == "utf-8":
                return raw[len(UTF8_BOM) :]
        return raw

    def _decide(self, lineno: int, raw: bytes) -> None:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            self.encoding = self.report.encoding = "utf-8"
            return
        try:
            raw.decode("cp949")
        except UnicodeDecodeError:
            return  # neither: this line is bad either way; the next non-ASCII line decides
        self.encoding = self.report.encoding = "cp949"
        self.report.note = f"auto: line {lineno} is not valid UTF-8 but is valid CP949: file read as cp949"
        log.warning("%s: %s", self.path, self.report.note)


def _codec(name: str) -> str:
    return "utf-8" if name in ("utf-8", "utf-8-sig") else name


def _lines(path: Path, decoder: LineDecoder) -> Iterator[str]:
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            decoder.report.lines = lineno
            yield decoder.decode(lineno, raw)


def _first_bad(decoder: LineDecoder, start: int, end: int) -> int | None:
    if not decoder.bad_lines:
        return None
    return next((n for n in range(start, end + 1) if n in decoder.bad_lines), None)


def _set_csv_limit() -> None:
    # The default field limit is 131,072 characters: long documents in one cell would be rejected.
    limit = sys.maxsize
    while True:
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:
            limit //= 2


def read_csv(path: Path, encoding: str, policy: str, report: FileReport) -> Iterator[Record]:
    """Records of a CSV file with a header line; see the module docstring for lines and quoting."""
    _set_csv_limit()
    decoder = LineDecoder(path, encoding, policy, report)
    reader = csv.reader(_lines(path, decoder), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise DataError(f"{path}: line 1: the CSV header cannot be read: {exc}") from None
    if _first_bad(decoder, 1, reader.line_num) is not None and policy != "replace":
        raise DataError(f"{path}: line 1: the CSV header is not valid {decoder.encoding or 'UTF-8'}")
    names = [h.strip() for h in header]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataError(f"{path}: line 1: the CSV header names column '{dupes[0]}' twice (columns: {names})")
    number = 0
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            number += 1
            report.records += 1
            yield Record(str(path), start, None, f"malformed CSV: {exc} (record from line {start})", record=number)
            continue
        if not row:  # a blank line is no record
            continue
        number += 1
        report.records += 1
        bad = _first_bad(decoder, start, reader.line_num)
        if bad is not None and policy != "replace":
            report.undecodable += 1
            yield Record(str(path), start, None, undecodable_reason(decoder.encoding or "utf-8"), record=number)
            continue
        if len(row) != len(names):
            yield Record(
                str(path),
                start,
                None,
                f"malformed CSV: {len(row)} fields, the header has {len(names)} ({', '.join(names)})",
                record=number,
            )
            continue
        report.replaced += bad is not None
        values = {n: v.replace("\r\n", "\n") for n, v in zip(names, row, strict=True)}
        yield Record(str(path), start, values, replaced=bad is not None, record=number)


def csv_header(path: Path, encoding: str) -> list[str]:
    """Column names of a CSV file (for up-front mapping checks)."""
    report = FileReport(str(path), "csv", encoding)
    decoder = LineDecoder(path, encoding, "replace", report)
    reader = csv.reader(_lines(path, decoder), strict=True)
    try:
        return [h.strip() for h in next(reader)]
    except (StopIteration, csv.Error):
        return []


def _json_depth_ok(text: str) -> bool:
    """False when brackets nest deeper than MAX_JSON_DEPTH (cheap scan; brackets inside strings count too)."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return True
    depth = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def read_jsonl(path: Path, encoding: str, policy: str, report: FileReport) -> Iterator[Record]:
    decoder = LineDecoder(path, encoding, policy, report)
    number = 0
    for lineno, text in enumerate(_lines(path, decoder), start=1):
        text = text.rstrip("\r\n")
        if not text.strip():
            continue
        number += 1
        report.records += 1
        if lineno in decoder.bad_lines and policy != "replace":
            report.undecodable += 1
            yield Record(str(path), lineno, None, undecodable_reason(decoder.encoding or "utf-8"), record=number)
            continue
        replaced = lineno in decoder.bad_lines
        report.replaced += replaced
        if not _json_depth_ok(text):
            yield Record(
                str(path), lineno, None, f"malformed JSON: nested deeper than {MAX_JSON_DEPTH} levels", record=number
            )
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            yield Record(str(path), lineno, None, f"malformed JSON: {exc.msg} (column {exc.colno})", record=number)
            continue
        if not isinstance(obj, dict):
            yield Record(str(path), lineno, None, f"not a JSON object: found {type(obj).__name__}", record=number)
            continue
        yield Record(str(path), lineno, obj, replaced=replaced, record=number)


def decode_whole(path: Path, raw: bytes, declared: str, policy: str, report: FileReport) -> tuple[str, bool]:
    """A whole file as text and whether it held undecodable bytes (kept as surrogates, or U+FFFD under replace)."""
    if raw.startswith(UTF16_BOMS):
        raise DataError(f"{path}: starts with a UTF-16 byte order mark; UTF-16 is not supported: save it as UTF-8")
    bom = raw.startswith(UTF8_BOM)
    candidates = ["utf-8", "cp949"] if declared == "auto" else [_codec(declared)]
    if bom and candidates[0] == "utf-8":
        raw = raw[len(UTF8_BOM) :]
        candidates = ["utf-8"]
        report.note = "auto: UTF-8 byte order mark found" if declared == "auto" else None
    furthest: tuple[int, str] = (-1, candidates[0])
    for enc in candidates:
        try:
            text = raw.decode(enc)
        except UnicodeDecodeError as exc:
            if exc.start > furthest[0]:
                furthest = (exc.start, enc)
            continue
        report.encoding = "utf-8-sig" if bom and enc == "utf-8" else enc
        if enc != candidates[0]:
            report.note = "auto: not valid UTF-8 but valid CP949: file read as cp949"
            log.warning("%s: %s", path, report.note)
        return text, False
    enc = furthest[1]
    report.encoding = enc
    return raw.decode(enc, errors="surrogateescape"), True


def has_escaped(value: Any) -> bool:
    """True when a decoded value still holds undecodable bytes (lone surrogates from surrogateescape)."""
    if isinstance(value, str):
        return _ESCAPED.search(value) is not None
    if isinstance(value, dict):
        return any(has_escaped(k) or has_escaped(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_escaped(v) for v in value)
    return False


def unescape(value: Any) -> Any:
    """`value` with every undecodable byte (a lone surrogate) replaced by U+FFFD, as errors="replace" would."""
    if isinstance(value, str):
        return _ESCAPED.sub("\ufffd", value)
    if isinstance(value, dict):
        return {unescape(k): unescape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unescape(v) for v in value]
    return value


def _dotted(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(obj, dict) and part in obj:
            obj = obj[part]
        elif isinstance(obj, list) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        else:
            raise KeyError(part)
    return obj


def read_json(
    path: Path, encoding: str, policy: str, report: FileReport, records_path: str | None = None
) -> Iterator[Record]:
    """A JSON document: a list of objects (each with the line it starts on), one object, or the list at `records_path`.

    The document is parsed whole: malformed JSON stops the stage with its line and column (the rows cannot be told
    apart, so none is counted as read)."""
    text, bad = decode_whole(path, path.read_bytes(), encoding, policy, report)
    report.lines = text.count("\n") + 1
    reason = undecodable_reason(report.encoding)
    if not _json_depth_ok(text):
        raise DataError(f"{path}: malformed JSON: nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: line {exc.lineno} column {exc.colno}: malformed JSON: {exc.msg}") from None
    if records_path is not None:
        try:
            items = _dotted(doc, records_path)
        except KeyError as exc:
            keys = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
            raise DataError(f"{path}: records path '{records_path}': no key '{exc.args[0]}' (found {keys})") from None
        if not isinstance(items, list):
            raise DataError(f"{path}: records path '{records_path}' holds {type(items).__name__}, expected a list")
        starts: list[int] = list(range(1, len(items) + 1))
    elif isinstance(doc, list):
        items, starts = doc, _element_lines(text)
    else:
        items, starts = [doc], [1]
    for i, (row, line) in enumerate(zip(items, starts, strict=True), start=1):
        report.records += 1
        row_bad = bad and has_escaped(row)
        if row_bad and policy != "replace":
            report.undecodable += 1
            yield Record(str(path), line, None, reason, record=i)
        elif isinstance(row, dict):
            report.replaced += row_bad
            yield Record(str(path), line, unescape(row) if row_bad else row, replaced=row_bad, record=i)
        else:
            yield Record(str(path), line, None, f"not a JSON object: found {type(row).__name__}", record=i)


def _element_lines(text: str) -> list[int]:
    """Line where each element of a top-level JSON array starts (the text is known to be valid JSON)."""
    decoder = json.JSONDecoder()
    ws = re.compile(r"[\s,]*")
    pos = ws.match(text, 0).end()  # type: ignore[union-attr]
    if text[pos] != "[":
        return []
    pos += 1
    lines: list[int] = []
    line, counted = 1, 0
    while True:
        pos = ws.match(text, pos).end()  # type: ignore[union-attr]
        if pos >= len(text) or text[pos] == "]":
            return lines
        line += text.count("\n", counted, pos)
        counted = pos
        lines.append(line)
        _, pos = decoder.raw_decode(text, pos)


def read_text(path: Path, encoding: str, policy: str, text_field: str, report: FileReport) -> Iterator[Record]:
    """A plain text file: one document (CRLF normalised to LF)."""
    text, bad = decode_whole(path, path.read_bytes(), encoding, policy, report)
    report.records, report.lines = 1, text.count("\n") + 1
    if bad and policy != "replace":
        report.undecodable = 1
        yield Record(str(path), 1, None, undecodable_reason(report.encoding), record=1)
        return
    report.replaced = int(bad)
    text = unescape(text) if bad else text
    yield Record(str(path), 1, {text_field: text.replace("\r\n", "\n")}, replaced=bad, record=1)


def read_parquet(path: Path, report: FileReport) -> Iterator[Record]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:
        raise DataError(f"{path}: not a readable parquet file: {exc}") from exc
    row = 0
    for batch in pf.iter_batches(batch_size=1024):
        for obj in batch.to_pylist():
            row += 1
            report.records += 1
            yield Record(str(path), row, obj, record=row)


def read_hub(name: str, split: str, report: FileReport | None = None) -> Iterator[Record]:
    """Rows of a hub dataset (streaming); an error mid-stream stops the stage naming the record, never silently.

    `report` counts the records, as the file readers do, so the stage's accounting covers hub sources too."""
    from datasets import load_dataset

    try:
        ds = load_dataset(name.removeprefix("hf:"), split=split, streaming=True)
    except Exception as exc:
        if transient(exc):
            raise RetryableError(f"data source '{name}': the hub cannot be reached now: {exc}") from exc
        raise DataError(f"data source '{name}': cannot load from the hub: {exc}") from exc
    i = 0
    it = iter(ds)
    while True:
        try:
            obj = next(it)
        except StopIteration:
            return
        except Exception as exc:  # datasets re-raises decode and parse errors of a whole block (see module docstring)
            if transient(exc):
                raise RetryableError(f"data source '{name}': the hub cannot be reached now: {exc}") from exc
            raise DataError(
                f"data source '{name}': reading stopped after record {i}: {type(exc).__name__}: {exc}"
            ) from exc
        i += 1
        if report is not None:
            report.records += 1
        yield Record(name, i, dict(obj), record=i)
