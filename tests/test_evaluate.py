"""Evaluate stage: scoring against direct computation, input validation, gate verdicts and reports."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from korean_llm.cli import main as cli_main
from korean_llm.config import GateConfig, load_config
from korean_llm.data import RejectLog
from korean_llm.errors import ConfigError, DataError
from korean_llm.korean import hangul_ratio
from korean_llm.pipeline.release import new_staging, publish, switch_current
from korean_llm.stages.evaluate import baseline_point, run_lm_eval, scoring
from korean_llm.stages.evaluate.inputs import load_inputs, load_tasks
from korean_llm.stages.evaluate.report import gate_checks

from .fake_stages import adapter_stage, damaged_stage


@pytest.fixture(scope="module")
def tiny(tiny_model: Path) -> tuple[object, object]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model)


def test_korean_share_counts_letters_only() -> None:
    assert hangul_ratio("안녕하세요 123!") == 1.0
    assert hangul_ratio("한국 AI") == pytest.approx(0.5)
    assert hangul_ratio("...") == 0.0
    assert hangul_ratio("hello") == 0.0


def test_perplexity_matches_a_direct_forward(tiny: tuple[object, object]) -> None:
    import torch

    model, tok = tiny
    text = "대한민국은 민주공화국이다. 모든 권력은 국민으로부터 나온다."
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        expected = math.exp(float(model(input_ids=ids, labels=ids).loss))
    got = scoring.perplexity(
        model, tok, [text, "짧은 글도 함께 묶어 계산한다."], max_length=128, max_tokens=ids.shape[1] - 1, batch_size=2
    )
    # The token budget stops after the first text, so the figure is that text's perplexity alone.
    assert got.tokens == ids.shape[1] - 1
    assert got.perplexity == pytest.approx(expected, rel=1e-4)


def test_multiple_choice_matches_direct_log_likelihoods(tiny: tuple[object, object]) -> None:
    import torch

    model, tok = tiny
    item = {
        "context": "지수는 사과 세 개를 샀다.",
        "question": "지수가 산 과일은?",
        "choices": ["사과", "바나나 한 송이", "배"],
        "answer": 1,
    }
    ctx = tok(scoring.mc_prompt(item), add_special_tokens=False)["input_ids"]
    direct = []
    for choice in item["choices"]:
        cont = tok(" " + choice, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([ctx + cont])
        labels = ids.clone()
        labels[0, : len(ctx)] = -100  # score only the choice's tokens
        with torch.no_grad():
            direct.append(-float(model(input_ids=ids, labels=labels).loss) * len(cont))
    pairs = [(ctx, tok(" " + c, add_special_tokens=False)["input_ids"]) for c in item["choices"]]
    # Batched with right padding (choices of different lengths) must equal one sequence at a time.
    batched = scoring.continuation_logprobs(model, pairs, batch_size=3, max_length=128, pad_id=tok.pad_token_id)
    assert [lp for lp, _ in batched] == pytest.approx(direct, abs=1e-3)
    scores = scoring.multiple_choice(model, tok, [item], max_length=128, batch_size=2)
    best = max(range(3), key=lambda k: direct[k])
    assert scores.predictions == [best]
    assert scores.accuracy == (1.0 if best == 1 else 0.0)


# Four two-choice items and log-likelihoods chosen so that the raw, per-character and per-byte argmax differ
# (scoring.multiple_choice). Per item: lls, lls / characters, UTF-8 bytes and lls / bytes, the pick of each rule:
#   A 서울 | Seoul, answer 0:    [-6.0, -5.5]; /chars [-3.0, -1.1]; bytes (6, 5) [-1.0, -1.1]    raw 1, norm 1, bytes 0
#   B 한국어 | KR, answer 1:     [-9.9, -2.4]; /chars [-3.3, -1.2]; bytes (9, 2) [-1.1, -1.2]    raw 1, norm 1, bytes 0
#   C 둘째 | 1번, answer 0:      [-6.0, -4.4]; /chars [-3.0, -2.2]; bytes (6, 4) [-1.0, -1.1]    raw 1, norm 1, bytes 0
#   D 가나다라 | A, answer 0:    [-4.0, -2.0]; /chars [-1.0, -2.0]; bytes (12, 1) [-0.33, -2.0]  raw 1, norm 0, bytes 0
# accuracy 1/4 (B), accuracy_norm 2/4 (B, D), accuracy_bytes 3/4 (A, C, D); the raw pick is choice 1 every time.
HAND_ITEMS = [
    {"question": "한국의 수도는?", "choices": ["서울", "Seoul"], "answer": 0},
    {"question": "한국의 언어를 두 글자 영문 약어로?", "choices": ["한국어", "KR"], "answer": 1},
    {"question": "두 번째를 뜻하는 말은?", "choices": ["둘째", "1번"], "answer": 0},
    {"question": "한글 네 글자는?", "choices": ["가나다라", "A"], "answer": 0},
]
HAND_LLS = {
    "서울": -6.0,
    "Seoul": -5.5,
    "한국어": -9.9,
    "KR": -2.4,
    "둘째": -6.0,
    "1번": -4.4,
    "가나다라": -4.0,
    "A": -2.0,
}


def hand_logprobs(decode: Callable[[list[int]], str]) -> Callable[..., list[tuple[float, int]]]:
    """A stand-in for scoring.continuation_logprobs giving each choice its HAND_LLS value."""

    def logprobs(model: object, pairs: list[tuple[list[int], list[int]]], **_: object) -> list[tuple[float, int]]:
        return [(HAND_LLS[decode(cont).strip()], len(cont)) for _, cont in pairs]

    return logprobs


def test_accuracy_bytes_is_the_per_byte_argmax_computed_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    class CodePoints:  # a tokenizer of one id per character
        pad_token_id = 0

        def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
            return {"input_ids": [ord(c) for c in text]}

    monkeypatch.setattr(scoring, "continuation_logprobs", hand_logprobs(lambda ids: "".join(map(chr, ids))))
    mc = scoring.multiple_choice(None, CodePoints(), HAND_ITEMS, max_length=64, batch_size=8)
    assert (mc.accuracy, mc.accuracy_norm, mc.accuracy_bytes) == (0.25, 0.5, 0.75)
    assert mc.predictions == [1, 1, 1, 1] and mc.predictions_norm == [1, 1, 1, 0]
    assert mc.predictions_bytes == [0, 0, 0, 0]


def test_a_model_that_always_picks_the_same_choice_is_warned_about(
    tmp_path: Path,
    write_config: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Through the stage: eval.json's scores hold the hand-computed accuracy_bytes and the warning names the task."""
    from transformers import AutoTokenizer

    from korean_llm.builtin import resolve_model
    from korean_llm.stages.evaluate import input_warnings

    tok = AutoTokenizer.from_pretrained(resolve_model("builtin:tiny-ko"))
    monkeypatch.setattr(scoring, "continuation_logprobs", hand_logprobs(tok.decode))
    tasks = tmp_path / "hand.jsonl"
    tasks.write_text("".join(json.dumps(it, ensure_ascii=False) + "\n" for it in HAND_ITEMS), encoding="utf-8")
    path = write_config("evaluate", {"evaluate": {"tasks": [{"path": str(tasks)}], "baseline": "none"}})
    assert cli_main(["evaluate", "--config", str(path)]) == 0
    report = json.loads((tmp_path / "output" / "tiny-ko" / "t" / "evaluate" / "eval.json").read_text())
    scores = report["candidate"]["scores"]
    assert (scores["accuracy/hand"], scores["accuracy_norm/hand"], scores["accuracy_bytes/hand"]) == (0.25, 0.5, 0.75)
    assert [it["candidate"]["prediction_bytes"] for it in report["items"]["hand"]] == [0, 0, 0, 0]
    line = "task hand: the candidate picked choice 1 for all 4 items"
    assert line in report["warnings"] and f"evaluate: {line}" in capsys.readouterr().err

    # Not said for fewer than 4 items (too few to tell), nor when the picks differ.
    cfg = load_config(path, env={})

    def said(predictions: list[int]) -> list[str]:
        n = len(predictions)
        return input_warnings(cfg, {"tasks": {"t": scoring.ChoiceScores(0.0, 0.0, n, predictions)}})

    assert said([2, 2, 2]) == [] and said([2, 2, 2, 0]) == []
    assert said([2, 2, 2, 2]) == ["task t: the candidate picked choice 2 for all 4 items"]


def test_bad_task_rows_are_reported_with_file_and_line(tmp_path: Path, write_config: Callable[..., Path]) -> None:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    good = {"question": "수도는?", "choices": ["서울", "부산"], "answer": 0}
    lines = [
        json.dumps(good, ensure_ascii=False),
        json.dumps({**good, "answer": 2}, ensure_ascii=False),
        json.dumps({"question": "빠진 필드", "answer": 0}, ensure_ascii=False),
        '{"question": "깨진 JSON", ',
    ]
    (tasks / "mixed.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = load_config(write_config("evaluate", {"evaluate": {"tasks": [{"path": str(tasks)}]}}), env={})
    rejects = RejectLog()
    loaded = load_tasks(cfg, rejects)
    assert list(loaded) == ["mixed"] and len(loaded["mixed"]) == 1
    where = {(Path(r["file"]).name, r["line"]): r["reason"] for r in rejects.rejected}
    assert "outside choices" in where[("mixed.jsonl", 2)]
    assert "missing field 'choices'" in where[("mixed.jsonl", 3)]
    assert "malformed JSON" in where[("mixed.jsonl", 4)]


def test_task_file_without_valid_rows_is_a_data_error(tmp_path: Path, write_config: Callable[..., Path]) -> None:
    bad = tmp_path / "empty_task.jsonl"
    bad.write_text(json.dumps({"question": "q", "choices": ["a", "b"], "answer": 5}) + "\n", encoding="utf-8")
    path = write_config("evaluate", {"evaluate": {"tasks": [{"path": str(bad)}]}})
    with pytest.raises(DataError) as err:
        load_inputs(load_config(path, env={}))
    assert err.value.exit_code == 2
    assert str(bad) in str(err.value) and "line 1" in str(err.value)
    assert cli_main(["evaluate", "--config", str(path)]) == 2


def test_gate_on_an_unknown_task_is_a_config_error(write_config: Callable[..., Path]) -> None:
    ev = {"tasks": [{"path": "builtin:eval-ko-tasks"}], "gate": {"min_accuracy": {"ko_nope": 0.5}}}
    with pytest.raises(ConfigError, match=r"evaluate\.gate\.min_accuracy\.ko_nope"):
        load_inputs(load_config(write_config("evaluate", {"evaluate": ev}), env={}))


def test_builtin_fixtures_hold_enough_items(write_config: Callable[..., Path]) -> None:
    ev = {"tasks": [{"path": "builtin:eval-ko-tasks"}], "prompts": [{"path": "builtin:eval-ko-prompts"}]}
    inputs = load_inputs(load_config(write_config("evaluate", {"evaluate": ev}), env={}))
    tasks, prompts, rejects = inputs.tasks, inputs.prompts, inputs.rejects
    assert len(tasks) >= 3 and sum(len(v) for v in tasks.values()) >= 40
    assert len(prompts) >= 20 and not rejects.rejected
    assert all(hangul_ratio(p) > 0.8 for p in prompts)


def test_gate_checks_limits_and_regressions() -> None:
    gate = GateConfig(
        max_perplexity=100, min_accuracy={"*": 0.5, "missing": 0.1}, max_accuracy_drop=0.05, max_perplexity_ratio=1.1
    )
    cand = {"perplexity": 90.0, "accuracy/a": 0.6, "accuracy/b": 0.4}
    base = {"perplexity": 80.0, "accuracy/a": 0.7, "accuracy/b": 0.4}
    verdict = {c["check"]: c["passed"] for c in gate_checks(gate, cand, base)}
    assert verdict == {
        "max_perplexity": True,
        "min_accuracy[a]": True,
        "min_accuracy[b]": False,
        "min_accuracy[missing]": False,  # a task that was not measured cannot pass
        "max_perplexity_ratio": False,  # 90 / 80 = 1.125
        "max_accuracy_drop[a]": False,  # 0.1 points
        "max_accuracy_drop[b]": True,
    }


def test_lm_eval_tasks_are_skipped_with_a_reason(
    write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # lm_eval absent whether or not this machine has it: a None entry makes find_spec and import both fail
    monkeypatch.setitem(sys.modules, "lm_eval", None)
    cfg = load_config(write_config("evaluate", {"evaluate": {"lm_eval_tasks": ["kobest_boolq"]}}), env={})
    skipped: list[str] = []
    assert run_lm_eval(None, None, cfg, skipped) == {}
    assert "kobest_boolq" in skipped[0] and "lm_eval is not installed" in skipped[0]


def _eval_config(write_config: Callable[..., Path], run_id: str) -> Path:
    evaluate = {
        "perplexity": [{"path": "builtin:eval-ko-text"}],
        "perplexity_max_tokens": 200,
        "tasks": [{"path": "builtin:eval-ko-tasks", "max_rows": 5}],
        "prompts": [{"path": "builtin:eval-ko-prompts", "max_rows": 3}],
        "max_new_tokens": 4,
        "lm_eval_tasks": ["kobest_boolq"],
        "gate": {"max_perplexity_ratio": 1.05, "max_accuracy_drop": 0.0, "max_korean_share_drop": 0.0},
    }
    overrides = {"run": {"run_id": run_id, "previous_stage": "sft"}, "evaluate": evaluate}
    return write_config("evaluate", overrides, name=f"evaluate-{run_id}.yaml")


def test_gate_passes_an_unchanged_model_and_refuses_a_damaged_one(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    runs = tmp_path / "output" / "tiny-ko"
    adapter_stage(runs / "good", lora_scale=0.0)  # the adapter is a no-op: same scores as the base model
    damaged_stage(runs / "bad", noise=3.0)  # logits far from uniform: perplexity about 6x the base

    assert cli_main(["evaluate", "--config", str(_eval_config(write_config, "good"))]) == 0
    report = json.loads((runs / "good" / "evaluate" / "eval.json").read_text(encoding="utf-8"))
    assert report["status"] == "passed" and all(c["passed"] for c in report["checks"])
    assert report["candidate"]["scores"]["perplexity"] == pytest.approx(
        report["baseline"]["scores"]["perplexity"], rel=1e-5
    )
    assert any("kobest_boolq" in s for s in report["skipped"]) == (importlib.util.find_spec("lm_eval") is None)
    assert len(report["samples"]) == 3
    html = (runs / "good" / "evaluate" / "eval.html").read_text(encoding="utf-8")
    assert "PASSED" in html and "accuracy/ko_copa" in html

    assert cli_main(["evaluate", "--config", str(_eval_config(write_config, "bad"))]) == 3
    assert not (runs / "bad" / "evaluate").exists()  # nothing published: deploy cannot start
    failed = json.loads((runs / "bad" / "evaluate.partial" / "eval.json").read_text(encoding="utf-8"))
    assert failed["status"] == "failed"
    ratio = next(c for c in failed["checks"] if c["check"] == "max_perplexity_ratio")
    assert not ratio["passed"] and ratio["value"] > 1.05
    assert "FAIL" in (runs / "bad" / "evaluate.partial" / "eval.html").read_text(encoding="utf-8")


def test_release_baseline_is_the_current_release_or_the_base_model(
    tmp_path: Path, write_config: Callable[..., Path], tiny_model: Path
) -> None:
    cfg = load_config(write_config("evaluate", {"evaluate": {"baseline": "release"}}), env={})
    notes: list[str] = []
    assert baseline_point(cfg, notes).weights == str(tiny_model)
    assert "no current release yet" in notes[0]

    root = tmp_path / "output" / "tiny-ko" / "releases"
    staging = new_staging(root, "v7")
    publish(staging, root, "v7", {"version": "v7", "released_at": 1.0})
    switch_current(root, "v7")
    assert baseline_point(cfg, []).weights == str(root / "v7")
