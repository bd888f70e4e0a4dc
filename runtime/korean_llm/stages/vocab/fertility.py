"""Fertility of a tokenizer on Korean text: tokens per Hangul syllable and characters per token.

Used by the vocab stage (base vs extended tokenizer on the corpus) and by evaluate (on its held-out texts).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from korean_llm.korean import HANGUL_RANGES


def hangul_syllables(text: str) -> int:
    lo, hi = HANGUL_RANGES[0]  # the precomposed syllables 가-힣
    return sum(1 for ch in text if lo <= ord(ch) <= hi)


def fertility(tokenizer: Any, texts: Iterable[str]) -> dict[str, float | None]:
    """Token, character and syllable counts of `texts` under `tokenizer` (an HF or a `tokenizers` tokenizer)."""
    tokens = chars = syllables = 0
    for text in texts:
        if hasattr(tokenizer, "encode_batch"):  # tokenizers.Tokenizer
            n = len(tokenizer.encode(text, add_special_tokens=False).ids)
        else:
            n = len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
        tokens += n
        chars += len(text)
        syllables += hangul_syllables(text)
    return {
        "tokens": float(tokens),
        "characters": float(chars),
        "hangul_syllables": float(syllables),
        "tokens_per_hangul_syllable": tokens / syllables if syllables else None,
        "characters_per_token": chars / tokens if tokens else None,
    }
