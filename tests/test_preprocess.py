"""The preprocess stage end to end: filters, dedup, PII, chats, outputs, worker invariance and bad input."""

from __future__ import annotations

import json
import logging
import re
import sys
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from korean_llm.builtin import corpus_texts
from korean_llm.cli import main as cli_main
from korean_llm.config import DataConfig, DataSource, load_config
from korean_llm.data import RejectLog, collect_rows, sft_row, text_row
from korean_llm.errors import EXIT_INVALID
from korean_llm.korean import normalize_whitespace
from korean_llm.stages import preprocess
from korean_llm.stages.preprocess.chats import is_eval


def constitution_docs(n: int) -> list[str]:
    """Distinct, already clean Korean documents: runs of three consecutive articles of the constitution."""
    text = next(t for t in corpus_texts() if t.startswith("대한민국헌법"))
    articles = [a.strip() for a in re.split(r"\n\s*(?=제\d+조)", text) if a.strip().startswith("제")]
    docs = [normalize_whitespace("\n".join(articles[i : i + 3])) for i in range(0, len(articles) - 2, 3)]
    assert len(docs) >= n
    return docs[:n]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows))
    return path


def processed(tmp_path: Path) -> Path:
    return tmp_path / "data" / "tiny-ko" / "t" / "processed"


def texts_of(folder: Path) -> list[str]:
    return [t for f in sorted(folder.glob("*.parquet")) for t in pq.read_table(f).column("text").to_pylist()]


def rejected(tmp_path: Path) -> list[dict[str, Any]]:
    path = processed(tmp_path) / "rejected.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def run(write_config: Callable[..., Path], pre: dict[str, Any], **extra: Any) -> tuple[int, Path]:
    path = write_config("preprocess", {"preprocess": pre, **extra})
    return cli_main(["preprocess", "--config", str(path)]), path


def test_each_filter_and_dedup_on_korean_text(tmp_path: Path, write_config: Callable[..., Path]) -> None:
    docs = constitution_docs(6)
    near = docs[1] + " (개정)"
    rows = [
        {"text": "\ufeff  " + unicodedata.normalize("NFD", docs[0]) + "\u200b  \n\n\n\n끝."},  # 1 cleaned, kept
        {"text": docs[1]},  # 2 kept
        {"text": "짧은 글."},  # 3 too short
        {"text": "This paragraph is written in English and has only a little 한글 in it. " * 3},  # 4 hangul ratio
        {"text": "지금 바로 클릭하세요! 최저가 보장\n" * 20 + docs[2]},  # 5 duplicate lines
        {"text": "ㅋㅋㅋㅋㅋㅋㅋㅋ 대박 " * 40},  # 6 repeated n-grams
        {"text": docs[1]},  # 7 exact copy of 2
        {"text": near},  # 8 near copy of 2
        {"text": docs[3] + "\n문의: 010-1234-5678, hong@example.kr (2024-01-15 공고, 15,000원)"},  # 9 PII masked
        {"text": docs[4]},  # 10 kept
        {"body": docs[5]},  # 11 missing text field
    ]
    src = write_jsonl(tmp_path / "in" / "corpus.jsonl", rows)
    rc, _ = run(write_config, {"cpt_sources": [{"path": str(src)}]}, data={"max_rejected_fraction": 0.2})
    assert rc == 0
    out = texts_of(processed(tmp_path) / "cpt")
    assert out[0] == docs[0] + "\n\n끝."  # NFC, BOM/zero-width gone, spaces and blank lines normalised
    assert out[1] == docs[1]
    assert out[2].endswith("문의: <PHONE>, <EMAIL> (2024-01-15 공고, 15,000원)")
    assert out[3] == docs[4]
    assert len(out) == 4
    reasons = {r["line"]: r["reason"] for r in rejected(tmp_path)}
    assert reasons[3].startswith("length: 5 characters < 50")
    assert reasons[4].startswith("hangul_ratio:")
    assert reasons[5].startswith("duplicate_lines:")
    assert reasons[6].startswith("repeated_ngrams:")
    assert reasons[7] == f"exact_dedup: copy of {src}:2"
    assert reasons[8] == f"near_dedup: copy of {src}:2"
    assert reasons[11] == "missing field 'text'"
    assert set(reasons) == {3, 4, 5, 6, 7, 8, 11}
    stats = json.loads((processed(tmp_path) / "stats.json").read_text())["inputs"]["cpt"]
    assert stats["pii_masked"] == {"PHONE": 1, "EMAIL": 1}
    assert stats["removed_by_step"] == {
        "length": 1,
        "hangul_ratio": 1,
        "duplicate_lines": 1,
        "repeated_ngrams": 1,
        "exact_dedup": 1,
        "near_dedup": 1,
    }
    assert stats["invalid_by_reason"] == {"missing field 'text'": 1}
    assert stats["steps"]["near_dedup"]["rows_out"] == 4
    assert sum(stats["histograms"]["length_chars"]["out"]) == 4


def test_distinct_texts_are_all_kept_and_feed_the_later_stages(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    docs = constitution_docs(12)
    src = write_jsonl(tmp_path / "in" / "c.jsonl", [{"text": d} for d in docs])
    sft = write_jsonl(
        tmp_path / "in" / "chat.jsonl",
        [
            {"conversations": [{"from": "human", "value": f"질문 {i}"}, {"from": "gpt", "value": f"답 {i}"}]}
            for i in range(40)
        ],
    )
    pre = {"cpt_sources": [{"path": str(src)}], "sft_sources": [{"path": str(sft)}], "eval_fraction": 0.25}
    rc, path = run(write_config, pre)
    assert rc == 0
    assert texts_of(processed(tmp_path) / "cpt") == docs
    cfg = load_config(path, env={})
    manifest = json.loads((cfg.run.stage_dir("preprocess") / "manifest.json").read_text())
    assert manifest["outputs"]["cpt"] == "processed/cpt"
    assert (
        Path(manifest["extra"]["outputs_root"]) / manifest["outputs"]["sft_train"] == processed(tmp_path) / "sft/train"
    )
    # The CPT and SFT stages read the output through ordinary data sources.
    rows = collect_rows(DataConfig(sources=[DataSource(path=str(processed(tmp_path) / "cpt"))]), text_row, RejectLog())
    assert [r["text"] for r in rows] == docs
    train, evals = (
        collect_rows(
            DataConfig(sources=[DataSource(path=str(processed(tmp_path) / "sft" / s))]), sft_row(None), RejectLog()
        )
        for s in ("train", "eval")
    )
    assert len(train) + len(evals) == 40
    assert 2 <= len(evals) <= 20
    assert train[0]["messages"][0] == {"role": "user", "content": "질문 0"} or evals[0]["messages"][0]["role"] == "user"
    # A finished stage is not run again.
    assert cli_main(["preprocess", "--config", str(path)]) == 0


def test_worker_count_does_not_change_the_result(tmp_path: Path, write_config: Callable[..., Path]) -> None:
    docs = constitution_docs(20)
    rows = [{"text": d} for d in docs] + [{"text": docs[3]}, {"text": docs[5] + " (개정)"}, "{bad"]
    src = write_jsonl(tmp_path / "in" / "c.jsonl", rows)
    results = []
    for num_proc in (1, 2):
        path = write_config(
            "preprocess",
            {
                "run": {"run_id": f"w{num_proc}"},
                "preprocess": {"cpt_sources": [{"path": str(src)}], "num_proc": num_proc, "batch_size": 3},
            },
            name=f"w{num_proc}.yaml",
        )
        assert cli_main(["preprocess", "--config", str(path)]) == 0
        out = tmp_path / "data" / "tiny-ko" / f"w{num_proc}" / "processed"
        stats = json.loads((out / "stats.json").read_text())
        stats.pop("seconds"), stats.pop("cpu_seconds"), stats.pop("cpt_mb_per_second"), stats["config"].pop("num_proc")
        results.append((texts_of(out / "cpt"), (out / "rejected.jsonl").read_text(), stats))
    assert results[0] == results[1]
    assert len(results[0][0]) == 20


def test_chats_and_preferences_are_validated_normalised_and_split(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    sft = write_jsonl(
        tmp_path / "in" / "sft.jsonl",
        [
            {
                "conversations": [
                    {"from": "human", "value": "제 번호는 010-9876-5432예요."},
                    {"from": "gpt", "value": "네."},
                ]
            },
            {"instruction": "한글은 누가 만들었나요?", "output": "세종대왕입니다."},
            {"instruction": "한글은 누가 만들었나요?", "output": "세종대왕입니다."},
            {"messages": [{"role": "user", "content": "질문만"}]},
        ],
    )
    pref = write_jsonl(
        tmp_path / "in" / "pref.jsonl",
        [
            {"prompt": "서울은?", "chosen": "대한민국의 수도입니다.", "rejected": "몰라요."},
            {"prompt": "부산은?", "chosen": "같은 답", "rejected": "같은 답"},
        ],
    )
    pre = {"sft_sources": [{"path": str(sft)}], "preference_sources": [{"path": str(pref)}], "eval_fraction": 0.0}
    rc, _ = run(write_config, pre, data={"max_rejected_fraction": 0.5})
    assert rc == 0
    out = processed(tmp_path)
    chats = pq.read_table(out / "sft" / "train").column("messages").to_pylist()
    assert chats[0] == [{"role": "user", "content": "제 번호는 <PHONE>예요."}, {"role": "assistant", "content": "네."}]
    assert len(chats) == 2
    assert pq.read_table(out / "sft" / "eval").num_rows == 0
    pairs = pq.read_table(out / "preference" / "train").to_pylist()
    assert pairs == [
        {
            "prompt": [{"role": "user", "content": "서울은?"}],
            "chosen": [{"role": "assistant", "content": "대한민국의 수도입니다."}],
            "rejected": [{"role": "assistant", "content": "몰라요."}],
        }
    ]
    reasons = {(r["input"], r["line"]): r["reason"] for r in rejected(tmp_path)}
    assert reasons == {
        ("sft", 3): f"exact_dedup: copy of {sft}:2",
        ("sft", 4): "no assistant message",
        ("preference", 2): "'chosen' and 'rejected' are identical",
    }


def test_eval_split_is_deterministic() -> None:
    keys = [f"row {i}".encode() for i in range(2000)]
    first = [is_eval(k, 0.1, 42) for k in keys]
    assert first == [is_eval(k, 0.1, 42) for k in keys]
    assert 150 < sum(first) < 250
    assert first != [is_eval(k, 0.1, 7) for k in keys]


def test_shards_follow_the_configured_size(tmp_path: Path, write_config: Callable[..., Path]) -> None:
    docs = constitution_docs(12)
    src = write_jsonl(tmp_path / "in" / "c.jsonl", [{"text": d} for d in docs])
    rc, _ = run(write_config, {"cpt_sources": [{"path": str(src)}], "shard_size_mb": 0.002})
    assert rc == 0
    shards = sorted((processed(tmp_path) / "cpt").glob("part-*.parquet"))
    assert len(shards) >= 3
    assert texts_of(processed(tmp_path) / "cpt") == docs


def test_invalid_utf8_is_rejected_or_replaced_and_counted(tmp_path: Path, write_config: Callable[..., Path]) -> None:
    docs = constitution_docs(4)
    src = tmp_path / "in" / "c.jsonl"
    write_jsonl(src, [{"text": d} for d in docs[:3]])
    bad = json.dumps({"text": docs[3]}, ensure_ascii=False).encode().replace("국민".encode(), b"\xff\xfe", 1)
    src.write_bytes(src.read_bytes() + bad + b"\n")
    rc, _ = run(write_config, {"cpt_sources": [{"path": str(src)}]}, data={"max_rejected_fraction": 0.5})
    assert rc == 0
    assert rejected(tmp_path) == [{"input": "cpt", "file": str(src), "line": 4, "reason": "invalid UTF-8"}]
    stats = json.loads((processed(tmp_path) / "stats.json").read_text())["inputs"]["cpt"]
    assert stats["invalid_utf8"] == {"policy": "reject", "rows_replaced": 0, "rows_rejected": 1}

    path = write_config(
        "preprocess",
        {
            "run": {"run_id": "r"},
            "preprocess": {"cpt_sources": [{"path": str(src)}]},
            "data": {"invalid_utf8": "replace"},
        },
        name="replace.yaml",
    )
    assert cli_main(["preprocess", "--config", str(path)]) == 0
    out = tmp_path / "data" / "tiny-ko" / "r" / "processed"
    assert "\ufffd" in texts_of(out / "cpt")[3]
    stats = json.loads((out / "stats.json").read_text())["inputs"]["cpt"]
    assert stats["invalid_utf8"] == {"policy": "replace", "rows_replaced": 1, "rows_rejected": 0}


def test_malformed_json_line_is_reported_with_its_line(tmp_path: Path, write_config: Callable[..., Path]) -> None:
    docs = constitution_docs(5)
    src = write_jsonl(
        tmp_path / "in" / "c.jsonl",
        [{"text": d} for d in docs[:2]] + ['{"text": "끝나지 않은'] + [{"text": d} for d in docs[2:]],
    )
    rc, _ = run(write_config, {"cpt_sources": [{"path": str(src)}]}, data={"max_rejected_fraction": 0.2})
    assert rc == 0
    [row] = rejected(tmp_path)
    assert row["line"] == 3
    assert row["reason"].startswith("malformed JSON: ")
    assert row["reason"].endswith("(column 10)")


def test_empty_input_exits_2(tmp_path: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "in" / "empty.jsonl"
    src.parent.mkdir()
    src.write_text("\n\n")
    rc, _ = run(write_config, {"cpt_sources": [{"path": str(src)}]})
    assert rc == EXIT_INVALID
    assert "preprocess.cpt_sources: the input has no rows" in capsys.readouterr().err


def test_no_inputs_and_data_sources_are_config_errors(
    tmp_path: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture
) -> None:
    rc, _ = run(write_config, {})
    assert rc == EXIT_INVALID
    assert "no inputs" in capsys.readouterr().err
    rc, _ = run(
        write_config, {"cpt_sources": [{"path": "builtin:kolaw"}]}, data={"sources": [{"path": "builtin:kolaw"}]}
    )
    assert rc == EXIT_INVALID
    assert "'data.sources' is not read by the preprocess stage" in capsys.readouterr().err


def test_too_many_invalid_rows_exits_2_with_stats_written(
    tmp_path: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture
) -> None:
    docs = constitution_docs(4)
    src = write_jsonl(tmp_path / "in" / "c.jsonl", [{"text": d} for d in docs] + ["not json"] * 2)
    rc, path = run(write_config, {"cpt_sources": [{"path": str(src)}]}, data={"max_rejected_fraction": 0.1})
    assert rc == EXIT_INVALID
    err = capsys.readouterr().err
    assert "2 of 6 rows invalid (33.3%, limit data.max_rejected_fraction 10.0%)" in err
    stats_path = load_config(path, env={}).run.output_dir / "preprocess.partial" / "stats.json"
    assert str(stats_path) in err
    assert json.loads(stats_path.read_text())["inputs"]["cpt"]["invalid_rows"] == 2
    assert not processed(tmp_path).exists()
    assert not (load_config(path, env={}).run.stage_dir("preprocess") / "manifest.json").exists()


def test_sentence_splitting_without_kss_is_skipped_with_a_warning(
    tmp_path: Path, write_config: Callable[..., Path], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # kss absent whether or not this machine has it: a None entry makes find_spec and import both fail
    monkeypatch.setitem(sys.modules, "kss", None)
    docs = constitution_docs(2)
    src = write_jsonl(tmp_path / "in" / "c.jsonl", [{"text": d} for d in docs])
    pre = {"cpt_sources": [{"path": str(src)}], "cleaning": {"split_sentences": True}}
    path = write_config("preprocess", {"preprocess": pre})
    with caplog.at_level(logging.WARNING, logger="korean_llm"):
        preprocess.main(load_config(path, env={}))
    assert "split_sentences is on but kss is not installed: sentences are NOT split" in caplog.text
    assert texts_of(processed(tmp_path) / "cpt") == docs
    steps = json.loads((processed(tmp_path) / "stats.json").read_text())["inputs"]["cpt"]["steps"]
    assert "split_sentences" not in steps
