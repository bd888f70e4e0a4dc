"""The vocab stage in the pipeline: chart DAG, subword-mean init, bits per character, CPT's embedding warm-up
(resume and SIGTERM across the switch), and the whole local DAG with the step on."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from .chart.rendered import helm_template, load_all
from .conftest import REPO, run_cli

V = REPO / "values"


def _dag(wt: dict[str, Any]) -> dict[str, list[str]]:
    templates = {t["name"]: t for t in wt["spec"]["templates"]}
    return {t["name"]: t.get("dependencies", []) for t in templates[wt["spec"]["entrypoint"]]["dag"]["tasks"]}


def _by(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def test_chart_puts_vocab_between_preprocess_and_cpt_only_when_enabled() -> None:
    off = load_all(helm_template([V / "7b.yaml"]))
    assert "vocab" not in _dag(_by(off, "WorkflowTemplate", "korean-llm-qwen7b"))
    assert "vocab.yaml" not in _by(off, "ConfigMap", "korean-llm-qwen7b")["data"]

    on = load_all(helm_template([V / "7b.yaml"], sets=["stageDefaults.vocab.enabled=true"]))
    wt = _by(on, "WorkflowTemplate", "korean-llm-qwen7b")
    dag = _dag(wt)
    assert dag["vocab"] == ["preprocess"] and dag["cpt"] == ["vocab"]
    step = next(t for t in wt["spec"]["templates"] if t["name"] == "vocab")
    assert "resource" not in step  # a container step, no PyTorchJob
    assert step["container"]["command"][:6] == [
        "python",
        "-m",
        "korean_llm",
        "vocab",
        "--config",
        "/etc/korean-llm/vocab.yaml",
    ]
    assert {"name": "STAGE", "value": "vocab"} in step["container"]["env"]
    data = _by(on, "ConfigMap", "korean-llm-qwen7b")["data"]
    vocab, cpt = yaml.safe_load(data["vocab.yaml"]), yaml.safe_load(data["cpt.yaml"])
    assert "previous_stage" not in vocab["run"]  # it extends the base model
    assert vocab["data"]["sources"] == [{"path": "{data_dir}/processed/cpt"}]
    assert cpt["run"]["previous_stage"] == "vocab"


def test_subword_mean_init_tied_and_untied(tiny_model: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

    from korean_llm.stages.vocab.embeddings import embeddings_tied, extend_embeddings

    tied = AutoModelForCausalLM.from_pretrained(tiny_model)
    old = tied.get_input_embeddings().weight.detach().clone()
    pieces = [[5, 6], [7, 8, 9], [300]]
    info = extend_embeddings(tied, [3000, 3001, 3002], pieces, pad_to_multiple_of=64)
    emb = tied.get_input_embeddings().weight
    assert info == {"rows_before": 3000, "rows_after": 3008, "tied_embeddings": True}
    assert tied.config.vocab_size == 3008 and embeddings_tied(tied)
    assert torch.equal(emb[:3000], old)  # existing rows untouched
    for row, p in zip((3000, 3001, 3002), pieces, strict=True):
        assert torch.allclose(emb[row], old[p].mean(0))
    assert tied.get_output_embeddings().weight.data_ptr() == emb.data_ptr()

    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=200,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        tie_word_embeddings=False,
    )
    untied = Qwen2ForCausalLM(cfg)
    ids = torch.tensor([[1, 2, 3, 4]])
    before_logits = untied(input_ids=ids).logits.detach()
    inp, out = (m.weight.detach().clone() for m in (untied.get_input_embeddings(), untied.get_output_embeddings()))
    assert not torch.equal(inp, out)
    info = extend_embeddings(untied, [200, 201], [[10, 11], [12]], pad_to_multiple_of=None)
    assert info == {"rows_before": 200, "rows_after": 202, "tied_embeddings": False}
    new_in, new_out = untied.get_input_embeddings().weight, untied.get_output_embeddings().weight
    assert torch.allclose(new_in[200], inp[[10, 11]].mean(0)) and torch.allclose(new_out[200], out[[10, 11]].mean(0))
    assert torch.allclose(new_out[201], out[12]) and not torch.allclose(new_out[201], new_in[201])
    # the old vocabulary's logits are what they were
    assert torch.allclose(untied(input_ids=ids).logits[..., :200].detach(), before_logits, atol=1e-6)


def test_bits_per_character_counts_the_scored_text(tiny_model: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from korean_llm.stages.evaluate import scoring

    model, tok = AutoModelForCausalLM.from_pretrained(tiny_model), AutoTokenizer.from_pretrained(tiny_model)
    text = "대한민국은 민주공화국이다. Emoji 👍🏽 and code: x = f(1)\n제2조 국민의 요건은 법률로 정한다."
    ids = tok(text, add_special_tokens=False)["input_ids"]
    first = tok.decode(ids[:1])
    ppl = scoring.perplexity(model, tok, [text], max_length=512, max_tokens=10_000, batch_size=2)
    assert ppl.tokens == len(ids) - 1
    assert ppl.characters == len(text) - len(first)  # all but the unscored first token
    assert ppl.bytes == len(text.encode()) - len(first.encode())
    nats = math.log(ppl.perplexity) * ppl.tokens
    assert ppl.bits_per_character == pytest.approx(nats / math.log(2) / ppl.characters)
    assert ppl.bits_per_byte == pytest.approx(nats / math.log(2) / ppl.bytes)
    # windows: every character is counted once, whatever the window cuts
    windowed = scoring.perplexity(model, tok, [text], max_length=7, max_tokens=10_000, batch_size=2)
    n_windows = math.ceil(len(ids) / 7)
    starts = [tok.decode(ids[i : i + 1]) for i in range(0, len(ids), 7)]
    assert windowed.characters <= len(text) - len(starts[0]) and windowed.tokens == len(ids) - n_windows


CPT_WARM: dict[str, Any] = {
    "lora": {"r": 4, "alpha": 8, "train_embeddings": True, "embedding_learning_rate": 5e-4},
    "data": {"sources": [{"path": "builtin:korean-corpus"}]},
    "cpt": {"embedding_warmup_steps": 12, "embedding_warmup_learning_rate": 5e-3},
    "training": {
        "max_steps": 12,
        "learning_rate": 1e-3,
        "per_device_train_batch_size": 2,
        "logging_steps": 1,
        "save_steps": 4,
    },
}
VOCAB = {
    "data": {"sources": [{"path": "builtin:korean-corpus"}]},
    "vocab": {"max_new_tokens": 150, "korean_vocab_size": 4000, "min_frequency": 3},
}


def _start(stage: str, config: Path, events: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "runtime"), "KOREAN_LLM_EVENTS": str(events)}
    return subprocess.Popen(
        [sys.executable, "-m", "korean_llm", stage, "--config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _wait(events: Path, proc: subprocess.Popen[str], phase: int, step: int, timeout: float = 300) -> None:
    """Until the `phase`-th training run (1: warm-up, 2: main) of the process has logged `step`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        starts = 0
        for ev in _events(events):
            starts += ev.get("type") == "start"
            if starts == phase and ev.get("type") == "log" and ev.get("step", 0) >= step:
                return
        time.sleep(0.05)
    raise AssertionError(f"phase {phase} step {step} not reached")


@pytest.mark.slow
def test_vocab_then_cpt_warmup_survives_sigterm_in_both_phases(tmp_path: Path, write_config) -> None:
    from safetensors.torch import load_file

    from korean_llm.pipeline.artifacts import latest_checkpoint, read_manifest

    out = tmp_path / "output" / "tiny-ko" / "t"
    done = run_cli("vocab", "--config", str(write_config("vocab", VOCAB)))
    assert done.returncode == 0, done.stderr[-3000:]
    vocab = read_manifest(out / "vocab", "vocab")
    first, end = vocab.extra["new_token_ids"]
    assert (first, vocab.metrics["tokens_added"]) == (3000, end - 3000) and 0 < end - first <= 150
    assert vocab.tokenizer_hash and vocab.tokenizer_hash != vocab.extra["base_tokenizer_hash"]
    assert vocab.metrics["corpus/extended/tokens"] < vocab.metrics["corpus/base/tokens"]
    added = json.loads((out / "vocab" / "tokens_added.json").read_text())
    assert [a["id"] for a in added] == list(range(first, end)) and all(len(a["pieces"]) >= 2 for a in added)

    cfg = write_config("cpt", {**CPT_WARM, "run": {"previous_stage": "vocab"}})
    warm_dir = out / "cpt.partial" / "embedding_warmup.partial"
    # SIGTERM in the warm-up: a checkpoint of the warm-up, exit 143, nothing published
    proc = _start("cpt", cfg, tmp_path / "ev1.jsonl")
    _wait(tmp_path / "ev1.jsonl", proc, 1, 5)
    proc.send_signal(signal.SIGTERM)
    log, _ = proc.communicate(timeout=180)
    assert proc.returncode == 143, log
    assert latest_checkpoint(warm_dir / "checkpoints") is not None and not (warm_dir / "warm_rows.safetensors").exists()
    # restart: the warm-up resumes from its checkpoint, then the main phase starts; SIGTERM there
    proc = _start("cpt", cfg, tmp_path / "ev2.jsonl")
    _wait(tmp_path / "ev2.jsonl", proc, 2, 5)
    proc.send_signal(signal.SIGTERM)
    log, _ = proc.communicate(timeout=180)
    assert proc.returncode == 143, log
    warmed = out / "cpt.partial" / "embedding_warmup"
    assert "resuming cpt from" in log and (warmed / "warm_rows.safetensors").is_file()
    assert not warm_dir.exists() and not (warmed / "checkpoints").exists()  # removed once the rows were saved
    assert latest_checkpoint(out / "cpt.partial" / "checkpoints") is not None
    # restart: the warm-up is not run again, the main phase resumes and finishes
    proc = _start("cpt", cfg, tmp_path / "ev3.jsonl")
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, log
    assert [e["max_steps"] for e in _events(tmp_path / "ev3.jsonl") if e["type"] == "start"] == [12]
    cpt = read_manifest(out / "cpt", "cpt")
    assert cpt.metrics["embedding_warmup_resumed"] and cpt.metrics["global_step"] == 12
    assert cpt.metrics["resumed_from_step"] and cpt.metrics["resumed_from_step"] >= 4
    assert cpt.extra["base_weights"] == str(out / "vocab" / "model") and cpt.tokenizer_hash == vocab.tokenizer_hash

    # only the new rows moved in the warm-up; the main phase continues from them
    rows = load_file(str(out / "cpt" / "embedding_warmup" / "warm_rows.safetensors"))
    base = load_file(str(out / "vocab" / "model" / "model.safetensors"))["model.embed_tokens.weight"]
    assert rows["input"].shape == (end - first, base.shape[1]) and "output" not in rows  # tied: one matrix
    assert not rows["input"].allclose(base[first:end])


@pytest.mark.slow
def test_whole_local_dag_with_the_vocab_step(tmp_path: Path) -> None:
    fast = [
        "--set",
        "models[0].stages.cpt.config.training.max_steps=6",
        "--set",
        "models[0].stages.cpt.config.cpt.embedding_warmup_steps=3",
        "--set",
        "models[0].stages.sft.config.training.num_train_epochs=1",
        "--set",
        "models[0].stages.rlhf.config.training.max_steps=4",
        "--set",
        "models[0].stages.evaluate.config.evaluate.max_new_tokens=4",
        "--set-json",  # a float: --set passes "1.5" as a string (Helm's strvals), --set-json keeps the number
        "models[0].stages.evaluate.config.evaluate.gate.max_bits_per_character_ratio=1.5",
    ]
    result = run_cli(
        "run", "-f", str(V / "local-vocab.yaml"), "--runs-dir", str(tmp_path), "--run-id", "v", *fast, timeout=1800
    )
    assert result.returncode == 0, result.stderr[-4000:]
    out = tmp_path / "v" / "output" / "tiny-ko" / "v"
    m = {
        s: json.loads((out / s / "manifest.json").read_text())
        for s in ("vocab", "cpt", "sft", "rlhf", "evaluate", "deploy")
    }
    rows_after = m["vocab"]["metrics"]["embedding_rows_after"]
    assert m["cpt"]["init_from"] == str(out / "vocab")
    for stage in ("cpt", "sft", "rlhf"):  # every adapter sits on the resized model, with the extended tokenizer
        assert m[stage]["extra"]["base_weights"] == str(out / "vocab" / "model"), stage
        assert m[stage]["tokenizer_hash"] == m["vocab"]["tokenizer_hash"], stage
    report = json.loads((out / "evaluate" / "eval.json").read_text())
    cand, base = report["candidate"]["scores"], report["baseline"]["scores"]
    assert cand["bits_per_character"] < base["bits_per_character"]
    assert {c["check"] for c in report["checks"]} >= {"max_bits_per_character_ratio"}
    fert = report["fertility"]
    assert fert["candidate"]["tokens"] < fert["base"]["tokens"]
    assert fert["candidate"]["characters"] == fert["base"]["characters"]
    # the release: merged 16-bit weights with the resized embeddings and the extended tokenizer
    release = tmp_path / "v" / "output" / "tiny-ko" / "releases" / "current"
    config = json.loads((release / "config.json").read_text())
    assert config["vocab_size"] == rows_after
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(release)
    first, end = m["vocab"]["extra"]["new_token_ids"]
    assert len(tok) == end and tok.convert_ids_to_tokens(first) is not None
