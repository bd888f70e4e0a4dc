"""The preprocess stage: inputs by kind, cleaning, PII masking, deduplication, sharding."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from korean_llm.config.base import Strict
from korean_llm.config.data import DataSource

PiiType = Literal["RRN", "PHONE", "EMAIL", "CARD", "ACCOUNT"]


class CleaningConfig(Strict):
    """Per-document cleaning of CPT text, in this order; every step is counted in `stats.json`."""

    nfc: bool = True
    remove_invisible: bool = True  # control, zero-width, BOM, soft-hyphen and bidi characters
    normalize_whitespace: bool = True
    # One sentence per line with kss; skipped with a warning when kss is not installed (it is not a dependency).
    split_sentences: bool = False
    min_chars: int = Field(50, ge=0)
    max_chars: int | None = Field(1_000_000, ge=1)
    # Share of Hangul among letters (digits and punctuation do not count); 0 keeps everything.
    min_hangul_ratio: float = Field(0.3, ge=0.0, le=1.0)
    # Share of characters in lines that repeat an earlier line (menus, boilerplate); 1 keeps everything.
    max_duplicate_line_fraction: float = Field(0.3, ge=0.0, le=1.0)
    # Share of character n-grams seen earlier in the same document; Korean statutes reach ~0.25 at n=10,
    # spam ("ㅋㅋㅋ", copy-pasted lines) > 0.6. 1 keeps everything.
    max_repeated_ngram_fraction: float = Field(0.5, ge=0.0, le=1.0)
    repetition_ngram: int = Field(10, ge=2)

    @model_validator(mode="after")
    def _lengths(self) -> CleaningConfig:
        if self.max_chars is not None and self.max_chars < self.min_chars:
            raise ValueError(f"max_chars ({self.max_chars}) is below min_chars ({self.min_chars})")
        return self


class PiiConfig(Strict):
    """Masking of personal data with typed placeholders such as `<PHONE>`."""

    enabled: bool = True
    types: list[PiiType] = Field(default_factory=lambda: list[PiiType](["RRN", "PHONE", "EMAIL", "CARD", "ACCOUNT"]))
    # Also mask SFT and preference message contents (not only CPT text).
    apply_to_chats: bool = True


class DedupConfig(Strict):
    """Exact (hash of the cleaned text) and near-duplicate (MinHash LSH on character shingles) removal."""

    exact: bool = True
    near: bool = True
    # Estimated Jaccard similarity of character shingle sets above which a later document is dropped.
    threshold: float = Field(0.8, gt=0.0, lt=1.0)
    num_perm: int = Field(128, ge=16, le=1024)
    # Characters per shingle: Korean word spacing is unreliable, so shingles are characters, not words.
    shingle_size: int = Field(5, ge=1)
    seed: int = 1


class PreprocessConfig(Strict):
    """The preprocess stage: which inputs are CPT text, SFT chats and preference pairs, and how to clean them.

    Output goes to `<run.data_dir>/processed/` (cpt/, sft/{train,eval}/, preference/{train,eval}/).
    """

    cpt_sources: list[DataSource] = Field(default_factory=list)
    sft_sources: list[DataSource] = Field(default_factory=list)
    preference_sources: list[DataSource] = Field(default_factory=list)
    cleaning: CleaningConfig = Field(default_factory=CleaningConfig)
    pii: PiiConfig = Field(default_factory=PiiConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    # Worker processes for CPT cleaning; the output is identical for any value (dedup runs in input order).
    num_proc: int = Field(1, ge=1)
    batch_size: int = Field(256, ge=1)  # documents per worker task
    shard_size_mb: float = Field(256.0, gt=0)  # UTF-8 text per parquet shard before a new one starts
    # Share of SFT / preference rows put in the eval split, chosen by a hash of the row (stable across runs).
    eval_fraction: float = Field(0.05, ge=0.0, lt=1.0)

    @property
    def all_sources(self) -> list[DataSource]:
        return [*self.cpt_sources, *self.sft_sources, *self.preference_sources]
