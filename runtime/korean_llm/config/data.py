"""Data sources of a stage and how strictly bad rows are treated."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from korean_llm.config.base import Strict


class DataSource(Strict):
    """One input: a file, folder, glob, `hf:<dataset id>` or `builtin:<name>`."""

    path: str
    format: Literal["auto", "jsonl", "json", "parquet", "csv", "text"] = "auto"
    text_field: str = "text"
    split: str = "train"
    max_rows: int | None = Field(None, ge=1)


class DataConfig(Strict):
    """Inputs of the stage and how strictly to treat bad rows."""

    sources: list[DataSource] = Field(default_factory=list)
    # The stage fails (exit 2) when more than this share of rows is rejected.
    max_rejected_fraction: float = Field(0.1, ge=0.0, le=1.0)
    invalid_utf8: Literal["reject", "replace"] = "reject"
