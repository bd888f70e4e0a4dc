"""`korean-llm bench` on the CPU: the real CPT/SFT trainer path and the bare loop, with figures that add up."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from korean_llm.bench.throughput import SHAPES, count_parameters

TINY_PARAMETERS = 284_736  # builtin:tiny-ko: 2 layers of width 64, 3003-token vocabulary, tied embeddings


@pytest.mark.slow
def test_bench_runs_stage_code_paths_on_cpu(cli, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = cli(
        "bench", "--model", "builtin:tiny-ko", "--backend", "hf", "--mode", "cpt,sft,dpo,bare",
        "--steps", "3", "--warmup", "1", "--seq-len", "128", "--batch-size", "2",
        "--peak-tflops", "0.1", "--json-out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert json.loads(proc.stdout) == rows  # stdout carries only the JSON document
    assert [r["mode"] for r in rows] == ["bare", "cpt", "sft", "dpo"]  # the bare loop first, before any Trainer
    assert [r["runs_before"] for r in rows] == [0, 1, 2, 3]  # one process, one model load
    for r in rows:
        assert r["backend"] == "hf" and r["lora"] == "lora" and r["parameters"] == TINY_PARAMETERS
        assert r["world_size"] == 1 and r["strategy"] is None
        assert r["nonpad_tokens_per_second"] <= r["tokens_per_second"]
        flops = 8 if r["mode"] == "dpo" else 6  # DPO adds the reference model's forward pass
        assert r["mfu"] == pytest.approx(flops * TINY_PARAMETERS * r["nonpad_tokens_per_second"] / 0.1e12)
        assert r["step_seconds"] > 0 and r["peak_memory_gib"] is None  # no GPU here
    bare, cpt, sft, dpo = rows
    # CPT blocks and the bare loop's random ids are full: 3 steps x 2 rows x 128 tokens, no padding.
    assert cpt["tokens_per_second"] * cpt["step_seconds"] * 3 == pytest.approx(3 * 2 * 128)
    assert cpt["tokens_per_second"] == cpt["nonpad_tokens_per_second"]
    assert bare["tokens_per_second"] == bare["nonpad_tokens_per_second"]
    # Chats of half to full length are padded to the longest of the batch.
    assert sft["nonpad_tokens_per_second"] < sft["tokens_per_second"]
    # DPO: chosen and rejected of each pair are two padded sequences of at most --seq-len tokens.
    # tokens/s x s/step gives the step's token count back only to float rounding (512.00000000000006 at the cap)
    dpo_tokens = round(dpo["tokens_per_second"] * dpo["step_seconds"] * 3, 6)
    assert 3 * 2 * 2 * 64 < dpo_tokens <= 3 * 2 * 2 * 128
    assert bare["first_loss"] > 0 and bare["last_loss"] > 0
    assert "backend" in proc.stderr and "MFU" in proc.stderr  # the rich table


@pytest.mark.slow
def test_batch_sweep_with_the_bare_loop_loads_afresh_per_size(cli, tmp_path: Path) -> None:
    """A Trainer leaves the loaded model changed: every batch size's bare loop must come before any Trainer."""
    out = tmp_path / "bench.json"
    proc = cli(
        "bench", "--model", "builtin:tiny-ko", "--backend", "hf", "--mode", "cpt,bare", "--batch-size", "1,2",
        "--steps", "2", "--warmup", "0", "--seq-len", "64", "--peak-tflops", "0.1", "--json-out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert [(r["mode"], r["batch_size"], r["runs_before"]) for r in rows] == [
        ("bare", 1, 0),
        ("cpt", 1, 1),
        ("bare", 2, 0),
        ("cpt", 2, 1),
    ]
    # each size's tokens: 2 steps x batch x 64
    assert [round(r["tokens_per_second"] * r["step_seconds"] * 2) for r in rows] == [128, 128, 256, 256]


def test_bench_rejects_bad_arguments_before_loading(cli) -> None:
    proc = cli("bench", "--model", "builtin:tiny-ko", "--mode", "cpt,orpo")
    assert proc.returncode == 2 and "--mode 'cpt,orpo'" in proc.stderr
    proc = cli("bench", "--model", "/nonexistent/model")
    assert proc.returncode == 2 and "/nonexistent/model" in proc.stderr and "qwen2.5-7b" in proc.stderr
    proc = cli("bench", "--model", "builtin:tiny-ko", "--set", "sft.pakcing=true")
    assert proc.returncode == 2 and "sft.pakcing" in proc.stderr


@pytest.mark.slow
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


@pytest.mark.slow
def test_bench_under_torchrun_sums_tokens_over_ranks(tmp_path: Path) -> None:
    """Two gloo processes as the operator launches them: one report, tokens of both ranks, MFU against both peaks."""
    import os
    import subprocess
    import sys

    from .conftest import REPO
    from .test_distributed import free_port

    out = tmp_path / "bench.json"
    env = {**os.environ, "PYTHONPATH": str(REPO / "runtime"), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
        "-m", "korean_llm", "bench", "--model", "builtin:tiny-ko", "--backend", "hf", "--mode", "cpt",
        "--steps", "3", "--warmup", "1", "--seq-len", "128", "--batch-size", "2", "--peak-tflops", "0.1",
        "--json-out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [row] = json.loads(out.read_text())
    assert json.loads(proc.stdout) == [row]  # rank 1 prints nothing
    assert row["world_size"] == 2 and row["strategy"] == "ddp"
    # 3 measured steps x 2 ranks x 2 blocks x 128 tokens
    assert row["tokens_per_second"] * row["step_seconds"] * 3 == pytest.approx(3 * 2 * 2 * 128)
    assert row["mfu"] == pytest.approx(6 * TINY_PARAMETERS * row["nonpad_tokens_per_second"] / (2 * 0.1e12))
    assert proc.stderr.count("korean-llm bench") == 1  # one table


@pytest.mark.slow
def test_bench_refuses_the_bare_loop_under_torchrun(cli) -> None:
    proc = cli("bench", "--model", "builtin:tiny-ko", "--mode", "sft,bare", env={"WORLD_SIZE": "2", "RANK": "1"})
    assert proc.returncode == 2 and "--mode bare is a single-process loop" in proc.stderr


def test_synthetic_text_is_never_blank(tiny_model: Path) -> None:
    import random

    from transformers import AutoTokenizer

    from korean_llm.bench.throughput import _random_text

    tok = AutoTokenizer.from_pretrained(tiny_model)
    blank = [i for i in range(len(tok)) if tok.decode([i]) and not tok.decode([i]).strip()]
    word = next(i for i in range(len(tok)) if tok.decode([i]).strip())
    assert blank, "the builtin tokenizer has whitespace tokens"
    rng = random.Random(0)
    # one-token texts from a pool that is mostly whitespace: a blank draw is drawn again (a chat with an empty
    # message is refused by the SFT rows' validation)
    texts = [_random_text(tok, rng, 1, blank[:1] * 9 + [word]) for _ in range(20)]
    assert all(t.strip() for t in texts)


@pytest.mark.slow
def test_bench_on_documents_reports_characters_per_second(cli, tmp_path: Path, tiny_model: Path) -> None:
    """CPT on `--data` documents: the documents' characters per token under the model's tokenizer turn the
    tokens/s into characters/s, the figure that compares runs with different vocabularies."""
    from transformers import AutoTokenizer

    from korean_llm.builtin import corpus_texts

    docs = corpus_texts()[:3]
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in docs), encoding="utf-8")
    out = tmp_path / "bench.json"
    proc = cli(
        "bench", "--model", "builtin:tiny-ko", "--backend", "hf", "--mode", "cpt", "--data", str(data),
        "--steps", "2", "--warmup", "0", "--seq-len", "128", "--batch-size", "2", "--peak-tflops", "0.1",
        "--json-out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    [row] = json.loads(out.read_text())
    tok = AutoTokenizer.from_pretrained(tiny_model)
    tokens = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in docs)
    assert row["characters_per_token"] == pytest.approx(sum(map(len, docs)) / tokens)
    assert row["characters_per_second"] == pytest.approx(row["nonpad_tokens_per_second"] * row["characters_per_token"])
    assert "characters per token" in proc.stderr and "characters/s" in proc.stderr


def test_tokenizer_option_goes_with_a_named_shape(cli, tmp_path: Path, tiny_model: Path) -> None:
    proc = cli("bench", "--model", "builtin:tiny-ko", "--tokenizer", str(tiny_model))
    assert proc.returncode == 2 and "--tokenizer goes with a named shape" in proc.stderr
    proc = cli("bench", "--model", "qwen2.5-0.5b", "--tokenizer", str(tmp_path))
    assert proc.returncode == 2 and f"--tokenizer '{tmp_path}': expected a folder holding tokenizer.json" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_shape_built_with_a_larger_tokenizer_holds_every_token(tmp_path: Path, tiny_model: Path) -> None:
    """A tokenizer past the published vocabulary (what the vocab stage makes) grows the embeddings to the next
    multiple of 64, as the vocab stage pads; one within it keeps the published size. Each tokenizer gets its own
    cached shape folder."""
    from transformers import AutoConfig, AutoTokenizer

    from korean_llm.bench.throughput import build_shape, shape_vocab_size, tokenizer_digest

    assert shape_vocab_size(SHAPES["qwen2.5-7b"], 151_665) == 152_064  # Qwen2.5's own tokenizer: published size
    assert shape_vocab_size(SHAPES["qwen2.5-7b"], 165_078) == 165_120  # 13,413 tokens added
    small = {**SHAPES["qwen2.5-0.5b"], "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1}
    small.update(num_attention_heads=2, num_key_value_heads=1, vocab_size=2900)
    build_shape(tmp_path / "shape", small, tokenizer_dir=str(tiny_model))
    config = AutoConfig.from_pretrained(tmp_path / "shape")
    tok = AutoTokenizer.from_pretrained(tmp_path / "shape")
    assert len(tok) == 3000 and config.vocab_size == 3008 and config.eos_token_id == tok.eos_token_id
    other = tmp_path / "other"
    shutil.copytree(tiny_model, other)  # the same files: the same shape folder
    assert tokenizer_digest(str(other)) == tokenizer_digest(str(tiny_model))
    (other / "tokenizer.json").write_text((other / "tokenizer.json").read_text().replace("<|endoftext|>", "<|eot|>"))
    assert tokenizer_digest(str(other)) != tokenizer_digest(str(tiny_model))
