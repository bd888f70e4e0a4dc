"""User-shaped data through preprocess, every training stage and evaluate on the tiny model, and the local DAG.

The files are examples/data/ (see tests/test_datasets.py for their shapes). Each stage is asked to
read them through a `datasets:` registry with a mapping, and must account for every row:
rows_in = rows kept + rows rejected, with each reject at its real line.
"""

from __future__ import annotations

import importlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from korean_llm.cli import main
from korean_llm.config import load_config

from .conftest import REPO, run_cli

DATA = REPO / "examples" / "data"
REGISTRY: dict[str, Any] = {
    "qa-ko": {"path": str(DATA / "qa_cp949.csv"), "mapping": {"user": "Q", "assistant": "A"}},
    "sharegpt-ko": {
        "path": str(DATA / "sharegpt_ko.jsonl"),
        "mapping": {"messages": "conversations", "role": "from", "content": "value"},
    },
    "dialogues-ko": {
        "path": str(DATA / "dialogues_ko.jsonl"),
        "mapping": {
            "messages": "대화",
            "role": "화자",
            "content": "내용",
            "roles": {"질문": "user", "답변": "assistant"},
        },
    },
    "export-ko": {
        "path": str(DATA / "nested_export.json"),
        "records": "export.items",
        "mapping": {
            "user": "dialog.question.text",
            "assistant": "dialog.answer.text",
            "system": {"value": "간결하게 답하세요."},
        },
    },
    "alpaca-ko": {
        "path": str(DATA / "alpaca_ko.jsonl"),
        "mapping": {"instruction": "지시문", "input": "입력", "output": "출력"},
    },
    "pairs-ko": {
        "path": str(DATA / "preference_ko.csv"),
        "mapping": {"prompt": "질문", "chosen": "좋은 답변", "rejected": "나쁜 답변"},
    },
    "kto-ko": {"path": str(DATA / "kto_ko.csv"), "mapping": {"prompt": "질문", "completion": "답변", "label": "좋음"}},
    "grpo-ko": {"path": str(DATA / "grpo_ko.jsonl"), "mapping": {"prompt": "문제", "extra": {"answer": "정답"}}},
    "articles-ko": {"path": str(DATA / "articles_ko.jsonl"), "mapping": {"text": "doc.body"}},
    "quiz-ko": {
        "path": str(DATA / "tasks_ko.csv"),
        "mapping": {
            "question": "질문",
            "choices": ["보기1", "보기2", "보기3", "보기4"],
            "answer": "정답",
            "context": "지문",
        },
    },
}
TRAIN = {"max_steps": 2, "per_device_train_batch_size": 4, "logging_steps": 1, "save_steps": 100}


def rejected(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "rejected.jsonl").read_text().splitlines()]


def test_preprocess_reads_every_shape_and_accounts_for_every_row(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    cfg = write_config(
        "preprocess",
        {
            "datasets": REGISTRY,
            "data": {"max_rejected_fraction": 0.5},
            "preprocess": {
                "cpt_sources": ["articles-ko"],
                "sft_sources": ["qa-ko", "sharegpt-ko", "dialogues-ko", "export-ko", "alpaca-ko"],
                "preference_sources": ["pairs-ko"],
                "eval_fraction": 0.0,
                "cleaning": {"min_chars": 20},
            },
        },
    )
    assert main(["preprocess", "--config", str(cfg)]) == 0
    processed = tmp_path / "data" / "tiny-ko" / "t" / "processed"
    stats = json.loads((processed / "stats.json").read_text())["inputs"]
    for kind, s in stats.items():  # the stage asserts this itself; the published numbers must show it too
        assert s["rows_in"] == s["rows_out"] + s["invalid_rows"] + sum(s["removed_by_step"].values()), kind
    assert stats["sft"]["rows_in"] == 12 + 6 + 4 + 5 + 6
    assert stats["sft"]["rows_out"] == 11 + 5 + 3 + 4 + 5  # ShareGPT: 6 rows, one opens with the assistant
    assert stats["preference"]["rows_in"] == 8 and stats["preference"]["rows_out"] == 7
    assert stats["cpt"]["rows_in"] == 5 and stats["cpt"]["rows_out"] == 4
    where = {(Path(r["file"]).name, r["line"]): r["reason"] for r in rejected(processed)}
    assert where == {
        ("qa_cp949.csv", 10): "empty content in messages[1]",
        (
            "dialogues_ko.jsonl",
            4,
        ): "unknown role '안내' in messages[0] (expected one of ['assistant', 'system', 'user'])",
        ("nested_export.json", 4): "missing field 'dialog.answer.text' (mapped to assistant)",
        ("alpaca_ko.jsonl", 6): "empty or non-string 'instruction'",
        ("sharegpt_ko.jsonl", 5): "roles do not alternate: messages[0] is 'assistant' first, expected 'user'",
        ("preference_ko.csv", 7): "'chosen' and 'rejected' are identical",
        ("articles_ko.jsonl", 5): "missing field 'doc.body' (mapped to text)",
    }
    manifest = json.loads((tmp_path / "output" / "tiny-ko" / "t" / "preprocess" / "manifest.json").read_text())
    qa = next(f for f in manifest["extra"]["inputs_read"]["sft"] if f["file"].endswith("qa_cp949.csv"))
    assert qa["encoding"] == "cp949" and qa["note"].startswith("auto: line 2 is not valid UTF-8")
    import pyarrow.parquet as pq

    rows = pq.read_table(processed / "sft" / "train").to_pylist()
    export_rows = [r for r in rows if r["messages"][0]["content"] == "간결하게 답하세요."]
    assert len(export_rows) == 4  # the constant system prompt of the nested export


def test_preprocess_keeps_1999_of_2000_csv_rows_with_one_bad_byte(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    from .test_datasets import corrupt_row, qa_csv

    path = tmp_path / "qa.csv"
    path.write_bytes(corrupt_row(qa_csv(2000), 1001))
    cfg = write_config("preprocess", {"preprocess": {"sft_sources": [{"path": str(path)}], "eval_fraction": 0.0}})
    assert main(["preprocess", "--config", str(cfg)]) == 0
    processed = tmp_path / "data" / "tiny-ko" / "t" / "processed"
    sft = json.loads((processed / "stats.json").read_text())["inputs"]["sft"]
    assert (sft["rows_in"], sft["rows_out"], sft["invalid_rows"]) == (2000, 1999, 1)
    assert rejected(processed) == [{"input": "sft", "file": str(path), "line": 1002, "reason": "invalid UTF-8"}]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stage", "overrides", "kept", "rejects"),
    [
        (
            "cpt",
            {"data": {"sources": ["articles-ko"], "max_rejected_fraction": 0.3}, "lora": {"r": 4, "alpha": 8}},
            4,
            [(5, "missing field 'doc.body' (mapped to text)")],
        ),
        ("sft", {"data": {"sources": ["qa-ko", "export-ko"], "max_rejected_fraction": 0.2}}, 15, None),
        (
            "rlhf",
            {"rlhf": {"method": "dpo"}, "data": {"sources": ["pairs-ko"], "max_rejected_fraction": 0.2}},
            7,
            [(7, "'chosen' and 'rejected' are identical")],
        ),
        (
            "rlhf",
            {"rlhf": {"method": "kto"}, "data": {"sources": ["kto-ko"], "max_rejected_fraction": 0.2}},
            14,
            [(17, "'label' is '아마도', expected true or false (or 1 / 0)")],
        ),
        (
            "rlhf",
            {
                "rlhf": {"method": "grpo"},
                "data": {"sources": ["grpo-ko"]},
                "training": {"num_generations": 4, "max_completion_length": 8, "gradient_checkpointing": False},
            },
            8,
            [],
        ),
    ],
    ids=["cpt-nested-text", "sft-cp949-csv-and-nested-json", "dpo-csv", "kto-csv", "grpo-korean-keys"],
)
def test_each_training_stage_trains_on_mapped_sources(
    stage: str,
    overrides: dict[str, Any],
    kept: int,
    rejects: list[tuple[int, str]] | None,
    tmp_path: Path,
    write_config: Callable[..., Path],
) -> None:
    over = {"datasets": REGISTRY, **overrides, "training": {**TRAIN, **overrides.get("training", {})}}
    if stage == "cpt":
        over["training"]["per_device_train_batch_size"] = 1
        over["cpt"] = {"block_size": 32}
    cfg = load_config(write_config(stage, over), env={})
    manifest = importlib.import_module(f"korean_llm.stages.{stage}").main(cfg)
    assert manifest.metrics["global_step"] == 2
    assert (cfg.stage_dir / "adapter" / "adapter_model.safetensors").is_file()
    reads = manifest.extra["inputs_read"]
    assert sum(f["records"] for f in reads) == kept + len(rejected(cfg.stage_dir))
    if rejects is not None:
        assert [(r["line"], r["reason"]) for r in rejected(cfg.stage_dir)] == rejects
    if stage == "sft":
        assert {f["encoding"] for f in reads} == {"cp949", "utf-8"}
        assert manifest.metrics["conversations"] == kept


@pytest.mark.slow
def test_named_evaluations_write_their_own_folder_with_items_and_label_distributions(
    tmp_path: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    evaluate = {
        "perplexity": ["articles-ko"],
        "perplexity_max_tokens": 32,
        "tasks": ["quiz-ko"],
        "prompts": [{"dataset": "grpo-ko", "mapping": {"prompt": "문제"}}],
        "baseline": "none",
        "max_new_tokens": 4,
    }
    common = {"datasets": REGISTRY, "data": {"max_rejected_fraction": 0.5}}
    first = write_config("evaluate", {**common, "evaluate": {**evaluate, "name": "quiz"}}, name="e1.yaml")
    assert main(["evaluate", "--config", str(first)]) == 0
    out = tmp_path / "output" / "tiny-ko" / "t"
    report = json.loads((out / "evaluations" / "quiz" / "eval.json").read_text())
    assert report["name"] == "quiz" and not (out / "evaluate").exists()
    task = report["tasks"]["quiz-ko"]  # named after the registry entry
    assert task["items"] == 6 and task["answer_distribution"] == {"0": 2, "1": 2, "2": 1, "3": 1}
    assert task["chance"] == pytest.approx(0.25)
    dist = task["candidate"]["prediction_distribution"]
    assert sum(dist.values()) == 6
    assert task["candidate"]["most_common_prediction_share"] == max(dist.values()) / 6
    items = report["items"]["quiz-ko"]
    assert [it["answer"] for it in items] == [2, 0, 1, 3, 0, 1]  # "2   ", "1 " read as numbers
    assert all(len(it["candidate"]["loglikelihoods"]) == 4 for it in items)
    assert sum(it["candidate"]["correct"] for it in items) / 6 == pytest.approx(
        report["candidate"]["scores"]["accuracy/quiz-ko"]
    )
    assert "accuracy_bytes/quiz-ko" in report["candidate"]["scores"]
    assert any(
        w.startswith("perplexity scored 32 of ") and "perplexity_max_tokens is 32" in w for w in report["warnings"]
    )
    assert "perplexity scored 32 of" in capsys.readouterr().err
    rejects = {(r["line"], r["reason"]) for r in rejected(out / "evaluations" / "quiz")}
    assert rejects == {
        (5, "missing field 'doc.body' (mapped to text)"),  # articles_ko.jsonl, read for perplexity
        (8, "every entry of 'choices' must be a non-empty string"),
        (9, "answer 7 is outside choices (0..3)"),
    }

    # Again on other data in the same run, nothing deleted: a second name; a gate names its task in the failure.
    second = write_config(
        "evaluate",
        {**common, "evaluate": {**evaluate, "name": "strict", "gate": {"min_accuracy": {"quiz-ko": 1.0}}}},
        name="e2.yaml",
    )
    assert main(["evaluate", "--config", str(second)]) == 3
    assert "gate failed: min_accuracy[quiz-ko] = " in capsys.readouterr().err
    assert (out / "evaluations" / "quiz" / "eval.json").is_file()
    assert (out / "evaluations" / "strict.partial" / "eval.json").is_file()


@pytest.mark.slow
def test_local_dag_with_a_mapped_cp949_csv_as_sft_source(tmp_path: Path) -> None:
    # The CSV under /tmp-like path outside the runner's mounts is read where it is.
    outside = tmp_path / "elsewhere" / "qa.csv"
    outside.parent.mkdir()
    shutil.copy(DATA / "qa_cp949.csv", outside)
    result = run_cli(
        "run", "-f", str(REPO / "values" / "local-csv.yaml"), "--runs-dir", str(tmp_path / "runs"), "--run-id", "csv",
        "--set", f"datasets.qa-ko.path={outside}",
        "--set", "models[0].stages.cpt.config.training.max_steps=4",
        "--set", "models[0].stages.sft.config.training.num_train_epochs=1",
        timeout=1200,  # four stages on a shared CPU machine
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "any other path in the configs is read where it is" in " ".join(result.stderr.split())
    out = tmp_path / "runs" / "csv" / "output" / "tiny-ko" / "csv"
    pre = json.loads((out / "preprocess" / "manifest.json").read_text())
    qa = next(f for f in pre["extra"]["inputs_read"]["sft"] if f["file"] == str(outside))
    assert qa["encoding"] == "cp949" and qa["records"] == 12
    assert pre["metrics"]["sft_rows_in"] == 16 and pre["metrics"]["sft_rows_out"] == 14
    sft = json.loads((out / "sft" / "manifest.json").read_text())
    assert sft["metrics"]["conversations"] == 14
    report = json.loads((out / "evaluate" / "eval.json").read_text())
    assert report["tasks"]["quiz-ko"]["items"] == 6
