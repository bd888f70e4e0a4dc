"""`rejected.jsonl`: every row a stage did not use, one JSON object a line, the same format in every stage:

    {"input": "cpt", "file": "/data/raw/web.jsonl", "line": 17, "reason": "length: 12 characters < 50"}

`input` is the kind of input the row came from (preprocess: `cpt`, `sft`, `preference`; evaluate: `perplexity`,
`tasks`, `prompts`; the training stages: `data`, their `data.sources`). `reason` begins with a short kind before
its first colon (`malformed JSON`, `length`, `exact_dedup`, ...), which the counts by reason group on. `line` is
the 1-based line (JSONL, CSV with the header as line 1) or row (JSON arrays, parquet) of the file.

A log either keeps its rows in memory and writes them at the end (`write`: the training and evaluate stages,
whose rows are in memory anyway), or streams them to a file as they come (`stream=`: preprocess, where a corpus
can reject millions of rows).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import IO, Any, Protocol

from korean_llm.data.readers import ReadLog
from korean_llm.errors import AccountingError, DataError


class Located(Protocol):
    """A row with its origin (`data.sources.Record`)."""

    @property
    def file(self) -> str: ...

    @property
    def line(self) -> int: ...


def reason_kind(reason: str) -> str:
    """The part of a reason that counts group on: `length: 12 characters < 50` -> `length`."""
    return reason.split(":")[0]


class RejectLog:
    """Rejected rows with their reasons, counted by kind of reason and checked against a limit."""

    def __init__(self, input: str = "data", *, stream: Path | None = None) -> None:
        self.input = input
        self.rows_in = 0
        self.total = 0  # rejected rows, streamed or kept
        self.rejected: list[dict[str, Any]] = []  # the rows themselves, unless streamed
        self.first: dict[str, Any] | None = None
        self._counts: Counter[str] = Counter()
        self._fh: IO[str] | None = None
        self.rows_out = 0  # rows kept (collect_rows), for the accounting check
        self.read = ReadLog()  # how each input file was read: format, encoding (and why), records
        if stream is not None:
            stream.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(stream, "w", encoding="utf-8")  # noqa: SIM115 - streamed across input kinds, see close()

    def add(self, file: str, line: int, reason: str, *, input: str | None = None) -> None:
        entry = {"input": input or self.input, "file": file, "line": line, "reason": reason}
        self.total += 1
        self._counts[reason_kind(reason)] += 1
        if self.first is None:
            self.first = entry
        if self._fh is not None:
            self._fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
        else:
            self.rejected.append(entry)

    def reject(self, record: Located, reason: str, *, input: str | None = None) -> None:
        self.add(record.file, record.line, reason, input=input)

    def check_accounting(self, what: str) -> None:
        """Every row read was kept or rejected, and the readers saw exactly the rows counted (else a bug, exit 1)."""
        seen = sum(f.records for f in self.read.files)
        if self.rows_in != self.rows_out + self.total or (self.read.files and seen != self.rows_in):
            raise AccountingError(
                f"{what}: row accounting does not add up: rows_in {self.rows_in} != rows_out {self.rows_out} "
                f"+ rejected {self.total} (records read from files: {seen})"
            )

    def counts(self) -> dict[str, int]:
        return dict(self._counts.most_common())

    @property
    def fraction(self) -> float:
        return self.total / self.rows_in if self.rows_in else 0.0

    def write(self, path: Path) -> None:
        """Write the kept rows to `path` (a stage's work folder: it is published only as a whole)."""
        if self._fh is not None:
            raise ValueError(f"this log streams to its own file; it cannot also be written to {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.rejected), encoding="utf-8")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()

    def check(self, limit: float, what: str) -> None:
        if self.rows_in == 0:
            raise DataError(f"{what}: the input has no rows")
        kept = self.rows_in - self.total
        if kept == 0 or self.fraction > limit:
            counts = ", ".join(f"{k}: {v}" for k, v in self.counts().items())
            first = self.first or {"file": "?", "line": 0, "reason": "?"}
            raise DataError(
                f"{what}: {self.total} of {self.rows_in} rows rejected ({self.fraction:.1%}, "
                f"limit {limit:.1%}); reasons: {counts}; first: {first['file']}:{first['line']}: {first['reason']}"
            )
