"""Preprocess: raw Korean text, chats and preference pairs to clean, deduplicated, validated parquet shards.

    python -m korean_llm preprocess --config /etc/korean-llm/preprocess.yaml

Inputs are named by kind, each a list of data sources (files, folders, globs, `hf:` ids, `builtin:`):
`preprocess.cpt_sources` (raw text, field `text_field`), `preprocess.sft_sources` (chats: messages,
ShareGPT, instruction/output) and `preprocess.preference_sources` (prompt/chosen/rejected). `data.sources`
is not used by this stage; `data.invalid_utf8` and `data.max_rejected_fraction` are.

CPT text goes through NFC, invisible-character removal, whitespace normalisation, optional kss sentence
splitting, length / Hangul-ratio / repetition filters, typed PII masking, then exact and MinHash-LSH
near-duplicate removal (see `korean_llm.cleaning`: workers clean batches, the main process deduplicates
in input order, so the output does not depend on `num_proc`). Chats and pairs are validated, normalised
to `messages` / conversational pairs, NFC-cleaned and PII-masked, exact-deduplicated, and split into
train/eval by a hash of the row.

Output, written to `<data_dir>/processed.partial/` and renamed to `<data_dir>/processed/` at the end:
`cpt/part-*.parquet` (text), `sft/{train,eval}/` (messages), `preference/{train,eval}/` (prompt, chosen,
rejected), `stats.json` and `rejected.jsonl` (file, line, reason of every row not written). The later
stages read them as data sources, e.g. `{path: "{data_dir}/processed/cpt"}`. The manifest's `outputs`
are relative to `extra.outputs_root` (the run's data folder). Rows that cannot be read or fail
validation count against `data.max_rejected_fraction` (exit 2, stats.json still written); rows removed
by filters or dedup are expected and do not.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import resource
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from korean_llm import korean
from korean_llm.artifacts import Manifest, atomic_write_json
from korean_llm.cleaning import (
    HANGUL_BINS,
    LENGTH_EDGES,
    Deduplicator,
    Dropped,
    Origins,
    Settings,
    StepCounts,
    hangul_bin,
    length_bin,
    make_batches,
    run_batches,
)
from korean_llm.config import DataSource, StageConfig
from korean_llm.data import ParquetShardWriter, preference_row, read_source, sft_row, text_row
from korean_llm.errors import ConfigError, DataError
from korean_llm.stage import StageContext, execute

log = logging.getLogger("korean_llm")
MB = 1024 * 1024


class Rejects:
    """`rejected.jsonl`, streamed: one line per row that was not written, with its file, line and reason."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by close(), streamed across stages

    def add(self, kind: str, file: str, line: int, reason: str) -> None:
        self._fh.write(json.dumps({"input": kind, "file": file, "line": line, "reason": reason}, ensure_ascii=False))
        self._fh.write("\n")

    def close(self) -> None:
        self._fh.close()


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

    def read(self, rec: Any) -> None:
        self.rows_in += 1
        self.utf8_replaced += rec.replaced
        self.utf8_rejected += rec.error == "invalid UTF-8"

    def as_dict(self, policy: str) -> dict[str, Any]:
        return {
            "rows_in": self.rows_in,
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


def _reason_kind(reason: str) -> str:
    return reason.split(":")[0]


def _settings(cfg: StageConfig) -> Settings:
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
        for rec in read_source(source, cfg.data.invalid_utf8):
            report.read(rec)
            origin = origins.pack(rec.file, rec.line)
            if rec.error is not None or rec.data is None:
                yield origin, None, rec.error or "unreadable row"
                continue
            try:
                yield origin, text_row(source, rec.data)["text"], None
            except ValueError as exc:
                yield origin, None, str(exc)


def _process_cpt(cfg: StageConfig, out: Path, rejects: Rejects, progress: Any) -> dict[str, Any]:
    import pyarrow as pa

    pp = cfg.preprocess
    report, origins, counts = Report(), Origins(), StepCounts()
    dedup = Deduplicator(pp.dedup)
    writer = ParquetShardWriter(out / "cpt", pa.schema([("text", pa.string())]), int(pp.shard_size_mb * MB))
    hist_in = {"hangul_ratio": [0] * 10, "length_chars": [0] * len(LENGTH_EDGES)}
    hist_out = {"hangul_ratio": [0] * 10, "length_chars": [0] * len(LENGTH_EDGES)}
    bytes_in = bytes_out = 0
    task = progress.add_task("cpt", total=None, mb=0.0)
    batches = make_batches(_cpt_items(cfg, report, origins), pp.batch_size)
    for res in run_batches(_settings(cfg), batches, pp.num_proc):
        counts.merge(res.counts)
        bytes_in += res.bytes_in
        for name, hist in (("hangul_ratio", res.hangul_hist), ("length_chars", res.length_hist)):
            hist_in[name] = [a + b for a, b in zip(hist_in[name], hist, strict=True)]
        for doc in res.outcomes:
            if isinstance(doc, Dropped):
                if doc.step == "invalid":
                    report.invalid[_reason_kind(doc.reason)] += 1
                else:
                    report.removed[doc.step] += 1
                rejects.add("cpt", *origins.unpack(doc.origin), doc.reason)
                continue
            dup = dedup.check(doc)
            for step in dedup.steps:  # a copy stops at the step that found it
                counts.count(step, doc.text, None if dup is not None and dup[0] == step else doc.text)
                if dup is not None and dup[0] == step:
                    break
            if dup is not None:
                report.removed[dup[0]] += 1
                rejects.add("cpt", *origins.unpack(doc.origin), f"{dup[0]}: copy of {origins.describe(dup[1])}")
                continue
            writer.write({"text": doc.text}, doc.nbytes)
            bytes_out += doc.nbytes
            report.pii.update(doc.pii)
            hist_out["hangul_ratio"][hangul_bin(doc.hangul)] += 1
            hist_out["length_chars"][length_bin(len(doc.text))] += 1
        progress.update(task, advance=len(res.outcomes), mb=bytes_in / MB)
    shards = writer.close()
    report.written = {"cpt": writer.rows}
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


def _clean_content(text: str, cfg: StageConfig, pii: Counter[str]) -> str:
    c = cfg.preprocess.cleaning
    text = korean.nfc(text) if c.nfc else text
    text = korean.remove_invisible(text) if c.remove_invisible else text
    if cfg.preprocess.pii.enabled and cfg.preprocess.pii.apply_to_chats:
        text, found = korean.mask_pii(text, cfg.preprocess.pii.types)
        pii.update(found)
    return text


def _clean_messages(value: Any, cfg: StageConfig, pii: Counter[str]) -> Any:
    if isinstance(value, list):
        return [{"role": m["role"], "content": _clean_content(m["content"], cfg, pii)} for m in value]
    return value


def _is_eval(key: bytes, fraction: float, seed: int) -> bool:
    h = hashlib.blake2b(key, digest_size=8, salt=seed.to_bytes(8, "little", signed=True)).digest()
    return int.from_bytes(h, "little") / 2**64 < fraction


def _process_chats(
    kind: str,
    sources: list[DataSource],
    validate: Callable[[DataSource, dict[str, Any]], dict[str, Any]],
    schema: Any,
    cfg: StageConfig,
    out: Path,
    rejects: Rejects,
    progress: Any,
) -> dict[str, Any]:
    pp = cfg.preprocess
    report, seen = Report(), {}
    writers = {
        split: ParquetShardWriter(out / kind / split, schema, int(pp.shard_size_mb * MB)) for split in ("train", "eval")
    }
    task = progress.add_task(kind, total=None, mb=0.0)
    for source in sources:
        for rec in read_source(source, cfg.data.invalid_utf8):
            report.read(rec)
            progress.update(task, advance=1)
            if rec.error is not None or rec.data is None:
                report.invalid[_reason_kind(rec.error or "unreadable row")] += 1
                rejects.add(kind, rec.file, rec.line, rec.error or "unreadable row")
                continue
            try:
                row = validate(source, rec.data)
            except ValueError as exc:
                report.invalid[_reason_kind(str(exc))] += 1
                rejects.add(kind, rec.file, rec.line, str(exc))
                continue
            row = {name: _clean_messages(value, cfg, report.pii) for name, value in row.items()}
            payload = json.dumps(row, ensure_ascii=False, sort_keys=True)
            key = korean.exact_key(payload)
            if key in seen:
                report.removed["exact_dedup"] += 1
                rejects.add(kind, rec.file, rec.line, f"exact_dedup: copy of {seen[key]}")
                continue
            seen[key] = f"{rec.file}:{rec.line}"
            split = "eval" if _is_eval(key, pp.eval_fraction, cfg.run.seed) else "train"
            writers[split].write(row, len(payload.encode("utf-8")))
    for w in writers.values():
        w.close()
    report.written = {split: w.rows for split, w in writers.items()}
    return report.as_dict(cfg.data.invalid_utf8)


def _message_schema(names: tuple[str, ...]) -> Any:
    import pyarrow as pa

    message = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    return pa.schema([(name, message) for name in names])


def _check(stats: dict[str, Any], limit: float, stats_path: Path, rejected_path: Path) -> None:
    """Exit 2 for an empty input, nothing written, or too many invalid rows; the paths are in the message."""
    where = f"; stats in {stats_path}, rejected rows in {rejected_path}"
    for kind, s in stats["inputs"].items():
        if s["rows_in"] == 0:
            raise DataError(f"preprocess.{kind}_sources: the input has no rows{where}")
        fraction = s["invalid_rows"] / s["rows_in"]
        if fraction > limit:
            reasons = ", ".join(f"{k}: {v}" for k, v in s["invalid_by_reason"].items())
            raise DataError(
                f"preprocess.{kind}_sources: {s['invalid_rows']} of {s['rows_in']} rows invalid ({fraction:.1%}, "
                f"limit data.max_rejected_fraction {limit:.1%}); reasons: {reasons}{where}"
            )
        if s["rows_out"] == 0:
            removed = ", ".join(f"{k}: {v}" for k, v in {**s["invalid_by_reason"], **s["removed_by_step"]}.items())
            raise DataError(f"preprocess.{kind}_sources: no row left of {s['rows_in']} ({removed}){where}")


def _summary(stats: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    if "cpt" in stats["inputs"]:
        table = Table(title="CPT text: rows and characters per step")
        for col in ("step", "rows in", "rows out", "removed", "chars in", "chars out"):
            table.add_column(col, justify="left" if col == "step" else "right")
        for step, c in stats["inputs"]["cpt"]["steps"].items():
            removed = c["rows_in"] - c["rows_out"]
            table.add_row(
                step, *(f"{v:,}" for v in (c["rows_in"], c["rows_out"], removed, c["chars_in"], c["chars_out"]))
            )
        console.print(table)
    table = Table(title="Preprocess summary")
    for col in ("input", "rows in", "written", "invalid", "removed", "PII masked"):
        table.add_column(col, justify="left" if col == "input" else "right")
    for kind, s in stats["inputs"].items():
        written = ", ".join(f"{k} {v:,}" for k, v in s["written"].items())
        pii = ", ".join(f"{k} {v}" for k, v in s["pii_masked"].items()) or "-"
        table.add_row(
            kind, f"{s['rows_in']:,}", written, f"{s['invalid_rows']:,}", f"{sum(s['removed_by_step'].values()):,}", pii
        )
    console.print(table)


def _progress(console: Any) -> Any:
    """Rows, rows/s and MB read per input kind."""
    from rich.progress import Progress, ProgressColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(f"{task.speed or 0:,.0f} rows/s", style="progress.data.speed")

    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed:,} rows"),
        RateColumn(),
        TextColumn("{task.fields[mb]:.1f} MB"),
        TimeElapsedColumn(),
        console=console,
    )


def _run(ctx: StageContext) -> Manifest:
    from rich.console import Console

    cfg, pp = ctx.cfg, ctx.cfg.preprocess
    if cfg.data.sources:
        raise ConfigError(
            f"{cfg.source}: key 'data.sources' is not read by the preprocess stage; name the inputs under "
            "preprocess.cpt_sources, preprocess.sft_sources or preprocess.preference_sources"
        )
    if not pp.all_sources:
        raise ConfigError(
            f"{cfg.source}: key 'preprocess': no inputs; set preprocess.cpt_sources, sft_sources or preference_sources"
        )
    final, work = cfg.run.data_dir / "processed", cfg.run.data_dir / "processed.partial"
    if work.exists():
        shutil.rmtree(work)  # a previous attempt was killed: preprocessing starts over
    work.mkdir(parents=True)
    rejects = Rejects(work / "rejected.jsonl")
    stats: dict[str, Any] = {"inputs": {}, "config": pp.model_dump(mode="json")}
    started = time.perf_counter()
    own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_before, children_before = own.ru_utime + own.ru_stime, workers.ru_utime + workers.ru_stime
    console = Console(stderr=True)
    try:
        with _progress(console) as progress:
            if pp.cpt_sources:
                stats["inputs"]["cpt"] = _process_cpt(cfg, work, rejects, progress)
            chats = (
                ("sft", pp.sft_sources, sft_row(None), _message_schema(("messages",))),
                (
                    "preference",
                    pp.preference_sources,
                    preference_row,
                    _message_schema(("prompt", "chosen", "rejected")),
                ),
            )
            for kind, sources, validate, schema in chats:
                if sources:
                    stats["inputs"][kind] = _process_chats(
                        kind, sources, validate, schema, cfg, work, rejects, progress
                    )
    finally:
        rejects.close()
    seconds = time.perf_counter() - started
    stats["seconds"] = round(seconds, 3)
    # CPU time of this process and of the finished workers: on a busy machine the per-worker rate is
    # bytes_in / cpu_seconds, which wall time does not show.
    own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    stats["cpu_seconds"] = {
        "main": round(own.ru_utime + own.ru_stime - cpu_before, 3),
        "workers": round(workers.ru_utime + workers.ru_stime - children_before, 3),
    }
    if "cpt" in stats["inputs"]:
        stats["cpt_mb_per_second"] = round(stats["inputs"]["cpt"]["bytes_in"] / MB / seconds, 3)
    atomic_write_json(ctx.dir.work / "stats.json", stats)
    atomic_write_json(work / "stats.json", stats)
    _summary(stats, console)
    _check(stats, cfg.data.max_rejected_fraction, ctx.dir.work / "stats.json", work / "rejected.jsonl")
    if final.exists():
        shutil.rmtree(final)  # left by an attempt killed after its rename but before its manifest
    os.rename(work, final)
    outputs = {"stats": "processed/stats.json", "rejected": "processed/rejected.jsonl"}
    if "cpt" in stats["inputs"]:
        outputs["cpt"] = "processed/cpt"
    for kind in ("sft", "preference"):
        if kind in stats["inputs"]:
            outputs.update({f"{kind}_train": f"processed/{kind}/train", f"{kind}_eval": f"processed/{kind}/eval"})
    metrics: dict[str, float | int | None] = {"seconds": round(seconds, 3)}
    for kind, s in stats["inputs"].items():
        metrics.update(
            {f"{kind}_rows_in": s["rows_in"], f"{kind}_rows_out": s["rows_out"], f"{kind}_invalid": s["invalid_rows"]}
        )
        metrics.update({f"{kind}_{step}": n for step, n in s["removed_by_step"].items()})
    return ctx.manifest(
        inputs=[s.path for s in pp.all_sources],
        outputs=outputs,
        metrics=metrics,
        extra={
            "outputs_root": str(cfg.run.data_dir),
            "pii_masked": {k: s["pii_masked"] for k, s in stats["inputs"].items()},
        },
    )


def main(config: StageConfig) -> Manifest:
    """python -m korean_llm preprocess --config /etc/korean-llm/preprocess.yaml"""
    return execute(config, _run)
