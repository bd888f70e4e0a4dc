"""RLHF stage end to end on the tiny model: DPO after SFT raises the margin, GRPO raises the Korean reward,
ORPO and KTO train and save, bad rows are quarantined with their reasons."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from korean_llm.builtin import fixture_path, tiny_model_path
from korean_llm.config import load_config
from korean_llm.data import RejectLog
from korean_llm.errors import ConfigError
from korean_llm.pipeline.artifacts import read_manifest
from korean_llm.stages import rlhf, sft
from korean_llm.stages.rlhf.rewards import KoreanReward

pytestmark = pytest.mark.slow  # every test here trains a model


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """The tiny model's ops are too small to gain from threads; on a shared CPU extra threads only spin."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


BAD_ROWS = [
    {"prompt": "서울은?", "chosen": "수도입니다.", "rejected": "수도입니다."},
    {"prompt": "서울은?", "chosen": "수도입니다."},
    {"prompt": "", "chosen": "수도입니다.", "rejected": "몰라요."},
]


def load_policy(stage_dir: Path) -> tuple[Any, Any]:
    """Base weights + the stage's adapter, and the stage's tokenizer."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(tiny_model_path())
    model = PeftModel.from_pretrained(base, str(stage_dir / "adapter")).eval()
    return model, AutoTokenizer.from_pretrained(stage_dir / "tokenizer")


def completion_logp(model: Any, tok: Any, prompt: list[dict[str, str]], answer: list[dict[str, str]]) -> float:
    """Sum of log-probabilities of the answer's tokens after the chat-formatted prompt (as TRL scores them)."""
    prefix = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template(prompt + answer, tokenize=False)
    prefix_ids = tok(prefix, add_special_tokens=False)["input_ids"]
    ids = tok(full, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, :-1]
    logps = torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]
    return float(logps[len(prefix_ids) - 1 :].sum())


def mean_margin(model: Any, tok: Any, pairs: list[dict[str, Any]]) -> float:
    return sum(
        completion_logp(model, tok, p["prompt"], p["chosen"]) - completion_logp(model, tok, p["prompt"], p["rejected"])
        for p in pairs
    ) / len(pairs)


def test_dpo_after_sft_raises_the_chosen_rejected_margin(write_config: Callable[..., Path]) -> None:
    sft_cfg = write_config(
        "sft",
        {
            "data": {"sources": [{"path": "builtin:sft-ko"}]},
            "training": {"max_steps": 3, "per_device_train_batch_size": 8, "learning_rate": 0.002},
        },
    )
    sft.main(load_config(sft_cfg, env={}))
    cfg = load_config(
        write_config(
            "rlhf",
            {
                "run": {"previous_stage": "sft"},
                "data": {"sources": [{"path": "builtin:preference-ko"}]},
                "training": {
                    "max_steps": 8,
                    "per_device_train_batch_size": 8,
                    "learning_rate": 0.005,
                    "logging_steps": 2,
                    "gradient_checkpointing": False,
                },
            },
        ),
        env={},
    )
    pairs = rlhf.training_rows(cfg, RejectLog())
    before = mean_margin(*load_policy(cfg.run.stage_dir("sft")), pairs)

    manifest = rlhf.main(cfg)

    after = mean_margin(*load_policy(cfg.stage_dir), pairs)
    assert after > before + 1.0, (before, after)
    assert manifest.init_from == str(cfg.run.stage_dir("sft"))
    assert manifest.extra["method"] == "dpo"
    m = manifest.metrics
    assert m["global_step"] == 8
    assert m["reward_margin"] > m["reward_margin_first"]
    assert {"reward_chosen", "reward_rejected", "reward_accuracy"} <= set(m)
    # TRL's frozen copy of the SFT adapter (the reference) is not saved with the result.
    assert not (cfg.stage_dir / "adapter" / "ref").exists()
    assert read_manifest(cfg.stage_dir, "rlhf").adapter_path == "adapter"


def sample_korean_reward(model: Any, tok: Any, prompts: list[list[dict[str, str]]], reward: Any) -> float:
    """Mean reward of 4 sampled 16-token answers per prompt, with a fixed sampling seed."""
    torch.manual_seed(0)
    tok.padding_side = "left"
    texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**enc, do_sample=True, max_new_tokens=16, num_return_sequences=4, top_k=0)
    answers = tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    scores = reward(None, answers)
    return sum(scores) / len(scores)


def test_grpo_raises_the_korean_response_reward(write_config: Callable[..., Path]) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # Strict setting (any foreign letter counts as another language) so that the random tiny model, which
    # already answers in mostly-Hangul tokens, has room to improve; full fine-tuning so the output
    # embeddings can move (LoRA alone barely changes the near-uniform distribution of a random model).
    # The length reward has weight 0: it is computed and logged but does not steer the run.
    rewards = [{"type": "korean", "min_hangul_share": 1.0}, {"type": "length", "weight": 0.0, "min_chars": 5}]
    cfg = load_config(
        write_config(
            "rlhf",
            {
                "lora": {"method": "full"},
                "rlhf": {"method": "grpo", "rewards": rewards},
                "data": {"sources": [{"path": "builtin:grpo-prompts-ko"}]},
                "training": {
                    "max_steps": 8,
                    "per_device_train_batch_size": 16,
                    "num_generations": 8,
                    "max_completion_length": 16,
                    "learning_rate": 0.05,
                    "lr_scheduler_type": "constant",
                    "logging_steps": 1,
                    "gradient_checkpointing": False,
                },
            },
        ),
        env={},
    )
    prompts = [r["prompt"] for r in rlhf.training_rows(cfg, RejectLog())]
    reward = KoreanReward(min_share=1.0, penalty=1.0)
    tok = AutoTokenizer.from_pretrained(tiny_model_path())
    before = sample_korean_reward(AutoModelForCausalLM.from_pretrained(tiny_model_path()), tok, prompts, reward)

    manifest = rlhf.main(cfg)

    trained = AutoModelForCausalLM.from_pretrained(cfg.stage_dir / "model")
    after = sample_korean_reward(trained, tok, prompts, reward)
    assert after > before + 0.15, (before, after)
    assert manifest.merged_path == "model"
    assert manifest.extra["reference"] == "none"  # GRPO's default beta 0: no reference model at all
    assert {"reward_korean_mean", "reward_korean_mean_first", "reward_length_mean", "reward_mean"} <= set(
        manifest.metrics
    )


@pytest.mark.parametrize("method", ["orpo", "kto"])
def test_orpo_and_kto_train_save_and_quarantine_bad_rows(
    method: str, tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in BAD_ROWS))
    cfg = load_config(
        write_config(
            "rlhf",
            {
                "rlhf": {"method": method},
                "data": {"sources": [{"path": "builtin:preference-ko"}, {"path": str(bad)}]},
                "training": {
                    "max_steps": 2,
                    "per_device_train_batch_size": 4,
                    "logging_steps": 1,
                    "gradient_checkpointing": False,
                },
            },
        ),
        env={},
    )
    manifest = rlhf.main(cfg)

    assert manifest.metrics["global_step"] == 2
    assert (cfg.stage_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert manifest.metrics["rows_rejected"] == 3
    n_pairs = len(fixture_path("preference_ko.jsonl").read_text().splitlines())
    assert manifest.metrics["examples"] == (2 * n_pairs if method == "kto" else n_pairs)  # KTO: pairs unpaired
    rejected = [json.loads(line) for line in (cfg.stage_dir / "rejected.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"]) for r in rejected] == [
        (1, "'chosen' and 'rejected' are identical"),
        (2, "missing field 'rejected'"),
        (3, "empty 'prompt'"),
    ]
    assert all(r["file"] == str(bad) for r in rejected)
    # ORPO logs the odds-ratio margin; KTO its KL estimate (and margins only for batches holding both labels).
    assert ("reward_margin" if method == "orpo" else "kl") in manifest.metrics


def test_dpo_with_a_separate_reference_model(tmp_path: Path, write_config: Callable[..., Path]) -> None:
    def config(reference: str, run_id: str) -> Any:
        overrides = {
            "run": {"run_id": run_id},
            "rlhf": {"reference_model": reference},
            "data": {"sources": [{"path": "builtin:preference-ko", "max_rows": 8}]},
            "training": {"max_steps": 1, "per_device_train_batch_size": 8, "gradient_checkpointing": False},
        }
        return load_config(write_config("rlhf", overrides, name=f"{run_id}.yaml"), env={})

    manifest = rlhf.main(config("builtin:tiny-ko", "ok"))
    assert manifest.extra["reference"] == "builtin:tiny-ko"
    assert manifest.metrics["global_step"] == 1
    with pytest.raises(ConfigError, match=r"key 'rlhf\.reference_model': cannot load the reference model"):
        rlhf.main(config(str(tmp_path / "missing-model"), "bad"))
