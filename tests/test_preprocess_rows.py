"""Row validation shared with the training stages: chat variants and preference pairs."""

from __future__ import annotations

from typing import Any

import pytest

from korean_llm.config import DataSource
from korean_llm.data import chat_messages, preference_row

SRC = DataSource(path="x.jsonl")


@pytest.mark.parametrize(
    "row",
    [
        {"messages": [{"role": "user", "content": "안녕?"}, {"role": "assistant", "content": "안녕하세요!"}]},
        {"conversations": [{"from": "human", "value": "안녕?"}, {"from": "gpt", "value": "안녕하세요!"}]},
        {"conversation": [{"from": "Human", "value": "안녕?"}, {"from": "chatgpt", "value": "안녕하세요!"}]},
        {"messages": [{"role": "human", "content": "안녕?"}, {"role": "model", "content": "안녕하세요!"}]},
        {"instruction": "안녕?", "output": "안녕하세요!"},
        {"prompt": "안녕?", "completion": "안녕하세요!"},
        {"prompt": "안녕?", "response": "안녕하세요!"},
    ],
)
def test_chat_variants_normalise_to_the_same_messages(row: dict[str, Any]) -> None:
    assert chat_messages(row) == [{"role": "user", "content": "안녕?"}, {"role": "assistant", "content": "안녕하세요!"}]


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"conversations": [{"from": "alien", "value": "x"}]}, "unknown role 'alien'"),
        ({"messages": []}, "empty messages list"),
        ({"messages": [{"role": "user", "content": "질문"}]}, "no assistant message"),
        ({"prompt": "질문", "completion": "  "}, "empty content"),
        ({"text": "그냥 글"}, "missing field 'messages'"),
    ],
)
def test_bad_chats_are_refused_with_their_reason(row: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        chat_messages(row)


def test_preference_pair_of_strings_becomes_conversational() -> None:
    row = preference_row(SRC, {"prompt": "서울은?", "chosen": "대한민국의 수도입니다.", "rejected": "몰라요."})
    assert row == {
        "prompt": [{"role": "user", "content": "서울은?"}],
        "chosen": [{"role": "assistant", "content": "대한민국의 수도입니다."}],
        "rejected": [{"role": "assistant", "content": "몰라요."}],
    }


def test_preference_pair_of_message_lists_is_kept() -> None:
    prompt = [{"role": "system", "content": "친절하게"}, {"from": "human", "value": "서울은?"}]
    row = preference_row(
        SRC, {"prompt": prompt, "chosen": [{"role": "assistant", "content": "수도"}], "rejected": "몰라"}
    )
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert row["chosen"] == [{"role": "assistant", "content": "수도"}]


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"chosen": "a", "rejected": "b"}, "missing field 'prompt'"),
        ({"prompt": "질문", "rejected": "b"}, "missing field 'chosen'"),
        ({"prompt": "질문", "chosen": "a", "rejected": None}, "missing field 'rejected'"),
        ({"prompt": " ", "chosen": "a", "rejected": "b"}, "empty 'prompt'"),
        ({"prompt": [], "chosen": "a", "rejected": "b"}, "empty 'prompt'"),
        ({"prompt": "질문", "chosen": "같은 답", "rejected": " 같은 답 "}, "identical"),
        ({"prompt": "질문", "chosen": "", "rejected": "b"}, "empty 'chosen'"),
        ({"prompt": "질문", "chosen": 3, "rejected": "b"}, "'chosen' is int"),
        ({"prompt": [{"role": "assistant", "content": "x"}], "chosen": "a", "rejected": "b"}, "expected 'user'"),
        ({"prompt": "질문", "chosen": "a", "rejected": [{"role": "user", "content": "b"}]}, "expected 'assistant'"),
    ],
)
def test_bad_preference_rows_are_refused(row: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        preference_row(SRC, row)
