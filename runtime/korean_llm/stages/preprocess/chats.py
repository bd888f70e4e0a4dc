"""SFT chats and preference pairs: validation, normalisation, PII masking, exact dedup and a stable train/eval split.

Rows are validated by `data.chat_messages` / `data.preference_row` (ShareGPT and other variants become
`messages`; pairs become TRL's conversational prompt/chosen/rejected), their message contents NFC-cleaned
and PII-masked, exact copies dropped, and each row put in `eval` when a salted hash of its content falls
below `preprocess.eval_fraction`: the split does not depend on the order, the worker count or the run.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from korean_llm import korean
from korean_llm.config import DataSource, StageConfig
from korean_llm.data import ParquetShardWriter, RejectLog, read_source, reason_kind
from korean_llm.stages.preprocess.cleaning import MB, Report


def _clean_content(text: str, cfg: StageConfig, pii: Counter[str]) -> str:
    c = cfg.preprocess.cleaning
    text = korean.nfc(text) if c.nfc else text
    text = korean.remove_invisible(text) if c.remove_invisible else text
    if cfg.preprocess.pii.enabled and cfg.preprocess.pii.apply_to_chats:
        text, found = korean.mask_pii(text, cfg.preprocess.pii.types)
        pii.update(found)
    return text


def _clean_messages(messages: list[dict[str, str]], cfg: StageConfig, pii: Counter[str]) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": _clean_content(m["content"], cfg, pii)} for m in messages]


def is_eval(key: bytes, fraction: float, seed: int) -> bool:
    """True for about `fraction` of all keys, the same ones for the same seed."""
    h = hashlib.blake2b(key, digest_size=8, salt=seed.to_bytes(8, "little", signed=True)).digest()
    return int.from_bytes(h, "little") / 2**64 < fraction


def process_chats(
    kind: str,
    sources: list[DataSource],
    validate: Callable[[DataSource, dict[str, Any]], dict[str, Any]],
    schema: Any,
    cfg: StageConfig,
    out: Path,
    rejects: RejectLog,
    progress: Any,
) -> dict[str, Any]:
    """Validate, clean, deduplicate and split one kind of rows into `out/<kind>/{train,eval}/`; returns its stats."""
    pp = cfg.preprocess
    report, seen = Report(), dict[bytes, str]()
    writers = {
        split: ParquetShardWriter(out / kind / split, schema, int(pp.shard_size_mb * MB)) for split in ("train", "eval")
    }
    task = progress.add_task(kind, total=None, mb=0.0)
    for source in sources:
        for rec in read_source(source, cfg.data.invalid_utf8, report.files):
            report.read(rec)
            progress.update(task, advance=1)
            if rec.error is not None or rec.data is None:
                report.invalid[reason_kind(rec.error or "unreadable row")] += 1
                rejects.add(rec.file, rec.line, rec.error or "unreadable row", input=kind)
                continue
            try:
                row = validate(source, rec.data)
            except ValueError as exc:
                report.invalid[reason_kind(str(exc))] += 1
                rejects.add(rec.file, rec.line, str(exc), input=kind)
                continue
            row = {name: _clean_messages(value, cfg, report.pii) for name, value in row.items()}
            payload = json.dumps(row, ensure_ascii=False, sort_keys=True)
            key = korean.exact_key(payload)
            if key in seen:
                report.removed["exact_dedup"] += 1
                rejects.add(rec.file, rec.line, f"exact_dedup: copy of {seen[key]}", input=kind)
                continue
            seen[key] = f"{rec.file}:{rec.line}"
            split = "eval" if is_eval(key, pp.eval_fraction, cfg.run.seed) else "train"
            writers[split].write(row, len(payload.encode("utf-8")))
    for w in writers.values():
        w.close()
    report.written = {split: w.rows for split, w in writers.items()}
    report.check_accounting(kind)
    return report.as_dict(cfg.data.invalid_utf8)


def message_schema(names: tuple[str, ...]) -> Any:
    import pyarrow as pa

    message = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    return pa.schema([(name, message) for name in names])
