"""Preprocess: raw Korean text, chats and preference pairs to clean, deduplicated, validated parquet shards.

    python -m korean_llm preprocess --config /etc/korean-llm/preprocess.yaml

Inputs are named by kind, each a list of data sources (files, folders, globs, `hf:` ids, `builtin:`):
`preprocess.cpt_sources` (raw text, field `text_field`), `preprocess.sft_sources` (chats: messages,
ShareGPT, instruction/output) and `preprocess.preference_sources` (prompt/chosen/rejected). `data.sources`
is not used by this stage; `data.invalid_utf8` and `data.max_rejected_fraction` are.

CPT text goes through NFC, invisible-character removal, whitespace normalisation, optional kss sentence
splitting, length / Hangul-ratio / repetition filters, typed PII masking, then exact and MinHash-LSH
near-duplicate removal (see `cleaning.py`: workers clean batches, the main process deduplicates
in input order, so the output does not depend on `num_proc`). Chats and pairs are validated, normalised
to `messages` / conversational pairs, NFC-cleaned and PII-masked, exact-deduplicated, and split into
train/eval by a hash of the row.

Output, written to `<data_dir>/processed.partial/` and renamed to `<data_dir>/processed/` at the end:
`cpt/part-*.parquet` (text), `sft/{train,eval}/` (messages), `preference/{train,eval}/` (prompt, chosen,
rejected), `stats.json` and `rejected.jsonl` (input kind, file, line and reason of every row not written). The later
stages read them as data sources, e.g. `{path: "{data_dir}/processed/cpt"}`. The manifest's `outputs`
are relative to `extra.outputs_root` (the run's data folder). Rows that cannot be read or fail
validation count against `data.max_rejected_fraction` (exit 2, stats.json still written); rows removed
by filters or dedup are expected and do not.
"""

from __future__ import annotations

import logging
import os
import resource
import shutil
import time
from pathlib import Path
from typing import Any

from korean_llm.config import StageConfig
from korean_llm.data import RejectLog, preference_row, sft_row
from korean_llm.errors import ConfigError, DataError
from korean_llm.pipeline.artifacts import Manifest, atomic_write_json
from korean_llm.pipeline.stage import StageContext, execute
from korean_llm.stages.preprocess.chats import message_schema, process_chats
from korean_llm.stages.preprocess.cleaning import MB, process_cpt

log = logging.getLogger("korean_llm")


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
        ctx.ensure_held(f"deleting {work}")
        shutil.rmtree(work)  # a previous attempt was killed: preprocessing starts over
    work.mkdir(parents=True)
    rejects = RejectLog(stream=work / "rejected.jsonl")
    stats: dict[str, Any] = {"inputs": {}, "config": pp.model_dump(mode="json")}
    started = time.perf_counter()
    own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_before, children_before = own.ru_utime + own.ru_stime, workers.ru_utime + workers.ru_stime
    console = Console(stderr=True)
    try:
        with _progress(console) as progress:
            if pp.cpt_sources:
                stats["inputs"]["cpt"] = process_cpt(cfg, work, rejects, progress)
            chats = (
                ("sft", pp.sft_sources, sft_row(None), message_schema(("messages",))),
                (
                    "preference",
                    pp.preference_sources,
                    preference_row,
                    message_schema(("prompt", "chosen", "rejected")),
                ),
            )
            for kind, sources, validate, schema in chats:
                if sources:
                    stats["inputs"][kind] = process_chats(kind, sources, validate, schema, cfg, work, rejects, progress)
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
    # The lock may have been taken over while this process stalled: the new owner's processed/ stays as it is.
    ctx.ensure_held(f"replacing {final}")
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
            # Format and encoding of every file read (an `auto` fallback to CP949 says so in `note`).
            "inputs_read": {k: s["files"] for k, s in stats["inputs"].items()},
        },
    )


def main(config: StageConfig) -> Manifest:
    """python -m korean_llm preprocess --config /etc/korean-llm/preprocess.yaml"""
    return execute(config, _run)
