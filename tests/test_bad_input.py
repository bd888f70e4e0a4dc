"""Bad input: one clear message naming the file, row or key; exit 2; rejected rows with line and reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from korean_llm.cli import main

SFT_ROWS = [
    {"messages": [{"role": "user", "content": "안녕?"}, {"role": "assistant", "content": "안녕하세요!"}]},
    {"messages": []},
    {"messages": [{"role": "user", "content": "질문"}, {"role": "assistant", "content": None}]},
    {"messages": [{"role": "user", "content": "질문"}, {"role": "narrator", "content": "답"}]},
    {"text": "no messages here"},
]


def write_jsonl(path: Path, rows: list, raw_lines: list[bytes] = ()) -> Path:
    with open(path, "wb") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False).encode() + b"\n")
        for raw in raw_lines:
            fh.write(raw + b"\n")
    return path


def run(stage: str, config: Path, capsys) -> tuple[int, str]:
    code = main([stage, "--config", str(config)])
    return code, capsys.readouterr().err


def rejected(tmp_path: Path, stage: str) -> list[dict]:
    out = tmp_path / "output" / "tiny-ko" / "t"
    path = next(p for p in (out / stage / "rejected.jsonl", out / f"{stage}.partial" / "rejected.jsonl") if p.exists())
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_every_bad_sft_row_is_quarantined_with_line_and_reason(tmp_path: Path, write_config, capsys) -> None:
    good = [SFT_ROWS[0]] * 3
    data = write_jsonl(
        tmp_path / "sft.jsonl",
        SFT_ROWS[1:] + good,
        [b'{"messages": [{"role": "user", "content": "\xed\x95"}]}', b'{"messages": [{"role": "us'],
    )
    cfg = write_config(
        "sft",
        {
            "data": {"sources": [{"path": str(data)}], "max_rejected_fraction": 0.8},
            "training": {"max_steps": 1, "save_steps": 100},
        },
    )
    code, err = run("sft", cfg, capsys)
    assert code == 0, err
    rows = rejected(tmp_path, "sft")
    assert [(r["line"], r["reason"]) for r in rows] == [
        (1, "empty messages list"),
        (2, "content is null in messages[1]"),
        (3, "unknown role 'narrator' in messages[1] (expected one of ['assistant', 'system', 'user'])"),
        (4, "missing field 'messages' (or 'conversations', 'instruction'/'output', 'prompt'/'completion')"),
        (8, "invalid UTF-8"),
        (9, "malformed JSON: Unterminated string starting at (column 24)"),
    ]
    assert all(r["file"] == str(data) for r in rows)
    assert "rejected 6 of 9 rows" in err


def test_rejected_fraction_over_the_limit_fails_with_exit_2(tmp_path: Path, write_config, capsys) -> None:
    data = write_jsonl(tmp_path / "sft.jsonl", SFT_ROWS)
    cfg = write_config("sft", {"data": {"sources": [{"path": str(data)}], "max_rejected_fraction": 0.5}})
    code, err = run("sft", cfg, capsys)
    assert code == 2
    assert "4 of 5 rows rejected (80.0%, limit 50.0%)" in err
    assert f"first: {data}:2: empty messages list" in err
    assert len(rejected(tmp_path, "sft")) == 4


def test_cpt_rows_without_the_text_field(tmp_path: Path, write_config, capsys) -> None:
    data = write_jsonl(tmp_path / "cpt.jsonl", [{"body": "본문"}, {"text": "   "}, {"text": 3}])
    code, err = run("cpt", write_config("cpt", {"data": {"sources": [{"path": str(data)}]}}), capsys)
    assert code == 2
    assert "cpt data: 3 of 3 rows rejected" in err
    assert [r["reason"] for r in rejected(tmp_path, "cpt")] == [
        "missing field 'text'",
        "empty text in field 'text'",
        "field 'text' is int, expected a string",
    ]


def test_invalid_utf8_can_be_replaced_instead(tmp_path: Path, write_config, capsys) -> None:
    from korean_llm.config import DataSource
    from korean_llm.data import read_source

    data = tmp_path / "cpt.jsonl"
    data.write_bytes(b'{"text": "\xed\x95\x9c\xea\xb5 broken"}\n')
    (rec,) = read_source(DataSource(path=str(data)), "replace")
    assert rec.error is None and rec.data is not None and rec.data["text"].startswith("한\ufffd")
    (rec,) = read_source(DataSource(path=str(data)), "reject")
    assert rec.error == "invalid UTF-8" and rec.line == 1


@pytest.mark.parametrize(
    ("stage", "overrides", "message"),
    [
        (
            "cpt",
            {"data": {"sources": [{"path": "/nonexistent/corpus.jsonl"}]}},
            "data source '/nonexistent/corpus.jsonl': /nonexistent/corpus.jsonl does not exist",
        ),
        ("cpt", {"data": {"sources": []}}, "data.sources is empty"),
        (
            "cpt",
            {"data": {"sources": [{"path": "builtin:korean-corpus"}]}, "lora": {"rank": 4}},
            "unknown key 'lora.rank'",
        ),
        (
            "cpt",
            {"data": {"sources": [{"path": "builtin:korean-corpus"}]}, "model": {"base_model": "/no/such/model"}},
            "key 'model.base_model': folder '/no/such/model' does not exist",
        ),
        (
            "sft",
            {"data": {"sources": [{"path": "builtin:sft-ko"}]}, "run": {"previous_stage": "cpt"}},
            "manifest not found, the stage has not completed",
        ),
    ],
)
def test_config_and_input_errors_exit_2(tmp_path, write_config, capsys, stage, overrides, message) -> None:
    cfg = write_config(stage, overrides)
    code, err = run(stage, cfg, capsys)
    assert code == 2
    assert message in err
    if "lora.rank" in message:
        assert str(cfg) in err


def test_empty_input_file_is_an_error(tmp_path: Path, write_config, capsys) -> None:
    data = tmp_path / "empty.jsonl"
    data.write_text("")
    code, err = run("sft", write_config("sft", {"data": {"sources": [{"path": str(data)}]}}), capsys)
    assert code == 2
    assert "sft data: the input has no rows" in err and str(data) in err


def test_previous_stage_for_another_base_model_is_refused(tmp_path: Path, write_config, capsys) -> None:
    from korean_llm.pipeline.artifacts import Manifest, atomic_write_json

    cpt_dir = tmp_path / "output" / "tiny-ko" / "t" / "cpt"
    m = Manifest(stage="cpt", model_name="tiny-ko", run_id="t", base_model="Qwen/Qwen2.5-7B", config_hash="x")
    atomic_write_json(cpt_dir / "manifest.json", m.model_dump())
    cfg = write_config("sft", {"data": {"sources": [{"path": "builtin:sft-ko"}]}, "run": {"previous_stage": "cpt"}})
    code, err = run("sft", cfg, capsys)
    assert code == 2
    assert "trained on base model 'Qwen/Qwen2.5-7B'" in err and "says model.base_model 'builtin:tiny-ko'" in err


@pytest.mark.slow
def test_stage_command_runs_the_stage_named_by_the_stage_env(tmp_path, write_config, capsys, monkeypatch) -> None:
    sft_data = {"data": {"sources": [{"path": "builtin:sft-ko"}]}, "training": {"max_steps": 1, "save_steps": 100}}
    cfg = write_config("cpt", sft_data)  # the file says cpt; $STAGE picks the stage
    monkeypatch.setenv("STAGE", "sft")
    assert main(["stage", "--config", str(cfg)]) == 0
    assert json.loads((tmp_path / "output" / "tiny-ko" / "t" / "sft" / "manifest.json").read_text())["stage"] == "sft"
    monkeypatch.setenv("STAGE", "pretrain")
    assert main(["stage", "--config", str(cfg)]) == 2
    assert "error: STAGE='pretrain': expected one of preprocess, vocab, cpt, sft, rlhf, evaluate, deploy" in (
        capsys.readouterr().err
    )
