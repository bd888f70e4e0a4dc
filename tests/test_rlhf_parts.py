"""RLHF stage parts without a model: row validation, reward functions, config rules, metrics."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from korean_llm.config import DataSource, StageConfig, build_config
from korean_llm.data import kto_row, preference_row, prompt_row
from korean_llm.errors import ConfigError
from korean_llm.observe.metrics import StageMetrics
from korean_llm.stages.rlhf import rlhf_metrics, training_rows, unpair
from korean_llm.stages.rlhf.rewards import (
    FormatReward,
    KoreanReward,
    LengthReward,
    build_rewards,
    hangul_share,
    import_reward,
)

SRC = DataSource(path="x.jsonl")


def test_preference_row_normalises_strings_and_messages() -> None:
    row = preference_row(SRC, {"prompt": "질문", "chosen": "좋은 답", "rejected": "bad"})
    assert row == {
        "prompt": [{"role": "user", "content": "질문"}],
        "chosen": [{"role": "assistant", "content": "좋은 답"}],
        "rejected": [{"role": "assistant", "content": "bad"}],
    }
    msgs = {
        "prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}],
        "chosen": [{"role": "assistant", "content": "a"}],
        "rejected": [{"from": "gpt", "value": "b"}],
    }
    assert preference_row(SRC, msgs)["rejected"] == [{"role": "assistant", "content": "b"}]


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ({"prompt": "q", "chosen": "같은 답", "rejected": " 같은 답 "}, "'chosen' and 'rejected' are identical"),
        ({"prompt": "q", "chosen": "a"}, "missing field 'rejected'"),
        ({"chosen": "a", "rejected": "b"}, "missing field 'prompt'"),
        ({"prompt": "  ", "chosen": "a", "rejected": "b"}, "empty 'prompt'"),
        ({"prompt": [], "chosen": "a", "rejected": "b"}, "empty 'prompt'"),
        ({"prompt": "q", "chosen": "a", "rejected": 3}, "'rejected' is int"),
        ({"prompt": [{"role": "assistant", "content": "x"}], "chosen": "a", "rejected": "b"}, "last message of"),
    ],
)
def test_preference_row_rejects_with_reason(obj: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        preference_row(SRC, obj)


def test_kto_rows_and_unpairing() -> None:
    row = kto_row(SRC, {"prompt": "q", "completion": "답", "label": "false"})
    assert row["label"] is False and row["completion"] == [{"role": "assistant", "content": "답"}]
    with pytest.raises(ValueError, match="'label' is 'maybe'"):
        kto_row(SRC, {"prompt": "q", "completion": "답", "label": "maybe"})
    with pytest.raises(ValueError, match="missing field 'label'"):
        kto_row(SRC, {"prompt": "q", "completion": "답"})
    pair = kto_row(SRC, {"prompt": "q", "chosen": "좋다", "rejected": "nope"})
    rows = unpair([pair, row])
    got = [(r["completion"][0]["content"], r["label"]) for r in rows]
    assert got == [("좋다", True), ("nope", False), ("답", False)]


def test_prompt_row_keeps_extra_fields_for_user_rewards() -> None:
    assert prompt_row(SRC, {"prompt": "1+1은?", "answer": "2"}) == {
        "prompt": [{"role": "user", "content": "1+1은?"}],
        "answer": "2",
    }
    with pytest.raises(ValueError, match="missing field 'prompt'"):
        prompt_row(SRC, {"question": "q"})


def test_training_rows_add_the_system_prompt_and_unpair_for_kto() -> None:
    cfg = build_config(
        {"stage": "rlhf", "rlhf": {"method": "kto"}, "data": {"sources": [{"path": "builtin:preference-ko"}]}}, env={}
    )
    from korean_llm.data import RejectLog

    rejects = RejectLog()
    rows = training_rows(cfg, rejects)
    assert rejects.rows_in >= 30 and not rejects.rejected
    assert len(rows) == 2 * rejects.rows_in
    assert rows[0]["prompt"][0] == {"role": "system", "content": cfg.rlhf.system_prompt}
    assert sum(r["label"] for r in rows) == rejects.rows_in


def test_builtin_fixtures_are_valid_korean() -> None:
    cfg = build_config({"stage": "rlhf", "data": {"sources": [{"path": "builtin:preference-ko"}]}}, env={})
    from korean_llm.data import RejectLog

    rejects = RejectLog()
    pairs = training_rows(cfg, rejects)
    assert len(pairs) >= 30 and not rejects.rejected
    korean = KoreanReward(0.5, 1.0)
    assert all(korean.score(p["chosen"][0]["content"]) > 0.5 for p in pairs)
    grpo = build_config(
        {"stage": "rlhf", "rlhf": {"method": "grpo"}, "data": {"sources": [{"path": "builtin:grpo-prompts-ko"}]}},
        env={},
    )
    prompts = training_rows(grpo, RejectLog())
    assert len(prompts) >= 20


def test_korean_reward_scores_hangul_share_and_penalises_other_languages() -> None:
    assert hangul_share("서울입니다 2024.") == 1.0
    assert hangul_share("123 !!") is None
    assert hangul_share("KTX로") == pytest.approx(1 / 4)
    reward = KoreanReward(min_share=0.5, penalty=1.0)
    scores = reward(
        ["q"] * 4,
        ["서울입니다.", [{"role": "assistant", "content": "Seoul is the capital."}], "", "한국 KTX"],
    )
    assert scores[0] == 1.0
    assert scores[1] == -1.0  # English answer: LogicKor gives it nothing, here it is pushed below every Korean one
    assert scores[2] == 0.0
    assert scores[3] == pytest.approx(2 / 5 - 1.0)  # 2 Hangul of 5 letters: below the 0.5 threshold


def test_length_and_format_rewards() -> None:
    length = LengthReward(min_chars=4, max_chars=8)
    assert length(None, ["가나", "가나다라마", "가" * 16]) == [0.5, 1.0, 0.5]
    fmt = FormatReward(r"^\d+\. .+다\.$")
    assert fmt(None, ["1. 좋습니다.", "좋습니다"]) == [1.0, 0.0]


def test_build_rewards_imports_user_functions_and_keeps_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_rewards.py").write_text(
        "def polite(prompts, completions, **kw):\n    return [1.0 if '요' in c else 0.0 for c in completions]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = build_config(
        {
            "stage": "rlhf",
            "rlhf": {
                "method": "grpo",
                "rewards": [
                    {"type": "korean", "weight": 2.0},
                    {"type": "python", "function": "my_rewards:polite", "weight": 0.5},
                ],
            },
        },
        env={},
    )
    funcs, weights = build_rewards(cfg.rlhf.rewards)
    assert weights == [2.0, 0.5]
    assert funcs[1](None, ["좋아요", "좋다"]) == [1.0, 0.0]
    with pytest.raises(ConfigError, match="cannot import module 'no_such_mod'"):
        import_reward("no_such_mod:f")
    with pytest.raises(ConfigError, match="has no callable 'nope'"):
        import_reward("my_rewards:nope")
    sys.modules.pop("my_rewards", None)


@pytest.mark.parametrize(
    ("rlhf", "message"),
    [
        ({"method": "orpo", "reference_model": "/m"}, "reference_model is used by dpo and kto only"),
        ({"method": "grpo", "rewards": []}, "needs at least one entry in rewards"),
        ({"rewards": [{"type": "format", "pattern": "("}]}, "not a valid regular expression"),
        ({"rewards": [{"type": "length", "min_chars": 9, "max_chars": 3}]}, "min_chars"),
        ({"rewards": [{"type": "python", "function": "no_colon"}]}, "rlhf.rewards.0.python.function"),
        ({"method": "ppo"}, "rlhf.method"),
    ],
)
def test_config_rules(rlhf: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config({"stage": "rlhf", "rlhf": rlhf}, env={})


def test_preference_and_reward_metrics_reach_prometheus_and_the_manifest() -> None:
    cfg = StageConfig(stage="rlhf")
    metrics = StageMetrics(cfg)
    logs = {"loss": 0.6, "rewards/margins": 0.25, "rewards/accuracies": 0.75, "kl": 0.01, "rewards/korean/mean": 0.9}
    metrics.record(3, 10, logs, None, None)
    labels = metrics.labels
    assert metrics.registry.get_sample_value("korean_llm_reward_margin", labels) == 0.25
    assert metrics.registry.get_sample_value("korean_llm_reward_accuracy", labels) == 0.75
    assert metrics.registry.get_sample_value("korean_llm_kl", labels) == 0.01
    value = metrics.registry.get_sample_value("korean_llm_reward_function_mean", {**labels, "function": "korean"})
    assert value == 0.9
    history = [{"rewards/margins": 0.1, "rewards/korean/mean": 0.5, "step": 1}, {**logs, "step": 2}]
    assert rlhf_metrics(history) == {
        "reward_margin_first": 0.1,
        "reward_margin": 0.25,
        "reward_korean_mean_first": 0.5,
        "reward_korean_mean": 0.9,
        "reward_accuracy_first": 0.75,
        "reward_accuracy": 0.75,
        "kl_first": 0.01,
        "kl": 0.01,
    }
