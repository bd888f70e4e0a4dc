"""A realistic short Korean chat set, to measure the SFT stage on rows shaped like real ones.

    python -m korean_llm.bench.shortchats chats.jsonl --rows 12000 [--seed 0]

Real Korean SFT sets are mostly short single-turn chats with a tail of long and multi-turn ones.
This writes `messages` rows (JSONL, what the stages read) built from real Korean text: sentences
of the Korean constitution and National Assembly bills shipped in the `konlpy` wheel. Each row's
target length in tokens of the builtin tokenizer (`builtin:tiny-ko`, the tokenizer of the bench
shapes) is drawn from a log-normal distribution (median `--median-tokens`, default 100, with
the default system prompt counted) cut at `--max-tokens` (default 2048), so about 1 % of rows
are over 1,000 tokens. A quarter of the rows are multi-turn (2 to 4 user turns), one row in ten
brings its own system prompt (the others get the stage's default), and the rest are one
question and one answer. The same seed writes the same file.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from korean_llm.builtin import konlpy_corpus_dir
from korean_llm.config import DEFAULT_SYSTEM_PROMPT

# Log-normal spread of the tokens besides the default system prompt (median: --median-tokens less that prompt's
# turn): sigma 1.3 puts p90 at 5x and p99 at 20x that median; the longest of 12,000 rows reach the 2,048 cut.
SIGMA = 1.3
MULTI_TURN_SHARE = 0.25
OWN_SYSTEM_SHARE = 0.10
QUESTION_TEMPLATES = (
    "다음 내용을 쉽게 설명해 주세요: {s}",
    "{s} 이 말이 무슨 뜻인가요?",
    "아래 문장을 요약해 줄 수 있나요? {s}",
    "{s} 여기에 대해 어떻게 생각하세요?",
    "이 조항이 실제로 어떻게 적용되는지 알려 주세요. {s}",
    "{s} 이걸 한 문장으로 정리하면요?",
    "질문이 있어요. {s} 맞나요?",
)
SHORT_QUESTIONS = ("{s}?", "{s} 뜻이 뭐예요?", "{s} 맞아요?")
FOLLOW_UPS = (
    "조금 더 자세히 설명해 주세요.",
    "예를 들어 줄 수 있나요?",
    "그럼 반대의 경우는요?",
    "고마워요. 하나만 더 물어볼게요.",
)
OWN_SYSTEM_PROMPTS = (
    "당신은 법률 문서를 쉽게 풀어 설명하는 도우미입니다.",
    "간결하게 존댓말로 답하세요.",
    "You are a helpful assistant. 한국어로 답하세요.",
)


def korean_sentences() -> list[str]:
    """Sentences of the konlpy corpora (constitution, bills), whitespace normalised, 8 to 300 characters."""
    sentences: list[str] = []
    for name in ("kolaw", "kobill"):
        for path in sorted(konlpy_corpus_dir(name).glob("*.txt")):
            text = re.sub(r"\s+", " ", path.read_text(encoding="utf-8"))
            for part in re.split(r"(?<=[.?!다])\s+", text):
                part = part.strip()
                if 8 <= len(part) <= 300 and re.search(r"[가-힣]", part):
                    sentences.append(part)
    return sentences


def _fit(text: str, budget: int, count: Callable[[str], int]) -> str:
    """`text` cut at a word boundary to at most `budget` tokens (at least its first word)."""
    if count(text) <= budget:
        return text
    words = text.split(" ")
    lo, hi = 1, len(words)  # the longest prefix of words that fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(" ".join(words[:mid])) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo])


def _answer(rng: random.Random, pool: list[str], budget: int, count: Callable[[str], int]) -> str:
    """Sentences appended until the answer holds about `budget` tokens; the last one cut to fit."""
    parts: list[str] = []
    used = 0
    while used < budget:
        nxt = _fit(rng.choice(pool), budget - used, count)
        parts.append(nxt)
        used += count(nxt) + 1
    return " ".join(parts)


def generate(
    rows: int,
    seed: int = 0,
    median_tokens: int = 100,
    max_tokens: int = 2048,
    count: Callable[[str], int] | None = None,
) -> Iterator[dict[str, Any]]:
    """`rows` chats; `count(text)` gives a text's tokens (default: the builtin tokenizer)."""
    if count is None:
        from transformers import AutoTokenizer

        from korean_llm.builtin import tiny_model_path

        tokenizer = AutoTokenizer.from_pretrained(tiny_model_path())

        def tokens(text: str) -> int:
            return len(tokenizer(text, add_special_tokens=False)["input_ids"])

        count = tokens
    measure: Callable[[str], int] = count
    cache: dict[str, int] = {}

    def count(text: str) -> int:  # type: ignore[no-redef]  # the same count, memoised (sentences repeat)
        if text not in cache:
            cache[text] = measure(text)
        return cache[text]

    rng = random.Random(seed)
    pool = korean_sentences()
    default_system = count(DEFAULT_SYSTEM_PROMPT) + 9  # the stage adds it to rows without one; 9: template tokens
    # less what a row carries beyond its budget (template words, a last word past the budget): calibrated so the
    # median of the rendered rows lands near median_tokens
    rest = max(8, median_tokens - default_system - 22)
    for _ in range(rows):
        budget = min(max_tokens - default_system, round(math.exp(rng.gauss(math.log(rest), SIGMA))))
        messages: list[dict[str, str]] = []
        if rng.random() < OWN_SYSTEM_SHARE:
            system = rng.choice(OWN_SYSTEM_PROMPTS)
            messages.append({"role": "system", "content": system})
            budget += default_system - count(system) - 9
        turns = rng.randint(2, 4) if rng.random() < MULTI_TURN_SHARE else 1
        per_turn = max(8, budget // turns)
        for turn in range(turns):
            # a question quotes a sentence of at most a third of the turn's tokens; short turns ask briefly
            quote = _fit(rng.choice(pool), max(3, per_turn // 3), count)
            templates = QUESTION_TEMPLATES if per_turn >= 48 else SHORT_QUESTIONS
            question = rng.choice(templates).format(s=quote) if turn == 0 else rng.choice(FOLLOW_UPS)
            asked = count(question) + 18  # the question and both turns' template tokens (9 each, ChatML)
            messages.append({"role": "user", "content": question})
            messages.append({"role": "assistant", "content": _answer(rng, pool, max(2, per_turn - asked), count)})
        yield {"messages": messages}


def write(path: Path, rows: int, seed: int = 0, median_tokens: int = 100, max_tokens: int = 2048) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in generate(rows, seed, median_tokens, max_tokens):
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return rows


def main(argv: list[str] | None = None) -> int:
    """python -m korean_llm.bench.shortchats chats.jsonl --rows 12000 [--seed 0]"""
    p = argparse.ArgumentParser(prog="python -m korean_llm.bench.shortchats", description=__doc__.splitlines()[0])
    p.add_argument("output", type=Path)
    p.add_argument("--rows", type=int, default=12000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--median-tokens", type=int, default=100)
    p.add_argument("--max-tokens", type=int, default=2048)
    args = p.parse_args(argv)
    write(args.output, args.rows, args.seed, args.median_tokens, args.max_tokens)
    print(f"wrote {args.rows} chats to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
