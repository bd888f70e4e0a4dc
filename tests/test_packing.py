"""SFT packing on the CPU with the tiny model: packed losses equal unpacked ones per conversation, assistant-only
masking holds at every boundary, `sft.packing: auto` says what it chose, token accounting adds up, and every
packing / padding-free combination runs or is refused with exit 2.

The packed batch is what TRL 1.14.2 builds ('bfd' packing, `DataCollatorForLanguageModeling(padding_free=True)`:
one flattened row, position ids restarting per conversation); transformers 5.17 keeps the conversations apart from
those position ids (`masking_utils.find_packed_sequence_indices`)."""

from __future__ import annotations

import itertools
import json
import os
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from korean_llm.config import DEFAULT_SYSTEM_PROMPT, build_config
from korean_llm.data import sft_row
from korean_llm.errors import ConfigError
from korean_llm.pipeline.artifacts import StageDir
from korean_llm.train import packing

# Short Korean chats shaped like real SFT rows: single-turn, multi-turn, an own system prompt, one answer that is a
# single token long, a long answer, a question with no Hangul.
CHATS: list[dict[str, Any]] = [
    {"messages": [{"role": "user", "content": "대한민국의 수도는?"}, {"role": "assistant", "content": "서울입니다."}]},
    {
        "messages": [
            {"role": "user", "content": "헌법 제1조를 알려 주세요."},
            {"role": "assistant", "content": "대한민국은 민주공화국이다. 대한민국의 주권은 국민에게 있다."},
            {"role": "user", "content": "조금 더 자세히요."},
            {"role": "assistant", "content": "모든 권력은 국민으로부터 나온다는 뜻입니다."},
        ]
    },
    {
        "messages": [
            {"role": "system", "content": "간결하게 답하세요."},
            {"role": "user", "content": "김치찌개에 뭐가 들어가요?"},
            {"role": "assistant", "content": "김치, 돼지고기, 두부, 파가 들어갑니다."},
        ]
    },
    {
        "messages": [
            {"role": "user", "content": "네 아니면 아니오로만 답해요. 물은 젖었나요?"},
            {"role": "assistant", "content": "네"},
        ]
    },
    {
        "messages": [
            {"role": "user", "content": "국회의 권한을 설명해 주세요."},
            {
                "role": "assistant",
                "content": "국회는 법률을 제정하고 예산안을 심의·확정하며 국정을 감사합니다. " * 4,
            },
        ]
    },
    {"messages": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4입니다."}]},
]


def _cfg(tmp_path: Path, packing_setting: Any = "auto", **training: Any) -> Any:
    data = {
        "stage": "sft",
        "run": {"model_name": "tiny-ko", "run_id": "t", "output_root": str(tmp_path), "data_root": str(tmp_path)},
        "model": {"base_model": "builtin:tiny-ko", "backend": "hf", "max_seq_length": 256},
        "sft": {"packing": packing_setting},
        "training": {"per_device_train_batch_size": 4, "max_steps": 1, "save_strategy": "no", **training},
        "metrics": {"port": 0},
    }
    return build_config(data, source="test.yaml", env={})


def _loaded(cfg: Any) -> Any:
    from korean_llm.train.models import init_point, load_for_training

    return load_for_training(cfg, init_point(cfg))


def _trainer(tmp_path: Path, setting: bool, loaded: Any, rows: list[dict[str, Any]]) -> Any:
    from datasets import Dataset

    from korean_llm.stages import sft

    cfg = _cfg(tmp_path, setting)
    sdir = StageDir(tmp_path / f"sft-{setting}", "sft")
    sdir.prepare()
    return sft.build_trainer(cfg, loaded, Dataset.from_list(rows), sdir)


def _token_losses(model: Any, batch: dict[str, Any]) -> Any:
    """Per-token cross-entropy of the next token (label -100: not scored), shape (rows, tokens - 1)."""
    import torch

    with torch.no_grad():
        inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "position_ids")}
        logits = model(**inputs).logits.float()
    labels = batch["labels"][:, 1:]
    flat = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100, reduction="none"
    )
    return flat.view(labels.shape), labels


@pytest.fixture(scope="module")
def packed_and_unpacked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same chats through the stage's trainer packed and unpacked: per-conversation mean losses and labels."""
    import torch

    tmp = tmp_path_factory.mktemp("packing")
    loaded = _loaded(_cfg(tmp))
    model = loaded.model.eval()
    torch.manual_seed(0)
    rows = [sft_row(DEFAULT_SYSTEM_PROMPT)(None, c) for c in CHATS]  # type: ignore[arg-type]
    out: dict[str, Any] = {"rows": rows, "tokenizer": loaded.tokenizer}
    for setting in (True, False):
        trainer = _trainer(tmp, setting, loaded, rows)
        out[f"padding_free_{setting}"] = trainer.padding_free
        features = list(trainer.train_dataset)
        per_conv: dict[tuple[int, ...], tuple[float, list[int]]] = {}
        if setting:
            batch = trainer.data_collator(features)  # every packed row flattened into one, as in training
            assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch
            losses, labels = _token_losses(model, batch)
            pos = batch["position_ids"][0]
            starts = [*(pos == 0).nonzero().flatten().tolist(), len(pos)]
            out["packed_batch"] = batch
            for a, b in itertools.pairwise(starts):
                ids = tuple(batch["input_ids"][0, a:b].tolist())
                scored = labels[0, a : b - 1] != -100  # the predictions made inside this conversation
                conv_losses = losses[0, a : b - 1][scored]
                per_conv[ids] = (float(conv_losses.mean()), batch["labels"][0, a:b].tolist())
                # no prediction from this conversation's last token into the next one is scored
                if b < len(pos):
                    assert labels[0, b - 1] == -100
        else:
            for feature in features:
                batch = trainer.data_collator([feature])
                losses, labels = _token_losses(model, batch)
                scored = labels[0] != -100
                ids = tuple(batch["input_ids"][0].tolist())
                per_conv[ids] = (float(losses[0][scored].mean()), batch["labels"][0].tolist())
        out[setting] = per_conv
    return out


@pytest.mark.slow
def test_packed_losses_equal_unpacked_per_conversation(packed_and_unpacked: dict[str, Any]) -> None:
    packed, unpacked = packed_and_unpacked[True], packed_and_unpacked[False]
    assert packed_and_unpacked["padding_free_True"] is True  # 'bfd' packing is padding-free in TRL 1.14.2
    assert packed_and_unpacked["padding_free_False"] is False
    assert set(packed) == set(unpacked) and len(packed) == len(CHATS)  # every chat once, none cut or merged
    diffs = {ids: abs(packed[ids][0] - unpacked[ids][0]) for ids in packed}
    # float32 on the CPU: the same function up to summation order (1e-5 relative)
    assert max(diffs.values()) < 1e-4, sorted(diffs.values())[-3:]


@pytest.mark.slow
def test_assistant_only_masking_holds_at_every_boundary(packed_and_unpacked: dict[str, Any]) -> None:
    packed, unpacked = packed_and_unpacked[True], packed_and_unpacked[False]
    tok = packed_and_unpacked["tokenizer"]
    end = tok.convert_tokens_to_ids("<|im_end|>")
    answers = {m["content"] + "<|im_end|>" for c in CHATS for m in c["messages"] if m["role"] == "assistant"}
    for ids, (_, labels) in packed.items():
        assert labels == unpacked[ids][1]  # the same tokens scored packed and unpacked
        assert labels[0] == -100  # a conversation's first token is never a target
        # the scored tokens are exactly the assistant turns, each up to and including its end-of-turn token
        runs, current = [], []
        for token, label in zip(ids, labels, strict=True):
            if label != -100:
                assert label == token
                current.append(token)
            elif current:
                runs.append(current)
                current = []
        if current:
            runs.append(current)
        assert runs and all(run[-1] == end for run in runs)
        assert {tok.decode(run) for run in runs} <= answers
    assert sum(1 for c in CHATS for m in c["messages"] if m["role"] == "assistant") == sum(
        sum(1 for i, x in enumerate(labels) if x != -100 and (i == 0 or labels[i - 1] == -100))
        for _, labels in packed.values()
    )


@pytest.mark.slow
def test_token_accounting_adds_up(packed_and_unpacked: dict[str, Any], tmp_path: Path) -> None:
    rows, tok = packed_and_unpacked["rows"], packed_and_unpacked["tokenizer"]
    batch = packed_and_unpacked["packed_batch"]
    system = packing.system_turn_tokens(tok, rows)
    # the default prompt's turn, rendered alone, is a prefix of every row that got it
    default_turn = tok.apply_chat_template([{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}], tokenize=False)
    assert all(tok.apply_chat_template(r["messages"], tokenize=False).startswith(default_turn) for r in rows[:2])
    assert system[0] == len(tok(default_turn, add_special_tokens=False)["input_ids"]) and system[2] < system[0]

    from datasets import Dataset

    ds = Dataset.from_dict({"input_ids": batch["input_ids"].tolist(), "labels": batch["labels"].tolist()})
    choice = packing.PackingChoice(True, True, "bfd", "true", "test")
    acc = packing.token_accounting(ds, system, choice, 4, 256, 0)
    assert acc["tokens"] == batch["input_ids"].numel()
    assert acc["loss_tokens"] == int((batch["labels"] != -100).sum())
    assert acc["system_prompt_tokens"] == sum(system)
    assert acc["system_prompt_tokens"] + acc["prompt_tokens"] + acc["loss_tokens"] == acc["tokens"]
    assert acc["system_prompt_share"] + acc["prompt_share"] + acc["loss_share"] == pytest.approx(1, abs=1e-3)
    assert acc["padding_share"] == 0.0  # padding-free
    assert "system prompt" in packing.describe(acc)


def test_padding_share_of_unpacked_batches() -> None:
    # batches in a seeded random order, each padded to its longest row
    assert packing.padded_share([10, 10, 10, 10], 2, 100, 0) == 0.0
    assert packing.padded_share([100, 10], 2, 100, 0) == pytest.approx(1 - 110 / 200)
    assert packing.padded_share([300, 10], 2, 100, 0) == pytest.approx(1 - 110 / 200)  # rows cut at max_length
    assert packing.percentile([5, 1, 3, 2, 4], 50) == 3 and packing.percentile(list(range(1, 101)), 99) == 99


def test_auto_packs_short_chats_where_attention_is_varlen(tmp_path: Path) -> None:
    short, long = [40] * 50 + [250] * 2, [200, 240, 250]  # max_seq_length 256 below
    cfg = _cfg(tmp_path, "auto")
    hf_sdpa = packing.choose(cfg, short, "hf")
    assert not hf_sdpa.packing and hf_sdpa.setting == "auto" and "dense block-diagonal" in hf_sdpa.reason
    flex = _cfg(tmp_path, "auto")
    flex.model.attn_implementation = "flash_attention_2"
    chosen = packing.choose(flex, short, "hf")
    assert chosen.packing and chosen.padding_free and chosen.strategy == "bfd"
    assert chosen.reason.startswith("auto: packed, median 40 tokens of max_seq_length 256")
    assert "padding unpacked at batch 4" in chosen.reason
    too_long = packing.choose(flex, long, "hf")
    assert not too_long.packing and "median is over 25%" in too_long.reason
    forced = packing.choose(_cfg(tmp_path, True), long, "hf")
    assert forced.packing and forced.setting == "true"
    off = packing.choose(_cfg(tmp_path, False), short, "hf")
    assert not off.packing and not off.padding_free


def test_a_packed_choice_on_unsloth_says_its_steps_run_the_eager_layer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unsloth 2026.10.9 runs packed batches through the eager decoder layer (models/_block_compile.py): the reason
    of a packed choice there says so and what helps (more tokens per step); unpacked and HF choices say nothing."""
    varlen = "aten flash varlen (torch 2.11.0+cu130; checked, relative error 3.0e-03)"  # what the H200 run logged
    monkeypatch.setattr(packing, "packed_attention", lambda backend, impl: (True, varlen))
    short = [40] * 50
    eager = "Unsloth runs packed batches through its eager decoder layer"
    for setting in ("auto", True):
        chosen = packing.choose(_cfg(tmp_path, setting), short, "unsloth")
        assert chosen.packing and varlen in chosen.reason and eager in chosen.reason
        assert "a larger per_device_train_batch_size" in chosen.reason
    assert "nsloth" not in packing.choose(_cfg(tmp_path, False), short, "unsloth").reason
    assert "nsloth" not in packing.choose(_cfg(tmp_path, "auto"), short, "hf").reason


def test_unsloth_block_compile_false_is_in_the_environment_before_unsloth_patches_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unsloth 2026.10.9 reads UNSLOTH_BLOCK_COMPILE in `_block_compile._enabled()` when get_peft_model patches the
    model: a stand-in `unsloth` module (FastLanguageModel's from_pretrained / get_peft_model signatures) records the
    variable at both calls."""
    from korean_llm.train import models

    seen: list[tuple[str, str | None]] = []

    class FastLanguageModel:
        @staticmethod
        def from_pretrained(**kwargs: Any) -> tuple[object, object]:
            seen.append(("from_pretrained", os.environ.get("UNSLOTH_BLOCK_COMPILE")))
            return object(), object()

        @staticmethod
        def get_peft_model(model: object, **kwargs: Any) -> object:
            seen.append(("get_peft_model", os.environ.get("UNSLOTH_BLOCK_COMPILE")))
            return model

    monkeypatch.setitem(sys.modules, "unsloth", types.SimpleNamespace(FastLanguageModel=FastLanguageModel))
    monkeypatch.setenv("UNSLOTH_BLOCK_COMPILE", "1")
    monkeypatch.delenv("UNSLOTH_BLOCK_COMPILE")  # recorded: what the load sets is undone after the test
    cfg = _cfg(tmp_path, True)
    init = models.init_point(cfg)
    loaded = models._load_unsloth(cfg, init)
    assert seen == [("from_pretrained", None), ("get_peft_model", None)] and loaded.notes == []
    assert loaded.block_compile is True
    seen.clear()
    cfg.model.unsloth_block_compile = False
    loaded = models._load_unsloth(cfg, init)
    assert seen == [("from_pretrained", "0"), ("get_peft_model", "0")]
    assert "block compile off (model.unsloth_block_compile false)" in loaded.notes[0]
    assert loaded.block_compile is False
    cfg.model.unsloth_block_compile = True  # set by hand for the process (Unsloth's `_enabled()`): off, recorded so
    for name, value in (("UNSLOTH_BLOCK_COMPILE", "0"), ("UNSLOTH_COMPILE_DISABLE", "partial")):
        monkeypatch.setenv("UNSLOTH_BLOCK_COMPILE", "1")
        monkeypatch.setenv(name, value)
        assert models._load_unsloth(cfg, init).block_compile is False, name
    monkeypatch.setenv("UNSLOTH_COMPILE_DISABLE", "0")
    assert models._load_unsloth(cfg, init).block_compile is True


@pytest.mark.parametrize(
    ("setting", "training", "message"),
    [
        (False, {"padding_free": True}, "training.padding_free true needs packing"),
        (True, {"padding_free": False}, "always flattens the batch without padding"),
        ("auto", {"packing_strategy": "wrapped"}, "'wrapped' cuts chats"),
        (True, {"packing": True}, "training.packing is set by the stage"),
        (True, {"packing_strategy": "fifo"}, "expected one of bfd, bfd_split"),
    ],
)
def test_impossible_combinations_are_refused(
    tmp_path: Path, setting: Any, training: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        packing.check_options(_cfg(tmp_path, setting, **training))
    assert err.value.exit_code == 2 and "test.yaml" in str(err.value)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("setting", "training"),
    [
        (True, {}),
        (True, {"padding_free": True}),
        (True, {"packing_strategy": "bfd_split"}),
        (False, {}),
        (False, {"padding_free": False}),
        ("auto", {}),
        ("auto", {"padding_free": True}),
        ("auto", {"padding_free": False}),
    ],
)
def test_every_other_combination_trains(tmp_path: Path, setting: Any, training: dict[str, Any]) -> None:
    from datasets import Dataset

    from korean_llm.observe.metrics import StageMetrics
    from korean_llm.stages import sft
    from korean_llm.train.loop import train

    cfg = _cfg(tmp_path, setting, **training)
    packing.check_options(cfg)
    loaded = _loaded(cfg)
    sdir = StageDir(tmp_path / "sft", "sft")
    sdir.prepare()
    rows = [sft_row(DEFAULT_SYSTEM_PROMPT)(None, c) for c in CHATS]  # type: ignore[arg-type]
    trainer = sft.build_trainer(cfg, loaded, Dataset.from_list(rows), sdir)
    summary = train(trainer, cfg, sdir, StageMetrics(cfg))
    assert summary["global_step"] == 1 and summary["train_loss"] > 0
    assert trainer.padding_free == trainer.packing_choice.padding_free


def test_padding_free_without_packing_exits_2_before_loading(cli, write_config, tmp_path: Path) -> None:
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in CHATS), encoding="utf-8")
    path = write_config(
        "sft",
        {"sft": {"packing": False}, "training": {"padding_free": True}, "data": {"sources": [{"path": str(data)}]}},
    )
    proc = cli("sft", "--config", str(path))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "training.padding_free true needs packing" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "output").exists() or not any((tmp_path / "output").rglob("adapter"))


@pytest.mark.parametrize(
    ("stage", "training", "message"),
    [
        ("cpt", {"padding_free": True}, "training.padding_free is not supported by the cpt stage: its blocks are"),
        ("cpt", {"packing": True}, "training.packing is set by the stage"),
        ("rlhf", {"padding_free": True}, "training.padding_free is not supported by the rlhf stage: TRL 1.14.2's"),
    ],
)
def test_cpt_and_rlhf_refuse_padding_options_with_exit_2_before_loading(
    stage: str,
    training: dict[str, Any],
    message: str,
    write_config,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The refusal comes at the start of the stage: the model loader is never called (it fails the test if it is)."""
    import importlib

    from korean_llm.cli import main
    from korean_llm.train import models

    def no_load(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"{stage}: the model was loaded before the packing options were checked")

    monkeypatch.setattr(importlib.import_module(f"korean_llm.stages.{stage}"), "load_for_training", no_load)
    monkeypatch.setattr(models, "load_for_training", no_load)
    if stage == "cpt":
        corpus = tmp_path / "corpus.jsonl"
        corpus.write_text(json.dumps({"text": "대한민국은 민주공화국이다. " * 20}, ensure_ascii=False) + "\n")
        data = str(corpus)
    else:
        data = "builtin:preference-ko"
    path = write_config(stage, {"training": training, "data": {"sources": [{"path": data}]}})
    assert main([stage, "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err and "Traceback" not in err
    assert not list((tmp_path / "output").rglob("manifest.json"))


def test_rlhf_manifest_says_preference_pairs_are_padded_and_the_trainer_pads(
    write_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manifest's `padding_free` reason is what the trainer does: TRL 1.14.2's DPOTrainer keeps
    `padding_free` False (trl/trainer/dpo_trainer.py: set back to False with a warning when asked for)."""
    from korean_llm.config import load_config
    from korean_llm.stages import rlhf

    built: list[Any] = []
    real = rlhf.build_trainer

    def keep(*args: Any, **kwargs: Any) -> Any:
        built.append(real(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(rlhf, "build_trainer", keep)
    overrides = {
        "lora": {"r": 4},
        "data": {"sources": [{"path": "builtin:preference-ko", "max_rows": 4}]},
        "training": {"max_steps": 1, "per_device_train_batch_size": 4, "gradient_checkpointing": False},
    }
    manifest = rlhf.main(load_config(write_config("rlhf", overrides), env={}))
    assert manifest.extra["padding_free"] == packing.PREFERENCE_PADDING
    assert manifest.extra["padding_free"].startswith("padded: TRL 1.14.2's DPOTrainer turns padding_free off")
    [trainer] = built
    assert any(c.__name__ == "DPOTrainer" for c in type(trainer).__mro__)
    assert trainer.padding_free is False and trainer.args.padding_free is False
    assert manifest.metrics["global_step"] == 1


@pytest.mark.slow
def test_sft_stage_records_packing_and_token_shares(cli, write_config, tmp_path: Path) -> None:
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in CHATS * 3), encoding="utf-8")
    path = write_config(
        "sft",
        {
            "sft": {"packing": True},
            "training": {"max_steps": 2, "per_device_train_batch_size": 2, "logging_steps": 1},
            "data": {"sources": [{"path": str(data)}]},
        },
    )
    proc = cli("sft", "--config", str(path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    [manifest_path] = (tmp_path / "output").rglob("sft/manifest.json")
    manifest = json.loads(manifest_path.read_text())
    choice = manifest["extra"]["packing"]
    assert choice["packing"] is True and choice["padding_free"] is True and choice["setting"] == "true"
    assert "transformers sdpa" in choice["reason"]
    m = manifest["metrics"]
    assert m["system_prompt_share"] + m["prompt_share"] + m["loss_share"] == pytest.approx(1, abs=1e-3)
    assert 0 < m["loss_share"] < 0.5 and m["system_prompt_share"] > 0.2  # short chats: the default prompt dominates
    assert m["padding_share"] == 0.0 and m["length_p50"] <= m["length_p90"] <= m["length_p99"]
    assert manifest["extra"]["token_accounting"]["conversations"] == 3 * len(CHATS)
    assert "sft packing: sft.packing true" in proc.stderr and "sft tokens:" in proc.stderr


def test_short_chat_generator_is_realistic_and_deterministic(tmp_path: Path, tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    from korean_llm.bench import shortchats

    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    shortchats.write(a, 400, seed=3)
    shortchats.write(b, 400, seed=3)
    assert a.read_bytes() == b.read_bytes()
    tok = AutoTokenizer.from_pretrained(tiny_model)
    rows = [sft_row(DEFAULT_SYSTEM_PROMPT)(None, json.loads(x)) for x in a.read_text(encoding="utf-8").splitlines()]
    lengths = packing.conversation_lengths(tok, rows)
    summary = packing.length_summary(lengths)
    assert 70 <= summary["p50"] <= 130, summary  # about 100 tokens with the default system prompt
    assert summary["p99"] > 3 * summary["p50"] and summary["max"] <= 2048 + 64, summary  # a long tail, cut near 2k
    multi = sum(1 for r in rows if sum(m["role"] == "user" for m in r["messages"]) > 1) / len(rows)
    own_system = sum(1 for r in rows if r["messages"][0]["content"] != DEFAULT_SYSTEM_PROMPT) / len(rows)
    assert 0.15 < multi < 0.35 and 0.04 < own_system < 0.2
    hangul = sum(any("가" <= ch <= "힣" for ch in m["content"]) for r in rows for m in r["messages"])
    assert hangul / sum(len(r["messages"]) for r in rows) > 0.9  # real Korean text


@pytest.mark.slow
def test_bench_measures_the_users_own_rows(cli, tmp_path: Path) -> None:
    from korean_llm.bench import shortchats

    data = tmp_path / "chats.jsonl"
    shortchats.write(data, 80, seed=1)
    out = tmp_path / "bench.json"
    proc = cli(
        "bench", "--model", "builtin:tiny-ko", "--backend", "hf", "--mode", "sft", "--data", str(data),
        "--max-rows", "60", "--packing", "true,false", "--steps", "2", "--warmup", "0", "--seq-len", "512",
        "--batch-size", "4", "--peak-tflops", "0.1", "--json-out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    packed, unpacked = json.loads(out.read_text())
    for r in (packed, unpacked):
        assert r["data"] == str(data) and r["lengths"]["rows"] == 60  # --max-rows
        assert r["lengths"]["p50"] <= r["lengths"]["p90"] <= r["lengths"]["p99"] <= r["lengths"]["max"]
        assert r["nonpad_tokens_per_second"] > 0 and 0 < r["loss_share"] < 1
    assert packed["packing"] is True and packed["padding_share"] == 0.0  # padding-free
    assert packed["block_compile"] is None and unpacked["block_compile"] is None  # Unsloth's only
    assert unpacked["packing"] is False and unpacked["padding_share"] > 0.2  # short chats padded to the longest
    assert unpacked["nonpad_tokens_per_second"] < unpacked["tokens_per_second"]
    assert "p50" in proc.stderr and "system prompt" in proc.stderr
    proc = cli("bench", "--model", "builtin:tiny-ko", "--mode", "sft", "--data", str(tmp_path / "missing.jsonl"))
    assert proc.returncode == 2 and "missing.jsonl" in proc.stderr
    proc = cli("bench", "--model", "builtin:tiny-ko", "--mode", "sft", "--max-rows", "5")
    assert proc.returncode == 2 and "--max-rows needs --data" in proc.stderr


EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "data"


@pytest.mark.slow
def test_bench_data_takes_the_source_forms_the_stages_read(cli, tmp_path: Path) -> None:
    """`bench --data` on a CP949 Q/A CSV with CRLF line ends: mapped on the command line (`--map`, `--encoding`,
    `--format`), and by its name in the `datasets:` registry of a values file (`-f`)."""
    qa = EXAMPLES / "qa_cp949.csv"
    common = ("--model", "builtin:tiny-ko", "--backend", "hf", "--mode", "sft", "--steps", "1", "--warmup", "0")
    common += (
        "--seq-len",
        "256",
        "--batch-size",
        "4",
        "--peak-tflops",
        "0.1",
        "--set",
        "data.max_rejected_fraction=0.2",
    )
    mapped_out, named_out = tmp_path / "mapped.json", tmp_path / "named.json"
    proc = cli(
        "bench", *common, "--data", str(qa), "--map", "user=Q", "--map", "assistant=A", "--encoding", "auto",
        "--format", "csv", "--json-out", str(mapped_out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "line 2 is not valid UTF-8 but is valid CP949: file read as cp949" in proc.stderr
    assert "bench --data: 1 of 12 rows rejected" in proc.stderr  # the row with an empty answer
    [mapped] = json.loads(mapped_out.read_text())
    assert mapped["data"] == str(qa) and mapped["lengths"]["rows"] == 11
    assert mapped["nonpad_tokens_per_second"] > 0 and 0 < mapped["loss_share"] < 1
    assert mapped["system_prompt_share"] > 0.2  # short Q/A rows: the stage's default prompt is a large share

    values = Path(__file__).resolve().parents[1] / "values" / "local-csv.yaml"
    proc = cli("bench", *common, "--data", "qa-ko", "-f", str(values), "--max-rows", "6", "--json-out", str(named_out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    [named] = json.loads(named_out.read_text())
    assert named["data"] == "qa-ko" and named["lengths"]["rows"] == 6  # --max-rows over the registry entry
    # The registry entry maps its own system prompt (a shorter one than the default): a smaller share.
    assert 0 < named["system_prompt_share"] < mapped["system_prompt_share"]


def test_bench_data_options_are_checked_before_loading(cli) -> None:
    qa = str(EXAMPLES / "qa_cp949.csv")
    bench = ("bench", "--model", "builtin:tiny-ko", "--mode", "sft")
    cases = [
        (("--data", qa, "--map", "user=Question", "--map", "assistant=A"), "mapped column 'Question' (for user)"),
        (("--data", qa, "--map", "user=Q", "--map", "assistant=A", "--mode", "cpt"), "not read from text rows"),
        (("--data", qa, "--map", "user"), "--map 'user': expected FIELD=COLUMN"),
        (("--data", qa, "--encoding", "latin1"), "key 'encoding': Input should be 'auto'"),
        (("--data", "qb-ko", "-f", "values/local-csv.yaml"), "unknown dataset 'qb-ko' (datasets: dialogues-ko, qa-ko"),
        (("--map", "user=Q", "--encoding", "cp949"), "--encoding, --map needs --data"),
    ]
    for extra, message in cases:
        proc = cli(*bench, *extra)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, (extra, proc.stderr)
        assert "bench result" not in proc.stderr  # refused before a worker started
