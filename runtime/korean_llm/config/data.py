"""Data sources of a stage and how strictly bad rows are treated."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from korean_llm.config.base import Strict
from korean_llm.config.mapping import FieldMapping


class DataSource(Strict):
    """One input: a file, folder, glob, `hf:<dataset id>` or `builtin:<name>`.

    In a source list, `{dataset: NAME}` (or just `NAME`) takes the entry NAME of the top-level
    `datasets:` registry; keys given next to it override the registry's.
    """

    path: str
    format: Literal["auto", "jsonl", "json", "parquet", "csv", "text"] = "auto"
    text_field: str = "text"
    split: str = "train"
    max_rows: int | None = Field(None, ge=1)
    # auto: a UTF-8 BOM, else UTF-8, falling back to CP949 when the first non-ASCII line is not UTF-8
    # (korean_llm/data/readers.py).
    encoding: Literal["auto", "utf-8", "utf-8-sig", "cp949", "euc-kr"] = "auto"
    # Where the stage's fields come from in these rows (korean_llm/config/mapping.py); None: the rows already use them.
    mapping: FieldMapping | None = None
    # JSON files whose records sit inside the document: dotted path of the list (e.g. "data.items").
    records: str | None = None
    # Registry name this source came from (set when it is resolved; shown by `korean-llm data inspect`).
    dataset: str | None = None


class DataConfig(Strict):
    """Inputs of the stage and how strictly to treat bad rows."""

    sources: list[DataSource] = Field(default_factory=list)
    # The stage fails (exit 2) when more than this share of rows is rejected.
    max_rejected_fraction: float = Field(0.1, ge=0.0, le=1.0)
    invalid_utf8: Literal["reject", "replace"] = "reject"
