"""Extending a byte-level BPE tokenizer with Korean tokens: vocabulary and merges together.

How the `tokenizers` library represents such a tokenizer (tokenizers 0.23, `tokenizers/src/models/bpe/model.rs`
and `word.rs` at v0.23.1; 0.23.3 installed): `model.vocab` maps each token, written in GPT-2's byte-to-unicode
alphabet (`pre_tokenizers/byte_level.rs`), to its id; `model.merges` is the ranked list of pairs. The
pre-tokenizer cuts the normalized text into words, and each word starts as single bytes; `Word::merge_all`
then merges the pair of lowest rank present until none applies. With `ignore_merges` (what transformers'
`TikTokenConverter` sets, as tiktoken behaves) a word that is itself in the vocabulary is taken whole first
(`BPE::tokenize_with_cache`). Loading checks that both sides of every merge and their concatenation are in
the vocabulary (`Error::MergeTokenOutOfVocabulary`).

`Tokenizer.add_tokens` is another mechanism: added tokens live in the `AddedVocabulary`
(`tokenizer/added_vocabulary.rs`), which cuts them out of the raw text with an Aho-Corasick match before
normalization and pre-tokenization. An added "대한민국" is split off "대한민국의" wherever it occurs, the text
around it is tokenized as separate pieces (so the neighbours' segmentation changes too), and thousands of
added strings turn tokenization into leftmost-longest string matching that no merge order describes.

So new tokens here are BPE vocabulary entries with one merge each, appended after the base's last merge.
They are learned as a continuation of BPE training on the base's own segmentation of the corpus: each step
merges the most frequent adjacent pair (as the base tokenizer leaves the words) whose result is a token of
a Korean BPE trained with `tokenizers` on the same corpus and pre-tokenizer, contains a Hangul syllable and
is not already in the base vocabulary. Because every new merge ranks after all base merges and its result
contains a complete Hangul syllable's bytes, a word without Hangul is split exactly as before, and every
existing token keeps its id; encoding Korean follows the base merges first and then the new ones, in the
order they were learned, which is what the training loop simulated.
"""

from __future__ import annotations

import heapq
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import pairwise
from typing import Any

from korean_llm.errors import ConfigError
from korean_llm.korean import HANGUL_RANGES

# Texts the stage checks before publishing: the round trip must hold for all, and the ones without Hangul
# must tokenize exactly as with the base tokenizer.
ROUND_TRIP_PROBES = {
    "korean": "대한민국은 민주공화국이다. 모든 국민은 법 앞에 평등하다 — "
    "누구든지 성별·종교 또는 사회적 신분에 의하여 차별을 받지 아니한다.",
    "korean_mixed": "서울시 GDP는 2023년 기준 약 500조 원(₩)이며, e-mail: test@example.kr 로 문의하세요.",
    "english": "The quick brown fox jumps over the lazy dog. It's 3.14 o'clock, isn't it?  Tabs\tand\nnewlines.",
    "code": 'def fib(n: int) -> int:\n    """Return the n-th number."""\n'
    "    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "emoji": "Great job 👍🏽🎉 — 👨‍👩‍👧‍👦 family, flags 🇰🇷🇯🇵, and ☕️ coffee.",
    "cjk": "東京は日本の首都です。北京是中国的首都。",
    "jamo": "ㅋㅋㅋ ㅠㅠ ᄀᄁ 한글",
}


def has_hangul(text: str) -> bool:
    return any(lo <= ord(ch) <= hi for ch in text for lo, hi in HANGUL_RANGES)


@cache
def _byte_decoder() -> dict[str, int]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {v: k for k, v in bytes_to_unicode().items()}


def token_bytes(token: str) -> bytes:
    """The raw bytes of a byte-level token (the inverse of GPT-2's byte-to-unicode table)."""
    table = _byte_decoder()
    return bytes(table[ch] for ch in token)


def contains_hangul_syllable(token: str) -> bool:
    """True when the token's bytes hold at least one complete Hangul character."""
    return has_hangul(token_bytes(token).decode("utf-8", errors="ignore"))


def _pre_tokenizer_parts(node: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not node:
        return []
    if node.get("type") == "Sequence":
        return [p for sub in node.get("pretokenizers", []) for p in _pre_tokenizer_parts(sub)]
    return [node]


def check_byte_level_bpe(data: dict[str, Any], where: str) -> None:
    """Refuse tokenizers this extension cannot handle, naming what was found."""
    model = data.get("model") or {}
    if model.get("type") != "BPE":
        raise ConfigError(f"{where}: vocab extension needs a BPE tokenizer, found model type {model.get('type')!r}")
    parts = [p.get("type") for p in _pre_tokenizer_parts(data.get("pre_tokenizer"))]
    if "ByteLevel" not in parts or (data.get("decoder") or {}).get("type") != "ByteLevel":
        raise ConfigError(
            f"{where}: vocab extension needs a byte-level BPE (ByteLevel pre-tokenizer and decoder), "
            f"found pre-tokenizers {parts} and decoder {(data.get('decoder') or {}).get('type')!r}"
        )
    if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        raise ConfigError(f"{where}: BPE with a subword prefix or end-of-word suffix is not supported")


def words_of(tokenizer: Any, texts: Iterable[str]) -> Counter[str]:
    """Pre-tokenized words (in the byte-level alphabet) that contain Hangul, with their counts.

    Words without Hangul are left out: no new merge can apply to them.
    """
    counts: Counter[str] = Counter()
    normalizer, pre = tokenizer.normalizer, tokenizer.pre_tokenizer
    for text in texts:
        norm = normalizer.normalize_str(text) if normalizer is not None else text
        for word, _ in pre.pre_tokenize_str(norm):
            counts[word] += 1
    return Counter({w: c for w, c in counts.items() if contains_hangul_syllable(w)})


def train_korean_bpe(base: Any, texts: Sequence[str], vocab_size: int, min_frequency: int) -> Any:
    """A byte-level BPE trained with `tokenizers` on `texts`, with the base's normalizer and pre-tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = base.normalizer
    tok.pre_tokenizer = base.pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def _merge_word(symbols: list[str], a: str, b: str) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(symbols):
        if i + 1 < len(symbols) and symbols[i] == a and symbols[i + 1] == b:
            out.append(a + b)
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out


def learn_merges(
    base: Any,
    words: Counter[str],
    candidates: set[str],
    *,
    max_new_tokens: int,
    min_frequency: int,
) -> list[tuple[str, str, int]]:
    """Continue BPE training from the base's segmentation of `words`: (left, right, count) per new merge.

    Only pairs whose concatenation is in `candidates`, not in the base vocabulary and holds a complete Hangul
    character are merged. Ties go to the lexically smaller token,
    so the result depends only on the corpus.
    """
    base_vocab = base.get_vocab()
    names = list(words)
    counts = [words[w] for w in names]
    symbols = [[t.value for t in base.model.tokenize(w)] for w in names]

    eligible_cache: dict[tuple[str, str], bool] = {}

    def eligible(pair: tuple[str, str]) -> bool:
        hit = eligible_cache.get(pair)
        if hit is None:
            merged = pair[0] + pair[1]
            # a complete Hangul character in the result: the merge can only ever apply to text with Hangul
            hit = merged in candidates and merged not in base_vocab and contains_hangul_syllable(merged)
            eligible_cache[pair] = hit
        return hit

    pair_count: dict[tuple[str, str], int] = defaultdict(int)
    where: dict[tuple[str, str], set[int]] = defaultdict(set)
    for i, syms in enumerate(symbols):
        for pair in pairwise(syms):
            if eligible(pair):
                pair_count[pair] += counts[i]
                where[pair].add(i)
    heap = [(-c, p[0] + p[1], p) for p, c in pair_count.items()]
    heapq.heapify(heap)
    merges: list[tuple[str, str, int]] = []
    while heap and len(merges) < max_new_tokens:
        neg, _, pair = heapq.heappop(heap)
        current = pair_count.get(pair, 0)
        if current != -neg:
            if current > 0:
                heapq.heappush(heap, (-current, pair[0] + pair[1], pair))
            continue
        if current < min_frequency:
            break
        merges.append((pair[0], pair[1], current))
        del pair_count[pair]
        touched: set[tuple[str, str]] = set()
        for i in sorted(where.pop(pair, ())):
            old = symbols[i]
            new = _merge_word(old, *pair)
            if len(new) == len(old):
                continue
            for q in pairwise(old):
                if q != pair and eligible(q):
                    pair_count[q] -= counts[i]
                    touched.add(q)
            for q in pairwise(new):
                if eligible(q):
                    pair_count[q] += counts[i]
                    where[q].add(i)
                    touched.add(q)
            symbols[i] = new
        for q in sorted(touched):
            c = pair_count.get(q, 0)
            if c > 0:
                heapq.heappush(heap, (-c, q[0] + q[1], q))
            elif q in pair_count:
                del pair_count[q]
    return merges


@dataclass
class Extension:
    """The extended tokenizer (a `tokenizers.Tokenizer`) and what was added to it."""

    tokenizer: Any
    new_tokens: list[str]  # in id order
    first_id: int
    merge_counts: list[int]  # occurrences of each new merge in the corpus when it was learned

    @property
    def new_ids(self) -> list[int]:
        return list(range(self.first_id, self.first_id + len(self.new_tokens)))


def next_free_id(data: dict[str, Any]) -> int:
    ids = [*data["model"]["vocab"].values(), *(t["id"] for t in data.get("added_tokens") or [])]
    return max(ids) + 1


def extend(base: Any, merges: Sequence[tuple[str, str, int]], where: str) -> Extension:
    """The base tokenizer with `merges` appended and their results added to the BPE vocabulary."""
    from tokenizers import Tokenizer

    data = json.loads(base.to_str())
    check_byte_level_bpe(data, where)
    model = data["model"]
    vocab: dict[str, int] = model["vocab"]
    first = next_free_id(data)
    # Added (special) tokens keep their ids only if they are BPE entries too. On load, tokenizers gives an added
    # token that the model's vocabulary lacks the id `model.get_vocab_size()` (the number of BPE entries) or the
    # next after the largest added id (tokenizers `tokenizer/added_vocabulary.rs`, `AddedVocabulary::add_tokens`,
    # read at commit 02cc5359; 0.23.3 installed behaves so, tests/test_vocab.py), not the id in tokenizer.json.
    # Qwen2.5's 22 special tokens sit after its 151,643 BPE entries (151,643-151,664): appending N new entries
    # would move every one of them N ids up.
    # As BPE entries at their own ids they are found by `token_to_id` and keep them; BPE never produces them
    # (no merge leads there, and the added vocabulary cuts them out of the text before the model sees it).
    for added in data.get("added_tokens") or []:
        if vocab.setdefault(added["content"], added["id"]) != added["id"]:
            raise ValueError(f"{where}: added token {added['content']!r} has id {added['id']}, the BPE another")
    string_merges = bool(model["merges"]) and isinstance(model["merges"][0], str)
    new_tokens: list[str] = []
    for a, b, _ in merges:
        token = a + b
        if token in vocab:
            raise ValueError(f"merge ({a!r}, {b!r}) gives {token!r}, already in the vocabulary")
        vocab[token] = first + len(new_tokens)
        new_tokens.append(token)
        model["merges"].append(f"{a} {b}" if string_merges else [a, b])
    tokenizer = Tokenizer.from_str(json.dumps(data, ensure_ascii=False))
    return Extension(tokenizer, new_tokens, first, [c for _, _, c in merges])


def round_trip_failures(tokenizer: Any, texts: dict[str, str]) -> list[str]:
    """Names of the texts for which decode(encode(text)) differs from the (normalized) text."""
    failed = []
    for name, text in texts.items():
        expected = tokenizer.normalizer.normalize_str(text) if tokenizer.normalizer is not None else text
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        if tokenizer.decode(ids, skip_special_tokens=False) != expected:
            failed.append(name)
    return failed


def changed_without_hangul(base: Any, extended: Any, texts: dict[str, str]) -> list[str]:
    """Names of the texts without Hangul that the extended tokenizer splits differently from the base."""
    changed = []
    for name, text in texts.items():
        if has_hangul(text):
            continue
        if base.encode(text, add_special_tokens=False).ids != extended.encode(text, add_special_tokens=False).ids:
            changed.append(name)
    return changed


def subword_pieces(base: Any, token: str) -> list[int]:
    """Base token ids the base tokenizer splits a new token into (the token as one pre-tokenized word)."""
    return [t.id for t in base.model.tokenize(token)]
