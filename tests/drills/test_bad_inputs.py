"""Drill: the bad-input catalogue. Wrongly typed overrides, absurdly nested rows and chats whose roles do not
alternate: exit 2 with the key named, or the row rejected with its line and reason while the rest trains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from korean_llm.cli import main
from korean_llm.data import chat_messages

from ..conftest import run_cli

GOOD = {
    "messages": [{"role": "user", "content": "서울의 인구는?"}, {"role": "assistant", "content": "약 940만 명입니다."}]
}
BAD_ORDER = [
    (
        {
            "messages": [
                {"role": "user", "content": "안녕"},
                {"role": "user", "content": "거기 있어?"},
                {"role": "assistant", "content": "네, 있어요."},
            ]
        },
        "roles do not alternate: messages[1] is 'user' after 'user', expected 'assistant'",
    ),
    (
        {
            "messages": [
                {"role": "assistant", "content": "무엇을 도와드릴까요?"},
                {"role": "assistant", "content": "말씀하세요."},
            ]
        },
        "roles do not alternate: messages[0] is 'assistant' first, expected 'user'",
    ),
    (
        {
            "messages": [
                {"role": "system", "content": "친절하게 답하세요."},
                {"role": "user", "content": "질문"},
                {"role": "system", "content": "반말로 답하세요."},
                {"role": "assistant", "content": "응"},
            ]
        },
        "system message at messages[2]: only messages[0] may be 'system'",
    ),
    (
        {
            "conversations": [
                {"from": "human", "value": "질문"},
                {"from": "gpt", "value": "답"},
                {"from": "gpt", "value": "덧붙임"},
            ]
        },
        "roles do not alternate: messages[2] is 'assistant' after 'assistant', expected 'user'",
    ),
]


@pytest.mark.parametrize(("row", "reason"), BAD_ORDER)
def test_chats_whose_roles_do_not_alternate_are_rejected(row: dict, reason: str) -> None:
    with pytest.raises(ValueError) as err:
        chat_messages(row)
    assert str(err.value) == reason


def test_well_ordered_chats_pass() -> None:
    system_first = {"messages": [{"role": "system", "content": "간결하게."}, *GOOD["messages"]]}
    multi_turn = {
        "messages": [
            *GOOD["messages"],
            {"role": "user", "content": "부산은?"},
            {"role": "assistant", "content": "약 330만 명입니다."},
        ]
    }
    assert [m["role"] for m in chat_messages(system_first)] == ["system", "user", "assistant"]
    assert len(chat_messages(multi_turn)) == 4


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("training.max_steps=ten", "key 'training.max_steps': expected int for SFTConfig, found \"ten\" (str)"),
        ("training.learning_rate=[1,2]", "key 'training.learning_rate': expected float for SFTConfig, found [1, 2]"),
        ("learning_rate=[1,2]", "unknown key 'learning_rate'"),
        ("training.per_device_train_batch_size=2.5", "key 'training.per_device_train_batch_size': expected int"),
    ],
)
def test_wrongly_typed_overrides_exit_2_naming_the_key(
    tmp_path: Path, write_config, capsys: pytest.CaptureFixture[str], override: str, message: str
) -> None:
    cfg = write_config("cpt", {"data": {"sources": [{"path": "builtin:korean-corpus"}]}})
    code = main(["cpt", "--config", str(cfg), "--set", override])
    err = capsys.readouterr().err
    assert code == 2, err[-3000:]
    assert message in err and str(cfg) in err
    assert "Traceback" not in err
    assert not (tmp_path / "output" / "tiny-ko" / "t" / "cpt").exists()


@pytest.mark.slow
def test_rows_in_catalogue_are_rejected_one_by_one_and_the_rest_trains(tmp_path: Path, write_config) -> None:
    data = tmp_path / "chats.jsonl"
    deep = "[" * 100_000 + "]" * 100_000
    lines = [
        json.dumps(GOOD, ensure_ascii=False),
        '{"messages": ' + deep + "}",
        *(json.dumps(row, ensure_ascii=False) for row, _ in BAD_ORDER),
        json.dumps(GOOD, ensure_ascii=False).replace("서울", "대구"),
        '{"text": "x", "meta": ' + '{"a": ' * 50_000 + "1" + "}" * 50_000 + "}",
    ]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = write_config(
        "sft",
        {
            "data": {"sources": [{"path": str(data)}], "max_rejected_fraction": 0.9},
            "training": {"max_steps": 1, "save_steps": 100},
        },
    )
    result = run_cli("sft", "--config", str(cfg))
    assert result.returncode == 0, result.stderr[-3000:]
    stage = tmp_path / "output" / "tiny-ko" / "t" / "sft"
    rejected = [json.loads(x) for x in (stage / "rejected.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"]) for r in rejected] == [
        (2, "malformed JSON: nested deeper than 500 levels"),
        *((3 + i, reason) for i, (_, reason) in enumerate(BAD_ORDER)),
        (8, "malformed JSON: nested deeper than 500 levels"),
    ]
    manifest = json.loads((stage / "manifest.json").read_text())
    assert manifest["metrics"]["rows_rejected"] == 6
    assert "rejected 6 of 8 rows" in result.stderr
