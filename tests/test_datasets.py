"""Datasets as users have them: readers that count every row, encodings, CSV dialects, field mapping, the registry.

Fixtures under examples/data/ are written in the shapes users bring: a Q/A CSV in CP949 with
CRLF line ends, a quoted newline and a trailing-space label; ShareGPT `from`/`value`; a dialogue
export with Korean keys and role names (`화자`/`내용`, `질문`/`답변`); a nested JSON export whose
records sit under `export.items`; alpaca rows with Korean column names; preference / KTO CSVs; GRPO
prompts; a multiple-choice CSV with a UTF-8 BOM, choice columns and answers like "2   ".
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from korean_llm.config import DataConfig, DataSource, build_config
from korean_llm.config.mapping import FieldMapping
from korean_llm.data import ReadLog, RejectLog, chat_messages, collect_rows, read_source, sft_row
from korean_llm.errors import ConfigError, DataError

BYOD = Path(__file__).resolve().parents[1] / "examples" / "data"


def records(source: DataSource, policy: str = "reject") -> tuple[list[Any], ReadLog]:
    log = ReadLog()
    return list(read_source(source, policy, log)), log


def qa_csv(n: int, newline: str = "\r\n") -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator=newline)
    w.writerow(["instruction", "output"])
    w.writerows((f"질문 {i}: 서울의 인구는 얼마인가요?", f"답변 {i}: 약 940만 명입니다.") for i in range(1, n + 1))
    return buf.getvalue().encode("utf-8")


def corrupt_row(data: bytes, row: int, newline: bytes = b"\r\n") -> bytes:
    """Replace the first byte of 답변 in data row `row` (line row + 1) by 0xFF, which UTF-8 never uses."""
    lines = data.split(newline)
    lines[row] = lines[row].replace("답변".encode(), b"\xff" + "답변".encode()[1:], 1)
    return newline.join(lines)


# -- every row accounted for ---------------------------------------------------------------------------------
# Marked `accounting` (here and below): `make drills` runs them with the fault drills.


@pytest.mark.accounting
def test_one_bad_byte_in_row_1001_of_a_2000_row_csv_costs_that_row_only(tmp_path: Path) -> None:
    # The reported failure: a text-mode reader decodes 8 KiB blocks, so the block holding the bad byte and all
    # after it were lost (rows_in 984, one reject at "line 0"). Here: 1,999 rows and one reject at its real line.
    path = tmp_path / "qa.csv"
    path.write_bytes(corrupt_row(qa_csv(2000), 1001))
    recs, log = records(DataSource(path=str(path)))
    assert len(recs) == 2000
    bad = [(r.line, r.record, r.error) for r in recs if r.error]
    assert bad == [(1002, 1001, "invalid UTF-8")]  # line 1 is the header
    assert log.files[0].records == 2000 and log.files[0].lines == 2001 and log.files[0].undecodable == 1
    rejects = RejectLog()
    rows = collect_rows(DataConfig(sources=[DataSource(path=str(path))]), sft_row(None), rejects)
    assert (rejects.rows_in, len(rows), len(rejects.rejected)) == (2000, 1999, 1)
    assert rejects.rejected == [{"input": "data", "file": str(path), "line": 1002, "reason": "invalid UTF-8"}]


@pytest.mark.accounting
@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_the_same_bad_byte_in_jsonl_and_a_json_array_costs_one_row_with_its_line(tmp_path: Path, fmt: str) -> None:
    rows = [{"instruction": f"질문 {i}", "output": f"답변 {i}입니다."} for i in range(1, 2001)]
    if fmt == "jsonl":
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
        lines = data.split(b"\n")
        lines[1000] = lines[1000].replace("답변".encode(), b"\xff" + "답변".encode()[1:])
        expected_line = 1001
    else:  # one element per line after "[": element k starts on line k + 1
        data = ("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n]\n").encode()
        lines = data.split(b"\n")
        lines[1001] = lines[1001].replace("답변".encode(), b"\xff" + "답변".encode()[1:])
        expected_line = 1002
    path = tmp_path / f"rows.{fmt}"
    path.write_bytes(b"\n".join(lines))
    recs, _ = records(DataSource(path=str(path)))
    assert len(recs) == 2000
    assert [(r.line, r.record, r.error) for r in recs if r.error] == [(expected_line, 1001, "invalid UTF-8")]
    replaced, _ = records(DataSource(path=str(path)), policy="replace")
    assert [r.record for r in replaced if r.replaced] == [1001] and all(r.error is None for r in replaced)
    assert "\ufffd" in replaced[1000].data["output"]


@pytest.mark.accounting
def test_json_array_records_carry_the_line_they_start_on(tmp_path: Path) -> None:
    path = tmp_path / "pretty.json"
    path.write_text(json.dumps([{"a": "하나"}, {"a": "둘\n셋"}, {"a": "넷"}], ensure_ascii=False, indent=2))
    recs, _ = records(DataSource(path=str(path)))
    assert [r.line for r in recs] == [2, 5, 8]


@pytest.mark.accounting
def test_csv_records_spanning_lines_keep_their_first_line_and_blank_lines_are_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "multi.csv"
    path.write_bytes(
        b'instruction,output\r\n"first",one\r\n\r\n"second\r\nspans\r\nthree lines","x"\r\n'
        b'third,"a ""quoted"" word"\r\n'
    )
    recs, log = records(DataSource(path=str(path)))
    assert [(r.line, r.record) for r in recs] == [(2, 1), (4, 2), (7, 3)]
    assert recs[1].data == {"instruction": "second\nspans\nthree lines", "output": "x"}  # CRLF in a cell -> LF
    assert recs[2].data["output"] == 'a "quoted" word'
    assert log.files[0].lines == 7


@pytest.mark.accounting
def test_csv_structural_errors_are_rejects_with_their_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.csv"
    path.write_text('Q,A\n좋은 행,답\n열이 셋,답,남는 값\n"닫히지 않은 따옴표,답\n다음 행,답\n', encoding="utf-8")
    recs, log = records(DataSource(path=str(path)))
    got = [(r.line, r.error) for r in recs]
    assert got[0] == (2, None)
    assert got[1] == (3, "malformed CSV: 3 fields, the header has 2 (Q, A)")
    # strict quoting: the unterminated quote is one reject at its line, not the rest of the file in one cell
    assert got[2][0] == 4 and got[2][1].startswith("malformed CSV: unexpected end of data")
    assert len(recs) == log.files[0].records == 3


@pytest.mark.accounting
def test_a_csv_cell_longer_than_the_csv_modules_default_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    long_text = "가나다라마바사아자차카타파하 " * 20_000  # 300,000 characters > csv's default 131,072
    path.write_text(f'text\n"{long_text}"\n', encoding="utf-8")
    recs, _ = records(DataSource(path=str(path)))
    assert recs[0].error is None and recs[0].data == {"text": long_text}


@pytest.mark.accounting
def test_deeply_nested_jsonl_row_is_rejected_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "deep.jsonl"
    path.write_text('{"text": "정상 행"}\n' + '{"a": ' * 100_000 + "1" + "}" * 100_000 + "\n")
    recs, _ = records(DataSource(path=str(path)))
    assert [(r.line, r.error) for r in recs] == [(1, None), (2, "malformed JSON: nested deeper than 500 levels")]


# -- encodings -------------------------------------------------------------------------------------------------


def test_auto_reads_a_cp949_csv_with_crlf_and_says_so() -> None:
    source = DataSource(path=str(BYOD / "qa_cp949.csv"))
    recs, log = records(source)
    report = log.files[0]
    assert report.encoding == "cp949"
    assert report.note == "auto: line 2 is not valid UTF-8 but is valid CP949: file read as cp949"
    assert len(recs) == 12 and report.lines == 14
    assert recs[0].data == {
        "Q": "서울의 인구는 대략 몇 명인가요?",
        "A": "2024년 기준 서울의 인구는 약 940만 명입니다.",
        "label": "1",
    }
    assert recs[1].line == 3 and recs[1].data["A"].endswith(
        "김치냉장고에 두면,\n맛이 덜 변하고 오래 보관할 수 있습니다."
    )
    assert recs[1].data["label"] == "2   "  # kept as written; labels are read with surrounding spaces ignored
    assert recs[2].line == 5  # the record before spanned lines 3-4


@pytest.mark.parametrize("declared", ["cp949", "euc-kr"])
def test_declared_korean_encodings(declared: str) -> None:
    recs, log = records(DataSource(path=str(BYOD / "qa_cp949.csv"), encoding=declared))  # type: ignore[arg-type]
    assert log.files[0].encoding == declared and log.files[0].note is None
    assert recs[3].data["Q"] == "제주도에서 가장 높은 산은?"


def test_declared_utf8_on_a_cp949_file_rejects_every_korean_row() -> None:
    recs, log = records(DataSource(path=str(BYOD / "qa_cp949.csv"), encoding="utf-8"))
    assert {r.error for r in recs} == {"invalid UTF-8"} and len(recs) == 12 == log.files[0].undecodable


def test_a_utf8_bom_is_detected_and_dropped_from_the_first_column_name() -> None:
    recs, log = records(DataSource(path=str(BYOD / "tasks_ko.csv")))
    assert log.files[0].encoding == "utf-8-sig" and log.files[0].note == "auto: UTF-8 byte order mark found"
    assert next(iter(recs[0].data)) == "질문"


def test_ascii_lines_before_the_first_korean_line_do_not_decide_the_encoding(tmp_path: Path) -> None:
    path = tmp_path / "late.csv"
    path.write_bytes(b"Q,A\r\n" + b"hello,world\r\n" * 3 + "안녕,하세요\r\n".encode("cp949"))
    recs, log = records(DataSource(path=str(path)))
    assert log.files[0].encoding == "cp949" and "line 5" in (log.files[0].note or "")
    assert recs[3].data == {"Q": "안녕", "A": "하세요"}


def test_the_cp949_fallback_is_logged_with_the_file_and_the_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "korean_llm" and r.levelno == logging.WARNING]

    csv_path, json_path, utf8 = tmp_path / "qa.csv", tmp_path / "rows.json", tmp_path / "utf8.csv"
    csv_path.write_bytes(b"Q,A\r\nhi,there\r\n" + "안녕,하세요\r\n".encode("cp949"))
    json_path.write_bytes(json.dumps([{"text": "한국어"}], ensure_ascii=False).encode("cp949"))
    utf8.write_bytes("Q,A\r\n안녕,하세요\r\n".encode())
    with caplog.at_level(logging.INFO, logger="korean_llm"):
        records(DataSource(path=str(csv_path)))  # read line by line: the first non-UTF-8 line decides
        records(DataSource(path=str(json_path)))  # a JSON array is decoded whole
        assert warnings() == [
            f"{csv_path}: auto: line 3 is not valid UTF-8 but is valid CP949: file read as cp949",
            f"{json_path}: auto: not valid UTF-8 but valid CP949: file read as cp949",
        ]
        caplog.clear()
        # A declared encoding is no fallback, and UTF-8 needs none: nothing to say.
        records(DataSource(path=str(csv_path), encoding="cp949"))
        records(DataSource(path=str(json_path), encoding="euc-kr"))
        records(DataSource(path=str(utf8)))
        assert warnings() == []


def test_utf16_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "u16.csv"
    path.write_bytes("Q,A\r\n안녕,하세요\r\n".encode("utf-16"))
    with pytest.raises(DataError, match="UTF-16 byte order mark; UTF-16 is not supported"):
        records(DataSource(path=str(path)))


def test_a_cp949_text_file_and_json_file_are_detected(tmp_path: Path) -> None:
    (tmp_path / "doc.txt").write_bytes("대한민국은 민주공화국이다.\r\n둘째 줄".encode("cp949"))
    recs, log = records(DataSource(path=str(tmp_path / "doc.txt")))
    assert recs[0].data == {"text": "대한민국은 민주공화국이다.\n둘째 줄"} and log.files[0].encoding == "cp949"
    (tmp_path / "rows.json").write_bytes(json.dumps([{"text": "한국어"}], ensure_ascii=False).encode("euc-kr"))
    recs, log = records(DataSource(path=str(tmp_path / "rows.json")))
    assert (
        recs[0].data == {"text": "한국어"}
        and log.files[0].note == "auto: not valid UTF-8 but valid CP949: file read as cp949"
    )


# -- mapping ---------------------------------------------------------------------------------------------------


def mapped(path: Path, mapping: dict[str, Any], **kw: Any) -> DataSource:
    return DataSource(path=str(path), mapping=FieldMapping.model_validate(mapping), **kw)


def test_single_turn_qa_columns_with_a_constant_system_prompt() -> None:
    source = mapped(BYOD / "qa_cp949.csv", {"user": "Q", "assistant": "A", "system": {"value": "친절하게 답하세요."}})
    rejects = RejectLog()
    rows = collect_rows(DataConfig(sources=[source]), sft_row(None), rejects)
    assert len(rows) == 11 and rejects.rows_in == 12
    assert rejects.rejected == [
        {"input": "data", "file": source.path, "line": 10, "reason": "empty content in messages[1]"}
    ]
    assert rows[0]["messages"] == [
        {"role": "system", "content": "친절하게 답하세요."},
        {"role": "user", "content": "서울의 인구는 대략 몇 명인가요?"},
        {"role": "assistant", "content": "2024년 기준 서울의 인구는 약 940만 명입니다."},
    ]


def test_a_system_column_is_each_rows_system_prompt_and_the_stage_default_fills_empty_cells(tmp_path: Path) -> None:
    from korean_llm.config import DEFAULT_SYSTEM_PROMPT

    path = tmp_path / "qa_system.csv"
    path.write_bytes(
        "지시,질문,답변\r\n"
        "공손하게 답하세요.,대한민국의 수도는?,서울입니다.\r\n"
        ",서울의 인구는?,약 940만 명입니다.\r\n"
        "  ,한글은 누가 만들었나요?,세종대왕입니다.\r\n".encode()
    )
    source = mapped(path, {"user": "질문", "assistant": "답변", "system": "지시"})
    for stage_prompt in (None, DEFAULT_SYSTEM_PROMPT):
        rows = collect_rows(DataConfig(sources=[source]), sft_row(stage_prompt), RejectLog())
        assert rows[0]["messages"] == [
            {"role": "system", "content": "공손하게 답하세요."},
            {"role": "user", "content": "대한민국의 수도는?"},
            {"role": "assistant", "content": "서울입니다."},
        ]
        # An empty (or blank) cell is no system prompt: the row gets the stage's, or none.
        firsts = [r["messages"][0] for r in rows[1:]]
        if stage_prompt:
            assert firsts == [{"role": "system", "content": stage_prompt}] * 2
        else:
            assert firsts == [
                {"role": "user", "content": "서울의 인구는?"},
                {"role": "user", "content": "한글은 누가 만들었나요?"},
            ]

    # Multi-turn rows with a nested system field: a row's own system turn is kept; a row without the field is
    # rejected with the mapped path (the first row is checked up front, a missing column there is a DataError).
    chats = tmp_path / "chats.jsonl"
    chats.write_text(
        "".join(
            json.dumps(r, ensure_ascii=False) + "\n"
            for r in [
                {"meta": {"sys": "간결하게."}, "turns": [{"r": "user", "t": "안녕?"}, {"r": "assistant", "t": "네."}]},
                {
                    "meta": {"sys": "무시됨"},
                    "turns": [
                        {"r": "system", "t": "원래 지시"},
                        {"r": "user", "t": "질문"},
                        {"r": "assistant", "t": "답"},
                    ],
                },
                {"turns": [{"r": "user", "t": "질문"}, {"r": "assistant", "t": "답"}]},
            ]
        ),
        encoding="utf-8",
    )
    source = mapped(chats, {"messages": "turns", "role": "r", "content": "t", "system": "meta.sys"})
    rejects = RejectLog()
    rows = collect_rows(DataConfig(sources=[source], max_rejected_fraction=0.5), sft_row(None), rejects)
    assert [r["messages"][0]["content"] for r in rows] == ["간결하게.", "원래 지시"]
    assert [(r["line"], r["reason"]) for r in rejects.rejected] == [(3, "missing field 'meta.sys' (mapped to system)")]
    wrong = mapped(path, {"user": "질문", "assistant": "답변", "system": "지침"})
    with pytest.raises(DataError, match=r"mapped column '지침' \(for system\) does not exist in .*columns found: 지시"):
        collect_rows(DataConfig(sources=[wrong]), sft_row(None), RejectLog())


def test_multi_turn_lists_with_korean_keys_and_role_names() -> None:
    source = mapped(
        BYOD / "dialogues_ko.jsonl",
        {"messages": "대화", "role": "화자", "content": "내용", "roles": {"질문": "user", "답변": "assistant"}},
    )
    rejects = RejectLog()
    rows = collect_rows(DataConfig(sources=[source]), sft_row(None), rejects)
    assert [len(r["messages"]) for r in rows] == [2, 4, 2]
    assert rows[1]["messages"][2] == {"role": "user", "content": "상감 기법이 뭐예요?"}
    assert [(r["line"], r["reason"]) for r in rejects.rejected] == [
        (4, "unknown role '안내' in messages[0] (expected one of ['assistant', 'system', 'user'])")
    ]


def test_sharegpt_from_value_mapped_explicitly_and_understood_without_mapping() -> None:
    explicit = mapped(BYOD / "sharegpt_ko.jsonl", {"messages": "conversations", "role": "from", "content": "value"})
    plain = DataSource(path=str(BYOD / "sharegpt_ko.jsonl"))
    out = []
    for source in (explicit, plain):
        rejects = RejectLog()
        out.append(collect_rows(DataConfig(sources=[source]), sft_row(None), rejects))
        # Row 5 opens with the assistant: refused by the turn-order rule (data/rows.py check_turn_order).
        assert [(r["line"], r["reason"]) for r in rejects.rejected] == [
            (5, "roles do not alternate: messages[0] is 'assistant' first, expected 'user'")
        ]
        assert rejects.rows_in == 6
    assert out[0] == out[1] and out[0][1]["messages"][0] == {"role": "system", "content": "당신은 요리 도우미입니다."}


def test_nested_json_export_with_a_records_path_and_dotted_fields() -> None:
    source = mapped(
        BYOD / "nested_export.json",
        {"user": "dialog.question.text", "assistant": "dialog.answer.text"},
        records="export.items",
    )
    rejects = RejectLog()
    rows = collect_rows(DataConfig(sources=[source]), sft_row(None), rejects)
    assert [m["content"] for m in rows[1]["messages"]] == ["임진왜란은 몇 년에 일어났나요?", "1592년에 일어났습니다."]
    assert rejects.rejected == [
        {
            "input": "data",
            "file": source.path,
            "line": 4,
            "reason": "missing field 'dialog.answer.text' (mapped to assistant)",
        }
    ]


def test_alpaca_rows_with_korean_column_names() -> None:
    source = mapped(BYOD / "alpaca_ko.jsonl", {"instruction": "지시문", "input": "입력", "output": "출력"})
    rejects = RejectLog()
    rows = collect_rows(DataConfig(sources=[source]), sft_row(None), rejects)
    assert rows[0]["messages"][0] == {"role": "user", "content": "다음 문장을 높임말로 바꾸세요.\n\n밥 먹었어?"}
    assert rows[1]["messages"][0]["content"] == "대한민국의 수도를 말하세요."
    assert [(r["line"], r["reason"]) for r in rejects.rejected] == [(6, "empty or non-string 'instruction'")]


def test_a_mapped_column_that_does_not_exist_is_one_error_naming_source_column_and_columns_found() -> None:
    source = mapped(BYOD / "qa_cp949.csv", {"user": "질문", "assistant": "A"})
    with pytest.raises(DataError) as err:
        collect_rows(DataConfig(sources=[source]), sft_row(None), RejectLog())
    assert str(err.value) == (
        f"data source '{source.path}': mapped column '질문' (for user) does not exist in {source.path}; "
        "columns found: Q, A, label"
    )


def test_a_path_with_a_default_fills_missing_or_empty_values() -> None:
    source = mapped(
        BYOD / "nested_export.json",
        {
            "user": "dialog.question.text",
            "assistant": {"path": "dialog.answer.text", "default": "담당 부서에 문의하세요."},
        },
        records="export.items",
    )
    rows = collect_rows(DataConfig(sources=[source]), sft_row(None), RejectLog())
    assert rows[3]["messages"][1] == {"role": "assistant", "content": "담당 부서에 문의하세요."}


def test_mapped_rows_have_the_shapes_trl_recognises() -> None:
    # trl 1.14.2 trl/data_utils.py is_conversational: a "prompt"/"chosen"/"rejected"/"completion"/"messages" key
    # holding a list of {"role", "content"} dicts; the SFT stage hands such "messages" rows to SFTTrainer.
    from trl.data_utils import is_conversational

    source = mapped(
        BYOD / "dialogues_ko.jsonl",
        {"messages": "대화", "role": "화자", "content": "내용", "roles": {"질문": "user", "답변": "assistant"}},
    )
    rows = collect_rows(DataConfig(sources=[source]), sft_row(None), RejectLog())
    assert all(is_conversational(r) for r in rows)
    assert chat_messages(rows[0]) == rows[0]["messages"]


# -- registry and mapping checks in the config -------------------------------------------------------------------


def registry_config(stage: str, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "stage": stage,
        "datasets": {
            "qa": {
                "path": str(BYOD / "qa_cp949.csv"),
                "encoding": "auto",
                "mapping": {"user": "Q", "assistant": "A"},
                "max_rows": 5,
            },
            "pairs": {
                "path": str(BYOD / "preference_ko.csv"),
                "mapping": {"prompt": "질문", "chosen": "좋은 답변", "rejected": "나쁜 답변"},
            },
        },
        **extra,
    }


def test_stages_refer_to_registry_entries_by_name_with_overrides() -> None:
    cfg = build_config(registry_config("sft", {"data": {"sources": ["qa", {"dataset": "qa", "max_rows": 2}]}}), env={})
    first, second = cfg.data.sources
    assert first.path.endswith("qa_cp949.csv") and first.max_rows == 5 and first.dataset == "qa"
    assert first.mapping is not None and first.mapping.user == "Q"
    assert second.max_rows == 2
    cfg = build_config(
        registry_config("preprocess", {"preprocess": {"sft_sources": ["qa"], "preference_sources": ["pairs"]}}), env={}
    )
    assert cfg.preprocess.preference_sources[0].mapping.chosen == "좋은 답변"  # type: ignore[union-attr]


def test_every_source_list_of_the_config_resolves_registry_names() -> None:
    """SOURCE_LISTS names every list of data sources the stage config has (found from the models themselves), so a
    registry name resolves wherever a source list is read."""
    import typing

    from korean_llm.config import StageConfig
    from korean_llm.config.stage import SOURCE_LISTS

    found = set()
    for section, field in StageConfig.model_fields.items():
        if field.annotation == list[DataSource]:
            found.add(("", section))
        model = field.annotation if isinstance(field.annotation, type) else None
        for key, sub in getattr(model, "model_fields", {}).items():
            if typing.get_origin(sub.annotation) is list and typing.get_args(sub.annotation) == (DataSource,):
                found.add((section, key))
    assert found == set(SOURCE_LISTS) and ("vocab", "fertility_sources") in found


def test_vocab_fertility_sources_take_registry_names() -> None:
    from korean_llm.data import text_row

    articles = {"path": str(BYOD / "articles_ko.jsonl"), "mapping": {"text": "doc.body"}, "max_rows": 3}
    data = {"stage": "vocab", "datasets": {"articles": articles}, "vocab": {"fertility_sources": ["articles"]}}
    cfg = build_config(data, source="vocab.yaml", env={})
    [source] = cfg.vocab.fertility_sources
    assert source.dataset == "articles" and source.path == articles["path"] and source.max_rows == 3
    assert source.mapping is not None and source.mapping.text == "doc.body"
    texts = collect_rows(DataConfig(sources=[source]), text_row, RejectLog())
    assert len(texts) == 3 and all(t["text"].strip() for t in texts)
    with pytest.raises(ConfigError, match=r"vocab.fertility_sources.0: unknown dataset 'news'"):
        build_config({**data, "vocab": {"fertility_sources": ["news"]}}, source="vocab.yaml", env={})
    with pytest.raises(ConfigError, match=r"mapping key 'user' is not read from text rows"):
        qa = {"path": "qa.csv", "mapping": {"user": "Q", "assistant": "A"}}
        build_config({**data, "datasets": {"articles": qa}}, source="vocab.yaml", env={})


def test_unknown_dataset_name_is_a_config_error_listing_the_registry() -> None:
    with pytest.raises(ConfigError, match=r"data.sources.0: unknown dataset 'qna' \(datasets: pairs, qa\)"):
        build_config(registry_config("sft", {"data": {"sources": ["qna"]}}), source="sft.yaml", env={})


def test_a_mapping_key_the_stage_does_not_read_is_refused_before_reading() -> None:
    with pytest.raises(ConfigError) as err:
        build_config(registry_config("sft", {"data": {"sources": ["pairs"]}}), source="sft.yaml", env={})
    assert "mapping key 'chosen' is not read from chat rows" in str(err.value)
    with pytest.raises(ConfigError, match="mapping key 'user' is not read from preference rows"):
        build_config(registry_config("rlhf", {"data": {"sources": ["qa"]}}), source="rlhf.yaml", env={})
    with pytest.raises(ConfigError, match=r"unknown key 'datasets\.qa\.mapping\.usr'"):
        build_config({"stage": "sft", "datasets": {"qa": {"path": "x.csv", "mapping": {"usr": "Q"}}}}, env={})


# -- the runner's failure line -----------------------------------------------------------------------------------


def test_the_runners_summary_keeps_task_names_in_gate_failures(tmp_path: Path) -> None:
    # rich reads "[quiz-ko]" as a style tag and drops it unless escaped; the gate line names checks that way.
    from rich.console import Console

    from korean_llm.local.runner import StepResult, summary_table

    detail = "error: evaluate: gate failed: min_accuracy[quiz-ko] = 0.1667 (limit 1.0); report in /x/eval.html"
    console = Console(record=True, width=400)
    console.print(summary_table([StepResult("tiny-ko", "evaluate", "failed", 3, 1.0, detail=detail)], tmp_path))
    assert "min_accuracy[quiz-ko] = 0.1667" in console.export_text()


@pytest.mark.accounting
def test_an_hf_source_that_fails_mid_stream_stops_the_stage_naming_where(tmp_path: Path) -> None:
    # datasets 4.8.5 packaged_modules/csv/csv.py reads with pandas.read_csv(chunksize=10_000,
    # encoding_errors="strict") and re-raises: the bad byte in row 1,001 fails the whole first chunk.
    # The reader must not end quietly with the rows it got: it stops with a DataError (exit 2).
    folder = tmp_path / "hub-like"
    folder.mkdir()
    (folder / "train.csv").write_bytes(corrupt_row(qa_csv(2000), 1001))
    with pytest.raises(DataError, match=r"reading stopped after record 0: UnicodeDecodeError"):
        records(DataSource(path=f"hf:{folder}"))


@pytest.mark.accounting
def test_a_reader_that_loses_a_row_fails_the_stage_as_a_bug(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The stage's own check: a reader that counts a record but never yields it (what the block-decoding CSV
    # reader did) must not pass as "fewer rows": rows_in = rows_out + rejected against the readers' counts.
    from korean_llm.data import readers
    from korean_llm.errors import AccountingError

    real = readers.read_csv

    def lossy(*args: Any, **kwargs: Any) -> Any:
        for rec in real(*args, **kwargs):
            if rec.record != 7:
                yield rec

    monkeypatch.setattr(readers, "read_csv", lossy)
    path = tmp_path / "qa.csv"
    path.write_bytes(qa_csv(20))
    with pytest.raises(
        AccountingError, match=r"rows_in 19 != rows_out 19 \+ rejected 0 \(records read from files: 20\)"
    ):
        collect_rows(DataConfig(sources=[DataSource(path=str(path))]), sft_row(None), RejectLog())


def test_a_missing_input_under_a_local_runner_mount_says_where_the_mount_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from korean_llm.data import source_files

    local = tmp_path / "runs" / "r1" / "data"
    monkeypatch.setenv("KOREAN_LLM_LOCAL_MOUNTS", json.dumps({"/data": str(local)}))
    with pytest.raises(DataError) as err:
        source_files(DataSource(path=str(local / "raw" / "qa.csv")))
    assert f"the local runner maps /data to {local}: copy the file there" in str(err.value)


def test_data_inspect_prints_format_encoding_mapped_rows_lengths_and_rejects(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from korean_llm.cli import main

    values = str(Path(__file__).resolve().parents[1] / "values" / "local-csv.yaml")
    assert main(["data", "inspect", "qa-ko", "-f", values, "--rows", "1"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "qa-ko: chat rows" in out
    assert "csv │ cp949 │ 12 │ 14 │ 0" in out
    assert "auto: line 2 is not valid UTF-8 but is valid CP949: file read as cp949" in out
    assert '"content": "당신은 한국 생활 정보를 알려 주는 친절한 도우미입니다."' in out  # the mapped system constant
    assert "rows read 12, kept 11, would be rejected 1" in out
    assert "token lengths (builtin:tiny-ko): min " in out
    assert "qa_cp949.csv:10: empty content in messages[1]" in out
    assert main(["data", "inspect", "qna", "-f", values]) == 2
    assert "unknown dataset 'qna' (datasets: dialogues-ko, qa-ko, quiz-ko)" in capsys.readouterr().err


def test_data_inspect_of_a_path_with_map_encoding_and_format_options(capsys: pytest.CaptureFixture[str]) -> None:
    """`data inspect PATH --map FIELD=COLUMN ...`: no registry, the mapping from the command line (a YAML
    constant or list after `=`), the row kind guessed from the mapped fields."""
    from korean_llm.cli import main
    from korean_llm.config import DEFAULT_SYSTEM_PROMPT

    qa = str(BYOD / "qa_cp949.csv")

    def out_of(*argv: str) -> str:
        assert main(["data", "inspect", *argv]) == 0
        return " ".join(capsys.readouterr().out.split())

    out = out_of(qa, "--map", "user=Q", "--map", "assistant=A", "--rows", "1")
    assert "qa_cp949.csv: chat rows" in out and 'mapping: {"user": "Q", "assistant": "A"}' in out
    assert "auto: line 2 is not valid UTF-8 but is valid CP949: file read as cp949" in out
    assert "rows read 12, kept 11, would be rejected 1" in out
    assert f'"content": "{DEFAULT_SYSTEM_PROMPT}"' in out and '"content": "서울의 인구는 대략 몇 명인가요?"' in out
    assert "token lengths (builtin:tiny-ko): min " in out and "qa_cp949.csv:10: empty content in messages[1]" in out

    # A declared encoding and format, and a constant system prompt in YAML flow form.
    out = out_of(
        qa, "--map", "user=Q", "--map", "assistant=A", "--map", "system={value: 짧게 답하세요.}",
        "--encoding", "cp949", "--format", "csv", "--rows", "1",
    )  # fmt: skip
    assert "line 2 is not valid UTF-8" not in out and '"content": "짧게 답하세요."' in out
    assert DEFAULT_SYSTEM_PROMPT not in out.split("row 1 as the stage reads it:")[1]

    # Choice columns as a YAML list: evaluation task rows.
    out = out_of(
        str(BYOD / "tasks_ko.csv"), "--map", "question=질문", "--map", "choices=[보기1, 보기2, 보기3, 보기4]",
        "--map", "answer=정답", "--map", "context=지문", "--rows", "1",
    )  # fmt: skip
    assert "tasks_ko.csv: task rows" in out and '"choices": [ "부산", "대구", "서울", "광주" ], "answer": 2' in out
    assert "rows read 8, kept 6, would be rejected 2" in out and "answer 7 is outside choices (0..3)" in out

    # Bad options: exit 2 with the reason.
    assert main(["data", "inspect", qa, "--map", "user"]) == 2
    assert "--map 'user': expected FIELD=COLUMN" in capsys.readouterr().err
    assert main(["data", "inspect", qa, "--map", "user=Question", "--map", "assistant=A"]) == 2
    err = capsys.readouterr().err
    assert "mapped column 'Question' (for user) does not exist in" in err and "columns found: Q, A, label" in err


def test_data_inspect_reads_rows_with_the_stages_system_prompt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Chats as the SFT stage reads them (`sft.system_prompt`, its default included), preference rows as the RLHF
    stage does (`rlhf.system_prompt`): the printed rows and the token lengths hold the prompt the stage adds."""
    import yaml
    from transformers import AutoTokenizer

    from korean_llm.builtin import resolve_model
    from korean_llm.cli import build_parser, main
    from korean_llm.config import DEFAULT_SYSTEM_PROMPT
    from korean_llm.data.inspect import inspect, resolve_target
    from korean_llm.stages import rlhf, sft

    values = str(Path(__file__).resolve().parents[1] / "values" / "local-csv.yaml")
    datasets = yaml.safe_load(Path(values).read_text(encoding="utf-8"))["datasets"]
    tok = AutoTokenizer.from_pretrained(resolve_model("builtin:tiny-ko"))

    def stage_rows(stage: str, name: str, block: dict[str, Any]) -> list[dict[str, Any]]:
        data = {"stage": stage, "datasets": datasets, "data": {"sources": [name]}, **block}
        cfg = build_config(data, source=f"{stage}.yaml", env={})
        return (sft if stage == "sft" else rlhf).training_rows(cfg, RejectLog())

    def chat_lengths(rows: list[dict[str, Any]]) -> list[int]:
        return [len(tok.apply_chat_template(r["messages"], tokenize=True, return_dict=False)) for r in rows]

    def report(*argv: str) -> dict[str, Any]:
        args = build_parser().parse_args(["data", "inspect", *argv])
        source, model, stages = resolve_target(args)
        return inspect(source, None, model or "builtin:tiny-ko", 100, 0, stages)

    # The values file sets no system prompt: the stage's default, as SFT trains on it.
    expected = stage_rows("sft", "dialogues-ko", {})
    assert expected[0]["messages"][0] == {"role": "system", "content": DEFAULT_SYSTEM_PROMPT}
    got = report("dialogues-ko", "-f", values)
    assert got["first_rows"] == expected and got["system_prompt"] == DEFAULT_SYSTEM_PROMPT
    lengths = sorted(chat_lengths(expected))
    assert got["token_lengths"]["min"] == lengths[0] and got["token_lengths"]["max"] == lengths[-1]

    # A values file that overrides the SFT stage's prompt, and a stage config that turns it off.
    override = tmp_path / "prompt.yaml"
    override.write_text(
        yaml.safe_dump({"stageDefaults": {"sft": {"config": {"sft": {"system_prompt": "짧게 답하세요."}}}}}),
        encoding="utf-8",
    )
    own = stage_rows("sft", "dialogues-ko", {"sft": {"system_prompt": "짧게 답하세요."}})
    assert report("dialogues-ko", "-f", values, "-f", str(override))["first_rows"] == own
    off = tmp_path / "sft.yaml"
    off.write_text(yaml.safe_dump({"stage": "sft", "sft": {"system_prompt": None}}), encoding="utf-8")
    bare = stage_rows("sft", "dialogues-ko", {"sft": {"system_prompt": None}})
    assert bare[0]["messages"][0]["role"] == "user"
    without = report("dialogues-ko", "-f", values, "--config", str(off))
    assert without["first_rows"] == bare and without["system_prompt"] is None
    assert without["token_lengths"]["max"] < got["token_lengths"]["max"]  # the prompt's tokens are gone

    # Preference pairs get the RLHF stage's prompt, as its training_rows adds it.
    mapping = {"prompt": "질문", "chosen": "좋은 답변", "rejected": "나쁜 답변"}
    datasets["pairs"] = {"path": str(BYOD / "preference_ko.csv"), "mapping": mapping}
    registry = tmp_path / "pairs.yaml"
    registry.write_text(yaml.safe_dump({"datasets": datasets}, allow_unicode=True), encoding="utf-8")
    assert report("pairs", "-f", str(registry))["first_rows"] == stage_rows("rlhf", "pairs", {})

    assert main(["data", "inspect", "dialogues-ko", "-f", values, "--rows", "1"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f'sft.system_prompt: "{DEFAULT_SYSTEM_PROMPT}", added to rows without a system turn' in out
    assert f'"content": "{DEFAULT_SYSTEM_PROMPT}"' in out
    assert main(["data", "inspect", "dialogues-ko", "-f", values, "--config", str(off)]) == 0
    assert "sft.system_prompt: none (null)" in " ".join(capsys.readouterr().out.split())


def test_data_inspect_merges_values_files_as_the_chart_renders_the_stage_configs(tmp_path: Path) -> None:
    """values_stage_config (what `data inspect -f` reads the system prompts from) against `helm template`: the
    SFT and RLHF blocks of the rendered stage configs of the first model, over several values files."""
    import yaml

    from korean_llm.data.inspect import _deep_merge, values_stage_config
    from korean_llm.local.runner import REPO_ROOT, render

    base = REPO_ROOT / "values" / "local-csv.yaml"
    override = {
        "runtimeDefaults": {"sft": {"system_prompt": "전역 지시"}, "rlhf": {"system_prompt": "전역 지시"}},
        "stageDefaults": {"rlhf": {"enabled": True, "config": {"rlhf": {"system_prompt": None}}}},
        "models": [
            {
                "name": "tiny-ko",
                "config": {"model": {"base_model": "builtin:tiny-ko"}, "sft": {"system_prompt": "모델 지시"}},
                "stages": {"sft": {"config": {"sft": {"packing": False}}}},
            }
        ],
    }
    over = tmp_path / "over.yaml"
    over.write_text(yaml.safe_dump(override, allow_unicode=True), encoding="utf-8")
    docs = render(REPO_ROOT / "charts", [str(base), str(over)], [])
    [configmap] = [d for d in docs if d["kind"] == "ConfigMap" and "sft.yaml" in d.get("data", {})]
    values = _deep_merge(yaml.safe_load(base.read_text(encoding="utf-8")), override)
    for stage in ("sft", "rlhf"):
        rendered = yaml.safe_load(configmap["data"][f"{stage}.yaml"])
        ours = values_stage_config(values, stage)
        assert ours.get(stage) == rendered.get(stage) and ours["model"] == rendered["model"], stage
    assert yaml.safe_load(configmap["data"]["sft.yaml"])["sft"] == {"system_prompt": "모델 지시", "packing": False}
    assert yaml.safe_load(configmap["data"]["rlhf.yaml"])["rlhf"] == {"system_prompt": None}


@pytest.mark.accounting
def test_max_rows_caps_the_rows_and_the_accounting_agrees(tmp_path: Path) -> None:
    path = tmp_path / "qa.csv"
    path.write_bytes(qa_csv(20))
    rejects = RejectLog()
    rows = collect_rows(DataConfig(sources=[DataSource(path=str(path), max_rows=5)]), sft_row(None), rejects)
    assert len(rows) == 5 and rejects.rows_in == 5
    assert rejects.read.files[0].records == 5 and rejects.read.files[0].note == "max_rows 5"


def hub_folder(tmp_path: Path, rows: list[dict[str, Any]]) -> str:
    """An `hf:` source the `datasets` library loads from a local folder (its json builder), no network needed."""
    folder = tmp_path / "hub-like"
    folder.mkdir(parents=True)
    (folder / "train.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return f"hf:{folder}"


@pytest.mark.accounting
def test_file_and_hf_sources_in_one_config_are_all_accounted_for(tmp_path: Path) -> None:
    # A hub source is counted like a file (one report), so a config mixing both passes the stage's accounting
    # check, and max_rows on the hub source caps that source's count, not the file read before it.
    path = tmp_path / "qa.csv"
    path.write_bytes(corrupt_row(qa_csv(20), 7))
    hub = hub_folder(tmp_path, [{"instruction": f"허브 질문 {i}", "output": f"허브 답변 {i}"} for i in range(1, 11)])
    sources = [DataSource(path=str(path)), DataSource(path=hub, max_rows=4), DataSource(path=hub)]
    rejects = RejectLog()
    rows = collect_rows(DataConfig(sources=sources), sft_row(None), rejects)
    assert rejects.rows_in == 20 + 4 + 10 and len(rows) == 19 + 4 + 10 and rejects.total == 1
    files = [(f.file, f.format, f.records, f.note) for f in rejects.read.files]
    assert files == [
        (str(path), "csv", 20, None),
        (hub, "hub", 4, "split train; max_rows 4"),
        (hub, "hub", 10, "split train"),
    ]
    assert rows[19]["messages"][0]["content"] == "허브 질문 1"


@pytest.mark.accounting
def test_preprocess_with_a_file_and_an_hf_source_accounts_for_every_row(tmp_path: Path, write_config: Any) -> None:
    from korean_llm.cli import main

    def doc(i: int) -> dict[str, str]:
        return {
            "text": f"{i}번째 문서입니다. 서울의 인구는 약 {900 + i}만 명이고 부산은 항구 도시로 알려져 있다. "
            f"대구에는 {i + 3}개의 대학이 있으며 광주는 예술의 도시라고 불린다."
        }

    def chat(i: int, who: str) -> dict[str, str]:
        return {"instruction": f"{who} 질문 {i}", "output": f"{who} 답변 {i}"}

    files = tmp_path / "files"
    files.mkdir()
    (files / "docs.jsonl").write_text("".join(json.dumps(doc(i), ensure_ascii=False) + "\n" for i in range(6)))
    (files / "chats.jsonl").write_text(
        "".join(json.dumps(chat(i, "파일"), ensure_ascii=False) + "\n" for i in range(8))
    )
    (files / "chats.jsonl").write_text((files / "chats.jsonl").read_text() + "{not json\n")
    hub_docs = hub_folder(tmp_path / "a", [doc(i) for i in range(10, 20)])
    hub_chats = hub_folder(tmp_path / "b", [chat(i, "허브") for i in range(9)])
    pre = {
        "cpt_sources": [{"path": str(files / "docs.jsonl")}, {"path": hub_docs, "max_rows": 3}],
        "sft_sources": [{"path": str(files / "chats.jsonl")}, {"path": hub_chats, "max_rows": 5}],
        "eval_fraction": 0.0,
    }
    config = write_config("preprocess", {"preprocess": pre})
    assert main(["preprocess", "--config", str(config)]) == 0
    stats = json.loads(next((tmp_path / "output").rglob("stats.json")).read_text())["inputs"]
    for kind, counts in (("cpt", [("jsonl", 6), ("hub", 3)]), ("sft", [("jsonl", 9), ("hub", 5)])):
        section = stats[kind]
        assert [(f["format"], f["records"]) for f in section["files"]] == counts, kind
        removed = sum(section["removed_by_step"].values())
        assert (
            section["rows_in"] == sum(n for _, n in counts) == section["rows_out"] + section["invalid_rows"] + removed
        )
    assert stats["sft"]["rows_out"] == 13 and stats["sft"]["invalid_rows"] == 1  # the line that is no JSON
