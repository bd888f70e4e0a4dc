"""Korean vocabulary extension of the base model before continued pre-training (EEVE-style).

    python -m korean_llm vocab --config /etc/korean-llm/vocab.yaml

Reads the cleaned CPT corpus (`data.sources`, e.g. `{data_dir}/processed/cpt`), trains a Korean byte-level
BPE on it with `tokenizers`, and extends the base tokenizer with up to `vocab.max_new_tokens` of its tokens
as new BPE merges (see `tokenizer.py`: existing ids and the tokenization of text without Hangul are
unchanged, the round trip decode(encode(x)) == x is checked on Korean, English, code and emoji before
anything is published). The base model's embeddings are resized and each new row is the mean of the rows of
the base tokens it replaces (`embeddings.py`). Writes `model/` (resized weights), `tokenizer/`,
`korean_bpe.json` and a manifest with the tokenizer hash, the tokens added and the fertility before/after;
CPT (run.previous_stage: vocab) starts from it and checks it like any upstream manifest.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from korean_llm.config import StageConfig
from korean_llm.data import RejectLog, collect_rows, text_row
from korean_llm.errors import ConfigError, DataError
from korean_llm.korean import fertility
from korean_llm.pipeline.artifacts import Manifest, atomic_write_json, atomic_write_text, tokenizer_fingerprint
from korean_llm.pipeline.stage import StageContext, execute
from korean_llm.stages.vocab.embeddings import extend_embeddings
from korean_llm.stages.vocab.tokenizer import (
    ROUND_TRIP_PROBES,
    changed_without_hangul,
    extend,
    learn_merges,
    round_trip_failures,
    subword_pieces,
    train_korean_bpe,
    words_of,
)
from korean_llm.train.models import init_point, torch_dtype

log = logging.getLogger("korean_llm")


def corpus(rows: list[dict[str, Any]], max_chars: int | None) -> list[str]:
    texts, total = [], 0
    for row in rows:
        if max_chars is not None and total >= max_chars:
            break
        texts.append(row["text"])
        total += len(row["text"])
    return texts


def hf_tokenizer_with(base_hf: Any, backend: Any, folder: Path) -> Any:
    """The base HF tokenizer (special tokens, chat template, class) with `backend` as its tokenizer.json.

    Slow-tokenizer files (vocab.json / merges.txt) are rewritten from the extended model too, so no file in
    the folder describes the old vocabulary.
    """
    from transformers import AutoTokenizer

    base_hf.save_pretrained(folder)
    backend.save(str(folder / "tokenizer.json"))
    data = json.loads(backend.to_str())
    if (folder / "vocab.json").exists():
        atomic_write_json(folder / "vocab.json", data["model"]["vocab"])
    if (folder / "merges.txt").exists():
        merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
        atomic_write_text(folder / "merges.txt", "#version: 0.2\n" + "\n".join(merges) + "\n")
    return AutoTokenizer.from_pretrained(folder)


def _run(ctx: StageContext) -> Manifest:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg, vc = ctx.cfg, ctx.cfg.vocab
    if cfg.run.previous_stage is not None:
        raise ConfigError(
            f"{cfg.source}: key 'run.previous_stage': the vocab stage extends the base model, so it runs before "
            f"any training stage (found '{cfg.run.previous_stage}')"
        )
    rejects = RejectLog()
    rows = collect_rows(cfg.data, text_row, rejects)
    ctx.record_rejects(rejects, "vocab data")
    texts = corpus(rows, vc.max_training_chars)
    if not texts:
        raise DataError(f"vocab data: no documents in {', '.join(s.path for s in cfg.data.sources) or '(none)'}")
    init = init_point(cfg)
    base_hf = AutoTokenizer.from_pretrained(
        init.weights, revision=cfg.model.revision, trust_remote_code=cfg.model.trust_remote_code
    )
    if not getattr(base_hf, "is_fast", False):
        raise ConfigError(
            f"{cfg.source}: the base tokenizer of '{init.weights}' has no tokenizer.json (fast tokenizer)"
        )
    base = base_hf.backend_tokenizer
    where = f"{init.weights}/tokenizer.json"

    korean = train_korean_bpe(base, texts, vc.korean_vocab_size, vc.min_frequency)
    words = words_of(base, texts)
    merges = learn_merges(
        base, words, set(korean.get_vocab()), max_new_tokens=vc.max_new_tokens, min_frequency=vc.min_frequency
    )
    if not merges:
        raise DataError(
            f"vocab data: no Korean token that the base tokenizer splits occurs {vc.min_frequency}+ times in "
            f"{len(texts)} documents; nothing to add"
        )
    ext = extend(base, merges, where)
    failed = round_trip_failures(ext.tokenizer, ROUND_TRIP_PROBES)
    changed = changed_without_hangul(base, ext.tokenizer, ROUND_TRIP_PROBES)
    if failed or changed:  # the construction rules both out: this is a bug, not bad input
        raise RuntimeError(f"extended tokenizer: round trip fails on {failed}, non-Korean text changed on {changed}")

    work = ctx.dir.work
    korean.save(str(work / "korean_bpe.json"))
    tmp = Path(tempfile.mkdtemp(prefix=".tokenizer-", dir=work))
    try:
        tokenizer = hf_tokenizer_with(base_hf, ext.tokenizer, tmp)
        tokenizer.save_pretrained(work / "tokenizer")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    probe = "대한민국 헌법 제1조"
    if tokenizer(probe, add_special_tokens=False)["input_ids"] != ext.tokenizer.encode(probe).ids:
        raise RuntimeError("the saved HF tokenizer does not encode like the extended tokenizer")

    # The stored dtype unless one is configured: the resized model is saved as the base was.
    model = AutoModelForCausalLM.from_pretrained(
        init.weights,
        dtype="auto" if cfg.model.dtype == "auto" else torch_dtype(cfg.model.dtype),
        revision=cfg.model.revision,
        trust_remote_code=cfg.model.trust_remote_code,
    )
    pieces = [subword_pieces(base, t) for t in ext.new_tokens]
    info = extend_embeddings(model, ext.new_ids, pieces, pad_to_multiple_of=vc.pad_to_multiple_of)
    model.save_pretrained(work / "model")
    tokenizer.save_pretrained(work / "model")

    before = fertility(base, texts)
    after = fertility(ext.tokenizer, texts)
    metrics: dict[str, Any] = {
        "documents": len(texts),
        "tokens_added": len(ext.new_tokens),
        "korean_vocab_size": korean.get_vocab_size(),
        "embedding_rows_before": info["rows_before"],
        "embedding_rows_after": info["rows_after"],
        **{f"corpus/base/{k}": v for k, v in before.items()},
        **{f"corpus/extended/{k}": v for k, v in after.items()},
        "corpus/token_reduction": 1 - after["tokens"] / before["tokens"] if before["tokens"] else None,
    }
    if vc.fertility_sources:
        held = [
            r["text"]
            for r in collect_rows(cfg.data.model_copy(update={"sources": vc.fertility_sources}), text_row, RejectLog())
        ]
        hb, he = fertility(base, held), fertility(ext.tokenizer, held)
        metrics.update({f"fertility_texts/base/{k}": v for k, v in hb.items()})
        metrics.update({f"fertility_texts/extended/{k}": v for k, v in he.items()})
        metrics["fertility_texts/token_reduction"] = 1 - he["tokens"] / hb["tokens"] if hb["tokens"] else None
    added = [
        {"id": i, "token": tok, "text": ext.tokenizer.decode([i]), "pieces": p, "count": c}
        for i, tok, p, c in zip(ext.new_ids, ext.new_tokens, pieces, ext.merge_counts, strict=True)
    ]
    atomic_write_json(work / "tokens_added.json", added)
    log.info(
        "vocab: added %d tokens; corpus tokens %d -> %d (%.1f%% fewer)",
        len(added),
        int(before["tokens"]),
        int(after["tokens"]),
        100 * (metrics["corpus/token_reduction"] or 0),
    )
    return ctx.manifest(
        merged_path="model",
        tokenizer_path="tokenizer",
        tokenizer_hash=tokenizer_fingerprint(tokenizer),
        inputs=[s.path for s in cfg.data.sources],
        outputs={"tokens_added": "tokens_added.json", "korean_bpe": "korean_bpe.json", "rejected": "rejected.jsonl"},
        metrics=metrics,
        extra={
            "new_token_ids": [ext.first_id, ext.first_id + len(ext.new_tokens)],
            "tied_embeddings": info["tied_embeddings"],
            "base_tokenizer_hash": tokenizer_fingerprint(base_hf),
            "init": "subword mean (EEVE)",
        },
    )


def main(config: StageConfig) -> Manifest:
    """python -m korean_llm vocab --config /etc/korean-llm/vocab.yaml"""
    return execute(config, _run)
