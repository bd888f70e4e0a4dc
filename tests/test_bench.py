"""`korean-llm bench` on the CPU: the real CPT/SFT trainer path and the bare loop, with figures that add up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from korean_llm.bench import SHAPES, count_parameters

TINY_PARAMETERS = 284_736  # builtin:tiny-ko: 2 layers of width 64, 3003-token vocabulary, tied embeddings


def test_bench_runs_stage_code_paths_on_cpu(cli, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = cli(
        "bench", "--model", "builtin:tiny-ko", "--backend", "hf", "--mode", "cpt,sft,bare",
        "--steps", "3", "--warmup", "1", "--seq-len", "128", "--batch-size", "2",
        "--peak-tflops", "0.1", "--json-out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert json.loads(proc.stdout) == rows  # stdout carries only the JSON document
    assert [r["mode"] for r in rows] == ["cpt", "sft", "bare"]
    for r in rows:
        assert r["backend"] == "hf" and r["lora"] == "lora" and r["parameters"] == TINY_PARAMETERS
        assert r["nonpad_tokens_per_second"] <= r["tokens_per_second"]
        assert r["mfu"] == 6 * TINY_PARAMETERS * r["nonpad_tokens_per_second"] / 0.1e12
        assert r["step_seconds"] > 0 and r["peak_memory_gib"] is None  # no GPU here
    cpt, sft, bare = rows
    # CPT blocks and the bare loop's random ids are full: 3 steps x 2 rows x 128 tokens, no padding.
    assert cpt["tokens_per_second"] * cpt["step_seconds"] * 3 == pytest.approx(3 * 2 * 128)
    assert cpt["tokens_per_second"] == cpt["nonpad_tokens_per_second"]
    assert bare["tokens_per_second"] == bare["nonpad_tokens_per_second"]
    # Chats of half to full length are padded to the longest of the batch.
    assert sft["nonpad_tokens_per_second"] < sft["tokens_per_second"]
    assert bare["first_loss"] > 0 and bare["last_loss"] > 0
    assert "backend" in proc.stderr and "MFU" in proc.stderr  # the rich table


def test_bench_rejects_bad_arguments_before_loading(cli) -> None:
    proc = cli("bench", "--model", "builtin:tiny-ko", "--mode", "cpt,dpo")
    assert proc.returncode == 2 and "--mode 'cpt,dpo'" in proc.stderr
    proc = cli("bench", "--model", "/nonexistent/model")
    assert proc.returncode == 2 and "/nonexistent/model" in proc.stderr and "qwen2.5-7b" in proc.stderr
    proc = cli("bench", "--model", "builtin:tiny-ko", "--set", "sft.pakcing=true")
    assert proc.returncode == 2 and "sft.pakcing" in proc.stderr


def test_bench_reports_a_failed_backend(cli, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = cli("bench", "--model", "builtin:tiny-ko", "--backend", "unsloth", "--json-out", str(out))
    assert proc.returncode == 1
    assert "model.backend is 'unsloth' but no CUDA device is visible" in proc.stderr
    [row] = json.loads(out.read_text())
    assert row["backend"] == "unsloth" and row["error"].startswith("worker exited with code 2")


def test_named_shapes_match_qwen25_parameter_counts(tmp_path: Path) -> None:
    from transformers import Qwen2Config

    expected = {"qwen2.5-0.5b": 494_032_768, "qwen2.5-1.5b": 1_543_714_304, "qwen2.5-7b": 7_615_616_512}
    for name, shape in SHAPES.items():
        folder = tmp_path / name
        Qwen2Config(**shape).save_pretrained(folder)
        assert count_parameters(str(folder)) == expected[name], name
