"""CPT text cleaning as a batch pipeline: per-document steps in worker processes, deduplication in input order.

Workers run the per-document steps (normalisation, filters, PII masking, dedup keys and MinHash
signatures) on batches and return one outcome per input document, in order. The main process then
deduplicates in input order, so the output is identical for any number of workers. At most
`2 * num_proc` batches are in flight, so memory stays flat however large the input is; only the
dedup index grows, with the number of *unique* documents kept (about 2.7 KB each: a 16-byte exact key
plus datasketch's LSH band entries), e.g. ~100 MB per 40,000 documents.

`process_cpt` runs it for `preprocess.cpt_sources`; `Report` (counters for stats.json) is shared with the chat and
preference path in `chats.py`; rejected rows go to `data.RejectLog` (one rejected.jsonl format).
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import importlib.util
import logging
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from korean_llm import korean
from korean_llm.config import CleaningConfig, DedupConfig, StageConfig
from korean_llm.data import ParquetShardWriter, ReadLog, RejectLog, read_source, reason_kind, text_row
from korean_llm.errors import AccountingError

log = logging.getLogger("korean_llm")
MB = 1024 * 1024

HANGUL_BINS = [round(i / 10, 1) for i in range(11)]  # 10 equal bins over [0, 1]
LENGTH_EDGES = [0, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000]  # last bin: >= 100k
ORIGIN_LINE_BITS = 40  # an origin packs (file index, line) into one int: cheap to keep in the dedup index
TASK_MAX_CHARS = 4_000_000  # a batch also closes at this many characters, so huge documents keep batches small


@dataclass(frozen=True)
class Settings:
    """What a worker needs: a plain, picklable view of the config."""

    cleaning: CleaningConfig
    split_sentences: bool  # requested and kss importable
    pii_types: tuple[str, ...]  # empty: no masking
    exact: bool
    near: bool
    shingle_size: int
    num_perm: int
    seed: int


@dataclass
class Kept:
    """A document that passed the per-document steps; deduplication decides whether it is written."""

    origin: int
    data: bytes  # the cleaned text in UTF-8: cheaper to send back and to hand to arrow than a str
    chars: int
    key: bytes | None
    signature: np.ndarray | None
    hangul: float
    pii: Counter[str]


@dataclass
class Dropped:
    origin: int
    step: str  # "invalid" for rows that could not be read or had no text, else the step that removed it
    reason: str


@dataclass
class StepCounts:
    """Rows and characters into and out of each step, in pipeline order."""

    steps: dict[str, list[int]] = field(default_factory=dict)

    def count(self, step: str, chars_before: int, chars_after: int | None) -> None:
        """One row through `step`; `chars_after` None: the step removed it."""
        row = self.steps.setdefault(step, [0, 0, 0, 0])
        row[0] += 1
        row[2] += chars_before
        if chars_after is not None:
            row[1] += 1
            row[3] += chars_after

    def merge(self, other: StepCounts) -> None:
        for step, values in other.steps.items():
            row = self.steps.setdefault(step, [0, 0, 0, 0])
            for i, v in enumerate(values):
                row[i] += v

    def as_dict(self) -> dict[str, dict[str, int]]:
        keys = ("rows_in", "rows_out", "chars_in", "chars_out")
        return {step: dict(zip(keys, values, strict=True)) for step, values in self.steps.items()}


@dataclass
class BatchResult:
    outcomes: list[Kept | Dropped]
    counts: StepCounts
    hangul_hist: list[int]
    length_hist: list[int]
    bytes_in: int


def hangul_bin(ratio: float) -> int:
    return min(int(ratio * 10), 9)


def length_bin(n: int) -> int:
    return bisect.bisect_right(LENGTH_EDGES, n) - 1


@functools.cache
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from datasketch import MinHash

    a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
    return a, b


def _filter_reason(s: Settings, text: str, ratio: float, counts: StepCounts) -> tuple[str, str] | None:
    """The (step, reason) of the first filter that removes `text`, counting every filter it passes."""
    c = s.cleaning
    n = len(text)
    low = max(c.min_chars, 1)
    if n < low or (c.max_chars is not None and n > c.max_chars):
        counts.count("length", len(text), None)
        bound = f"< {low}" if n < low else f"> {c.max_chars}"
        return "length", f"length: {n} characters {bound}"
    counts.count("length", len(text), len(text))
    if c.min_hangul_ratio > 0:
        if ratio < c.min_hangul_ratio:
            counts.count("hangul_ratio", len(text), None)
            return "hangul_ratio", f"hangul_ratio: {ratio:.2f} < {c.min_hangul_ratio:.2f}"
        counts.count("hangul_ratio", len(text), len(text))
    if c.max_duplicate_line_fraction < 1:
        frac = korean.duplicate_line_fraction(text)
        if frac > c.max_duplicate_line_fraction:
            counts.count("duplicate_lines", len(text), None)
            return "duplicate_lines", f"duplicate_lines: {frac:.2f} > {c.max_duplicate_line_fraction:.2f}"
        counts.count("duplicate_lines", len(text), len(text))
    if c.max_repeated_ngram_fraction < 1:
        frac = korean.repeated_ngram_fraction(text, c.repetition_ngram)
        if frac > c.max_repeated_ngram_fraction:
            counts.count("repeated_ngrams", len(text), None)
            return "repeated_ngrams", f"repeated_ngrams: {frac:.2f} > {c.max_repeated_ngram_fraction:.2f}"
        counts.count("repeated_ngrams", len(text), len(text))
    return None


def clean_batch(s: Settings, batch: list[tuple[int, str | None, str | None]]) -> BatchResult:
    """Run the per-document steps on `(origin, text, reason)` items; `text` None means already invalid."""
    counts = StepCounts()
    res = BatchResult([], counts, [0] * 10, [0] * len(LENGTH_EDGES), 0)
    c = s.cleaning
    transforms = [
        (name, fn)
        for name, fn, on in (
            ("nfc", korean.nfc, c.nfc),
            ("remove_invisible", korean.remove_invisible, c.remove_invisible),
            ("normalize_whitespace", korean.normalize_whitespace, c.normalize_whitespace),
            ("split_sentences", korean.split_sentences, s.split_sentences),
        )
        if on
    ]
    for origin, text, reason in batch:
        if text is None:
            res.outcomes.append(Dropped(origin, "invalid", reason or "unreadable row"))
            continue
        res.bytes_in += len(text.encode("utf-8"))
        counts.count("input", len(text), len(text))
        for name, fn in transforms:
            new = fn(text) or ""
            counts.count(name, len(text), len(new))
            text = new
        ratio = korean.hangul_ratio(text)
        res.hangul_hist[hangul_bin(ratio)] += 1
        res.length_hist[length_bin(len(text))] += 1
        dropped = _filter_reason(s, text, ratio, counts)
        if dropped is not None:
            res.outcomes.append(Dropped(origin, *dropped))
            continue
        pii: Counter[str] = Counter()
        if s.pii_types:
            masked, pii = korean.mask_pii(text, s.pii_types)
            counts.count("pii_mask", len(text), len(masked))
            text = masked
        key = korean.exact_key(text) if s.exact else None
        sig = None
        if s.near:
            a, b = _permutations(s.num_perm, s.seed)
            sig = korean.minhash_signature(text, s.shingle_size, a, b)
        res.outcomes.append(Kept(origin, text.encode("utf-8"), len(text), key, sig, ratio, pii))
    return res


def make_batches(
    items: Iterable[tuple[int, str | None, str | None]], size: int
) -> Iterator[list[tuple[int, str | None, str | None]]]:
    batch: list[tuple[int, str | None, str | None]] = []
    chars = 0
    for item in items:
        batch.append(item)
        chars += len(item[1] or "")
        if len(batch) >= size or chars >= TASK_MAX_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def run_batches(
    settings: Settings, batches: Iterator[list[tuple[int, str | None, str | None]]], num_proc: int
) -> Iterator[BatchResult]:
    """Results in input order; with `num_proc > 1`, a pool with at most `2 * num_proc` batches in flight.

    Pool.imap would read the whole input ahead of the workers; the bounded window keeps memory flat.
    """
    if num_proc == 1:
        for batch in batches:
            yield clean_batch(settings, batch)
        return
    import multiprocessing

    # spawn: the main process holds a metrics server thread and open files that fork would copy.
    with multiprocessing.get_context("spawn").Pool(num_proc) as pool:
        pending: deque = deque()
        for batch in batches:
            pending.append(pool.apply_async(clean_batch, (settings, batch)))
            if len(pending) >= 2 * num_proc:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def _band_key(band: bytes) -> bytes:
    """LSH bucket key: 8 bytes instead of the band's 4 * r bytes, to keep the index small."""
    return hashlib.blake2b(band, digest_size=8).digest()


class Deduplicator:
    """Exact and near-duplicate decisions, made in input order; the first copy of a document wins."""

    def __init__(self, cfg: DedupConfig) -> None:
        self.seen: dict[bytes, int] | None = {} if cfg.exact else None
        self.lsh = None
        self.seed = cfg.seed
        self.steps = [step for step, on in (("exact_dedup", cfg.exact), ("near_dedup", cfg.near)) if on]
        if cfg.near:
            from datasketch import MinHashLSH

            self.lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm, hashfunc=_band_key)

    def check(self, doc: Kept) -> tuple[str, int] | None:
        """None when `doc` is new (and remember it), else ("exact_dedup" | "near_dedup", origin of the first copy)."""
        if self.seen is not None and doc.key is not None:
            first = self.seen.get(doc.key)
            if first is not None:
                return "exact_dedup", first
        minhash = None
        if self.lsh is not None and doc.signature is not None:
            from datasketch import LeanMinHash

            minhash = LeanMinHash(seed=self.seed, hashvalues=doc.signature, scheme="affine32")
            candidates = self.lsh.query(minhash)
            if candidates:
                return "near_dedup", min(candidates)
        if self.seen is not None and doc.key is not None:
            self.seen[doc.key] = doc.origin
        if minhash is not None and self.lsh is not None:
            self.lsh.insert(doc.origin, minhash, check_duplication=False)
        return None


class Origins:
    """(file, line) of every row as one int, and back to `file:line` for messages."""

    def __init__(self) -> None:
        self.files: list[str] = []
        self._index: dict[str, int] = {}

    def pack(self, file: str, line: int) -> int:
        idx = self._index.get(file)
        if idx is None:
            idx = self._index[file] = len(self.files)
            self.files.append(file)
        return (idx << ORIGIN_LINE_BITS) | line

    def unpack(self, origin: int) -> tuple[str, int]:
        return self.files[origin >> ORIGIN_LINE_BITS], origin & ((1 << ORIGIN_LINE_BITS) - 1)

    def describe(self, origin: int) -> str:
        file, line = self.unpack(origin)
        return f"{file}:{line}"


class Report:
    """Counters of one input kind, the body of its section in stats.json."""

    def __init__(self) -> None:
        self.rows_in = 0
        self.invalid: Counter[str] = Counter()  # unreadable or schema-invalid rows, by reason
        self.removed: Counter[str] = Counter()  # rows removed by a filter or dedup step, by step
        self.utf8_replaced = 0
        self.utf8_rejected = 0
        self.pii: Counter[str] = Counter()
        self.written: dict[str, int] = {}
        self.files = ReadLog()  # how each input file was read (format, encoding, records)

    def read(self, rec: Any) -> None:
        self.rows_in += 1
        self.utf8_replaced += rec.replaced
        self.utf8_rejected += rec.error == "invalid UTF-8" or (rec.error or "").startswith("not valid ")

    def check_accounting(self, kind: str) -> None:
        """rows_in = rows written + rows invalid + rows removed, and every record a reader saw was counted."""
        out, invalid, removed = sum(self.written.values()), sum(self.invalid.values()), sum(self.removed.values())
        seen = sum(f.records for f in self.files.files)
        if self.rows_in != out + invalid + removed or (self.files.files and seen != self.rows_in):
            raise AccountingError(
                f"preprocess.{kind}_sources: row accounting does not add up: rows_in {self.rows_in} != written {out} "
                f"+ invalid {invalid} + removed {removed} (records read from files: {seen})"
            )

    def as_dict(self, policy: str) -> dict[str, Any]:
        return {
            "rows_in": self.rows_in,
            "files": self.files.as_dict(),
            "rows_out": sum(self.written.values()),
            "written": self.written,
            "invalid_rows": sum(self.invalid.values()),
            "invalid_by_reason": dict(self.invalid.most_common()),
            "removed_by_step": dict(self.removed),
            "invalid_utf8": {
                "policy": policy,
                "rows_replaced": self.utf8_replaced,
                "rows_rejected": self.utf8_rejected,
            },
            "pii_masked": {kind: self.pii[kind] for kind in korean.PII_TYPES if self.pii[kind]},
        }


def settings_of(cfg: StageConfig) -> Settings:
    pp = cfg.preprocess
    split = pp.cleaning.split_sentences
    if split and importlib.util.find_spec("kss") is None:
        log.warning("preprocess.cleaning.split_sentences is on but kss is not installed: sentences are NOT split")
        split = False
    return Settings(
        cleaning=pp.cleaning,
        split_sentences=split,
        pii_types=tuple(pp.pii.types) if pp.pii.enabled else (),
        exact=pp.dedup.exact,
        near=pp.dedup.near,
        shingle_size=pp.dedup.shingle_size,
        num_perm=pp.dedup.num_perm,
        seed=pp.dedup.seed,
    )


def _cpt_items(cfg: StageConfig, report: Report, origins: Origins) -> Iterator[tuple[int, str | None, str | None]]:
    for source in cfg.preprocess.cpt_sources:
        for rec in read_source(source, cfg.data.invalid_utf8, report.files):
            report.read(rec)
            origin = origins.pack(rec.file, rec.line)
            if rec.error is not None or rec.data is None:
                yield origin, None, rec.error or "unreadable row"
                continue
            try:
                yield origin, text_row(source, rec.data)["text"], None
            except ValueError as exc:
                yield origin, None, str(exc)


def process_cpt(cfg: StageConfig, out: Path, rejects: RejectLog, progress: Any) -> dict[str, Any]:
    """Clean, deduplicate and write `preprocess.cpt_sources` to `out/cpt/`; returns its section of stats.json."""
    import pyarrow as pa

    pp = cfg.preprocess
    report, origins, counts = Report(), Origins(), StepCounts()
    dedup = Deduplicator(pp.dedup)
    schema = pa.schema([("text", pa.string())])
    writer = ParquetShardWriter(out / "cpt", schema, int(pp.shard_size_mb * MB), use_dictionary=False)
    hist_in = {"hangul_ratio": [0] * 10, "length_chars": [0] * len(LENGTH_EDGES)}
    hist_out = {"hangul_ratio": [0] * 10, "length_chars": [0] * len(LENGTH_EDGES)}
    bytes_in = bytes_out = 0
    task = progress.add_task("cpt", total=None, mb=0.0)
    batches = make_batches(_cpt_items(cfg, report, origins), pp.batch_size)
    for res in run_batches(settings_of(cfg), batches, pp.num_proc):
        counts.merge(res.counts)
        bytes_in += res.bytes_in
        for name, hist in (("hangul_ratio", res.hangul_hist), ("length_chars", res.length_hist)):
            hist_in[name] = [a + b for a, b in zip(hist_in[name], hist, strict=True)]
        for doc in res.outcomes:
            if isinstance(doc, Dropped):
                if doc.step == "invalid":
                    report.invalid[reason_kind(doc.reason)] += 1
                else:
                    report.removed[doc.step] += 1
                rejects.add(*origins.unpack(doc.origin), doc.reason, input="cpt")
                continue
            dup = dedup.check(doc)
            for step in dedup.steps:  # a copy stops at the step that found it
                counts.count(step, doc.chars, None if dup is not None and dup[0] == step else doc.chars)
                if dup is not None and dup[0] == step:
                    break
            if dup is not None:
                report.removed[dup[0]] += 1
                rejects.add(*origins.unpack(doc.origin), f"{dup[0]}: copy of {origins.describe(dup[1])}", input="cpt")
                continue
            writer.write({"text": doc.data}, len(doc.data))
            bytes_out += len(doc.data)
            report.pii.update(doc.pii)
            hist_out["hangul_ratio"][hangul_bin(doc.hangul)] += 1
            hist_out["length_chars"][length_bin(doc.chars)] += 1
        progress.update(task, advance=len(res.outcomes), mb=bytes_in / MB)
    shards = writer.close()
    report.written = {"cpt": writer.rows}
    report.check_accounting("cpt")
    return {
        **report.as_dict(cfg.data.invalid_utf8),
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "shards": len(shards),
        "steps": counts.as_dict(),
        "histograms": {
            "hangul_ratio": {"bins": HANGUL_BINS, "in": hist_in["hangul_ratio"], "out": hist_out["hangul_ratio"]},
            "length_chars": {"edges": LENGTH_EDGES, "in": hist_in["length_chars"], "out": hist_out["length_chars"]},
        },
    }
