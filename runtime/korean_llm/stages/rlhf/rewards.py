"""GRPO reward functions: Korean-response, length, format (regex) and user functions by import path.

Each reward is a callable with TRL's reward signature, `(prompts, completions, **kwargs) -> list[float]`,
and a `__name__` that TRL uses in its logs (`rewards/<name>/mean`). They are small classes rather
than closures so that they pickle (TRL and accelerate may copy them to worker processes).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Sequence
from typing import Any

from korean_llm.config import (
    FormatRewardConfig,
    KoreanRewardConfig,
    LengthRewardConfig,
    PythonRewardConfig,
    RewardConfig,
)
from korean_llm.errors import ConfigError
from korean_llm.korean import hangul_ratio


def completion_text(completion: Any) -> str:
    """The answer as text: TRL passes a string, or a list of messages for conversational prompts."""
    if isinstance(completion, str):
        return completion
    return "".join(str(m.get("content") or "") for m in completion if isinstance(m, dict))


def hangul_share(text: str) -> float | None:
    """Share of Hangul among the letters of `text` (see `korean.hangul_ratio`); None without letters."""
    return hangul_ratio(text) if any(ch.isalpha() for ch in text) else None


class KoreanReward:
    """Hangul share of the answer, minus `penalty` when it is below `min_share` (LogicKor: not Korean, no score).

    An answer without letters (empty, only digits or symbols) gets 0.
    """

    __name__ = "korean"

    def __init__(self, min_share: float, penalty: float) -> None:
        self.min_share = min_share
        self.penalty = penalty

    def score(self, text: str) -> float:
        share = hangul_share(text)
        if share is None:
            return 0.0
        return share - self.penalty if share < self.min_share else share

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        return [self.score(completion_text(c)) for c in completions]


class LengthReward:
    """1 for an answer of `min_chars`..`max_chars` characters; below, len/min; above, max/len."""

    __name__ = "length"

    def __init__(self, min_chars: int, max_chars: int) -> None:
        self.min_chars = min_chars
        self.max_chars = max_chars

    def score(self, text: str) -> float:
        n = len(text.strip())
        if n < self.min_chars:
            return n / self.min_chars
        if n > self.max_chars:
            return self.max_chars / n
        return 1.0

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        return [self.score(completion_text(c)) for c in completions]


class FormatReward:
    """1 when the answer matches the pattern (`re.search`, DOTALL), else 0."""

    __name__ = "format"

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._regex = re.compile(pattern, re.DOTALL)

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        return [1.0 if self._regex.search(completion_text(c)) else 0.0 for c in completions]


def import_reward(spec: str) -> Callable[..., list[float]]:
    """`package.module:function` → the callable; errors say which part was not found."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"rlhf.rewards: cannot import module '{module_name}' of reward '{spec}': {exc}") from exc
    func = getattr(module, attr, None)
    if not callable(func):
        raise ConfigError(f"rlhf.rewards: '{spec}': module '{module_name}' has no callable '{attr}'")
    return func


def build_rewards(specs: Sequence[RewardConfig]) -> tuple[list[Callable[..., list[float]]], list[float]]:
    """The reward callables for GRPOTrainer and their weights (GRPOConfig.reward_weights), in config order."""
    funcs: list[Callable[..., list[float]]] = []
    for spec in specs:
        if isinstance(spec, KoreanRewardConfig):
            funcs.append(KoreanReward(spec.min_hangul_share, spec.penalty))
        elif isinstance(spec, LengthRewardConfig):
            funcs.append(LengthReward(spec.min_chars, spec.max_chars))
        elif isinstance(spec, FormatRewardConfig):
            funcs.append(FormatReward(spec.pattern))
        elif isinstance(spec, PythonRewardConfig):
            funcs.append(import_reward(spec.function))
    return funcs, [spec.weight for spec in specs]
