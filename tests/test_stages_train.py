"""CPT and SFT on the tiny model: the loss falls, outputs chain, assistant-only masking, embedding learning rate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from korean_llm.cli import main

CPT = {
    "lora": {"r": 8, "alpha": 16, "train_embeddings": True, "embedding_learning_rate": 5e-4},
    "data": {"sources": [{"path": "builtin:korean-corpus"}]},
    "training": {
        "max_steps": 25,
        "learning_rate": 5e-3,
        "per_device_train_batch_size": 8,
        "logging_steps": 1,
        "save_steps": 100,
    },
}
SFT = {
    "run": {"previous_stage": "cpt"},
    "lora": {"r": 8, "alpha": 16},
    "data": {"sources": [{"path": "builtin:sft-ko"}]},
    "training": {
        "max_steps": 20,
        "learning_rate": 3e-3,
        "per_device_train_batch_size": 8,
        "logging_steps": 1,
        "save_steps": 100,
    },
}


def manifest(tmp_path: Path, stage: str) -> dict:
    return json.loads((tmp_path / "output" / "tiny-ko" / "t" / stage / "manifest.json").read_text())


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def losses(tmp_path: Path, stage: str) -> list[float]:
    hist = json.loads((tmp_path / "output" / "tiny-ko" / "t" / stage / "log_history.json").read_text())
    return [h["loss"] for h in hist if "loss" in h]


@pytest.fixture
def cpt_done(tmp_path: Path, write_config) -> Path:
    assert main(["cpt", "--config", str(write_config("cpt", CPT))]) == 0
    return tmp_path


@pytest.mark.slow
def test_cpt_lowers_the_loss_and_publishes_a_manifest(cpt_done: Path) -> None:
    tmp_path = cpt_done
    curve = losses(tmp_path, "cpt")
    assert len(curve) == 25
    assert mean(curve[-5:]) < mean(curve[:5]) - 0.2, curve
    m = manifest(tmp_path, "cpt")
    assert m["stage"] == "cpt" and m["status"] == "complete"
    assert m["adapter_path"] == "adapter" and m["metrics"]["global_step"] == 25
    assert m["metrics"]["blocks"] > 0 and m["tokenizer_hash"]
    stage_dir = tmp_path / "output" / "tiny-ko" / "t" / "cpt"
    assert (stage_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "output" / "tiny-ko" / "t" / "cpt.partial").exists()
    assert not (stage_dir / "checkpoints").exists()  # removed after success by default


@pytest.mark.slow
def test_sft_continues_from_cpt_and_lowers_the_loss(cpt_done: Path, write_config) -> None:
    tmp_path = cpt_done
    assert main(["sft", "--config", str(write_config("sft", SFT))]) == 0
    curve = losses(tmp_path, "sft")
    assert mean(curve[-5:]) < mean(curve[:5]) - 0.3, curve
    m = manifest(tmp_path, "sft")
    assert m["init_from"].endswith("/cpt")
    assert "continuing the adapter" in m["extra"]["notes"][0]
    assert m["metrics"]["conversations"] == 60


@pytest.mark.slow
def test_rerun_of_a_finished_stage_is_a_no_op(cpt_done: Path, write_config) -> None:
    before = manifest(cpt_done, "cpt")
    assert main(["cpt", "--config", str(write_config("cpt", CPT))]) == 0
    assert manifest(cpt_done, "cpt") == before


@pytest.mark.slow
def test_changed_config_on_a_finished_stage_is_refused(cpt_done: Path, write_config, capsys) -> None:
    changed = {**CPT, "training": {**CPT["training"], "learning_rate": 1e-3}}
    assert main(["cpt", "--config", str(write_config("cpt", changed))]) == 2
    assert "already finished with another config" in capsys.readouterr().err


def test_sft_masks_everything_but_assistant_turns(tiny_model: Path) -> None:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    msgs = [
        {"role": "system", "content": "한국어로 답하세요."},
        {"role": "user", "content": "수도는?"},
        {"role": "assistant", "content": "서울입니다."},
    ]
    args = SFTConfig(output_dir="/tmp/unused", assistant_only_loss=True, max_length=128, report_to=[], bf16=False)
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model),
        args=args,
        train_dataset=Dataset.from_list([{"messages": msgs}]),
        processing_class=tok,
    )
    row = trainer.train_dataset[0]
    trained = [t for t, lab in zip(row["input_ids"], row["labels"], strict=True) if lab != -100]
    assert tok.decode(trained) == "서울입니다.<|im_end|>"


@pytest.mark.slow
def test_embedding_learning_rate_gets_its_own_param_group(tiny_model: Path, write_config, tmp_path: Path) -> None:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from korean_llm.config import load_config
    from korean_llm.pipeline.artifacts import StageDir
    from korean_llm.train.args import build_args
    from korean_llm.train.models import init_point, load_for_training
    from korean_llm.train.trainer import stage_trainer

    cfg = load_config(write_config("cpt", CPT), env={})
    loaded = load_for_training(cfg, init_point(cfg))
    args = build_args(cfg, SFTConfig, StageDir(tmp_path, "cpt"), max_length=16)
    trainer = stage_trainer(SFTTrainer, 5e-4)(
        model=loaded.model,
        args=args,
        train_dataset=Dataset.from_list([{"input_ids": [1, 2, 3, 4]}]),
        processing_class=loaded.tokenizer,
    )
    opt = trainer.create_optimizer()
    lrs = sorted({g["lr"] for g in opt.param_groups})
    assert lrs == [5e-4, 5e-3]
    emb = next(g for g in opt.param_groups if g["lr"] == 5e-4)
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    assert all("embed_tokens" in names[id(p)] or "lm_head" in names[id(p)] for p in emb["params"])
