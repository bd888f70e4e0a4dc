"""The stage trainers' own behaviour (train.trainer.StageTrainerMixin) on the tiny model: what the host reads back
from the device during a step, the counts and metrics that are logged anyway, train mode, NaN losses."""

from __future__ import annotations

import json
import math
import traceback
from pathlib import Path
from typing import Any

import pytest
import torch

SFT_DATA = {"data": {"sources": [{"path": "builtin:sft-ko"}]}}
# every way a tensor's value reaches Python; on a GPU each one waits for the device
HOST_READS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__")


def sft_trainer(write_config, tmp_path: Path, training: dict[str, Any], name: str = "sft-dir") -> tuple[Any, Any]:
    """(stage config, the SFT stage's trainer) on builtin:sft-ko."""
    from datasets import Dataset

    from korean_llm.config import load_config
    from korean_llm.data import RejectLog, collect_rows, sft_row
    from korean_llm.pipeline.artifacts import StageDir
    from korean_llm.stages import sft
    from korean_llm.train.models import init_point, load_for_training

    cfg = load_config(write_config("sft", {"lora": {"r": 4}, **SFT_DATA, "training": training}), env={})
    loaded = load_for_training(cfg, init_point(cfg))
    sdir = StageDir(tmp_path / name, "sft")
    sdir.prepare()
    rows = collect_rows(cfg.data, sft_row(None), RejectLog())
    return cfg, sft.build_trainer(cfg, loaded, Dataset.from_list(rows), sdir)


@pytest.mark.slow
def test_stage_trainer_reads_tokens_seen_back_only_to_log_or_save_and_counts_parameters_once(
    tiny_model: Path, write_config, tmp_path: Path
) -> None:
    from transformers import TrainerCallback

    training = {"max_steps": 6, "per_device_train_batch_size": 3, "logging_steps": 3, "save_steps": 4}
    cfg, trainer = sft_trainer(write_config, tmp_path, training)
    sdir_checkpoints = Path(trainer.args.output_dir)
    assert trainer.args.optim == "adamw_torch_fused"  # both backends; Unsloth's configs would pick 8-bit AdamW
    collate, batches = trainer.data_collator, []

    def counting(features):
        batch = collate(features)
        batches.append(int(batch["attention_mask"].sum()))
        return batch

    trainer.data_collator = counting
    seen: list[tuple[int, int, bool]] = []
    counted = []
    count_parameters = trainer.model.num_parameters
    trainer.model.num_parameters = lambda **kw: counted.append(kw) or count_parameters(**kw)

    class Watch(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            seen.append((state.global_step, state.num_input_tokens_seen, trainer._pending_tokens is None))

    trainer.add_callback(Watch())
    walks = []
    module_train = torch.nn.Module.train

    def train(module, mode=True):
        if module is trainer.model:
            walks.append(mode)
        return module_train(module, mode)

    torch.nn.Module.train = train
    try:
        trainer.train()
        # train mode is set by walking the modules once (transformers would walk them at each of the 6 steps) ...
        assert walks == [True]
        # ... and reaches every module: after loading, the root can claim train mode while the base model's are in eval
        assert all(m.training for m in trainer.model.modules())
        trainer.model.eval()  # as an evaluation leaves it: the next step walks again
        trainer.training_step(trainer.model, next(iter(trainer.get_train_dataloader())))
        assert walks == [True, False, True] and all(m.training for m in trainer.model.modules())
    finally:
        torch.nn.Module.train = module_train
    # the host reads the count back only at the log of step 3 and the save of step 4 (both after on_step_end)
    assert [s[1] for s in seen] == [0, 0, 0, sum(batches[:3]), sum(batches[:4]), sum(batches[:4])]
    assert not any(s[2] for s in seen)
    assert trainer.state.num_input_tokens_seen == sum(batches[:6]) and trainer._pending_tokens is None
    saved = json.loads((sdir_checkpoints / "checkpoint-4" / "trainer_state.json").read_text())
    assert saved["num_input_tokens_seen"] == sum(batches[:4])  # flushed before the checkpoint was written
    logged = [h["num_input_tokens_seen"] for h in trainer.state.log_history if "loss" in h]
    assert logged == [sum(batches[:3]), sum(batches[:6])]
    # FLOPs as transformers counts them (6 x parameters without embeddings x tokens), the parameters counted once
    assert counted == [{"exclude_embeddings": True}]
    ids = 3 * cfg.model.max_seq_length
    assert trainer.floating_point_ops({"input_ids": torch.zeros(3, cfg.model.max_seq_length)}) == 6 * ids * (
        count_parameters(exclude_embeddings=True)
    )


@pytest.mark.slow
def test_a_nan_step_loss_shows_in_the_log(tiny_model: Path, write_config, tmp_path: Path) -> None:
    from datasets import Dataset

    from korean_llm.config import load_config
    from korean_llm.pipeline.artifacts import StageDir
    from korean_llm.stages import cpt
    from korean_llm.train.models import init_point, load_for_training

    over = {"lora": {"r": 4}, "training": {"max_steps": 3, "per_device_train_batch_size": 2, "logging_steps": 1}}
    cfg = load_config(write_config("cpt", over), env={})
    loaded = load_for_training(cfg, init_point(cfg))
    sdir = StageDir(tmp_path / "cpt-dir", "cpt")
    sdir.prepare()
    blocks = cpt.pack_blocks(
        Dataset.from_list([{"text": "대한민국은 민주공화국이다. " * 40}] * 8),
        loaded.tokenizer,
        32,
        cpt.separator_id(loaded.tokenizer, None),
        1,
    )
    trainer = cpt.build_trainer(cfg, loaded, blocks, sdir)
    compute_loss = trainer.compute_loss

    def nan_at_step_two(*args, **kwargs):
        loss = compute_loss(*args, **kwargs)
        return loss * float("nan") if trainer.state.global_step == 1 else loss

    trainer.compute_loss = nan_at_step_two
    trainer.train()
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    # not replaced by the running mean (transformers' logging_nan_inf_filter): a diverged step is visible
    assert math.isfinite(logged[0]) and math.isnan(logged[1]), logged


class HostReads:
    """Counts a tensor's values reaching Python (HOST_READS) in the training loop's own code while `on` is set.

    Reads inside a module's forward (transformers' attention-mask checks, TRL's chunked loss) are the model's and
    happen in the bare loop too; they are not counted."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.on, self.where = False, []
        for name in HOST_READS:
            original = getattr(torch.Tensor, name)

            def read(tensor, *args, _original=original, _name=name):
                if self.on:
                    stack = traceback.extract_stack()[:-1]
                    if not any(f.filename.endswith("torch/nn/modules/module.py") for f in stack):
                        self.where.append((_name, [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in stack[-4:]]))
                return _original(tensor, *args)

            monkeypatch.setattr(torch.Tensor, name, read)


@pytest.mark.slow
def test_sft_steps_read_nothing_back_from_the_device_between_logs(
    tiny_model: Path, write_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import TrainerCallback

    training = {"max_steps": 6, "per_device_train_batch_size": 3, "logging_steps": 3}
    _, trainer = sft_trainer(write_config, tmp_path, training)
    reads, per_step = HostReads(monkeypatch), []

    class Watch(TrainerCallback):  # a step: from its first batch to on_step_end (the logging comes after)
        def on_step_begin(self, args, state, control, **kw):
            reads.on, reads.where = True, []

        def on_step_end(self, args, state, control, **kw):
            reads.on = False
            per_step.append(reads.where)

    trainer.add_callback(Watch())
    trainer.train()
    assert per_step == [[]] * 6, per_step  # TRL's compute_loss alone reads 5 values per step
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 2 and all(0 <= h["mean_token_accuracy"] <= 1 and h["entropy"] > 0 for h in logged)


@pytest.mark.slow
def test_deferred_sft_metrics_match_trl_per_step(tiny_model: Path, write_config, tmp_path: Path) -> None:
    import copy

    from trl.trainer.sft_trainer import SFTTrainer as TRLSFTTrainer

    training = {"max_steps": 3, "per_device_train_batch_size": 3, "logging_steps": 1}
    _, ours = sft_trainer(write_config, tmp_path, training)
    theirs = TRLSFTTrainer(
        model=copy.deepcopy(ours.model),
        args=copy.deepcopy(ours.args),
        train_dataset=ours.train_dataset,
        processing_class=ours.processing_class,
    )
    assert ours._defers_sft_metrics(ours.model.train(), {"attention_mask": None})
    assert not hasattr(theirs, "_defers_sft_metrics")
    ours.train()
    theirs.train()
    mine = [h for h in ours.state.log_history if "loss" in h]
    trl = [h for h in theirs.state.log_history if "loss" in h]
    assert len(mine) == len(trl) == 3
    for a, b in zip(mine, trl, strict=True):
        assert a["num_tokens"] == b["num_tokens"] and a["num_input_tokens_seen"] == b["num_input_tokens_seen"]
        assert a["entropy"] == pytest.approx(b["entropy"], rel=1e-5)
        assert a["mean_token_accuracy"] == pytest.approx(b["mean_token_accuracy"], rel=1e-5)
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)


@pytest.mark.slow
def test_a_step_that_leaves_train_mode_and_asks_for_it_again_gets_it(
    tiny_model: Path, write_config, tmp_path: Path
) -> None:
    training = {"max_steps": 3, "per_device_train_batch_size": 3, "logging_steps": 3}
    _, trainer = sft_trainer(write_config, tmp_path, training)
    compute_loss, modes = trainer.compute_loss, []

    def generate_then_train(model, inputs, *args, **kwargs):  # what generating inside a step does
        if trainer.state.global_step == 1:  # the second step: the shadowed model.train() is in place
            model.eval()
            model.train()
            modes.append(all(m.training for m in model.modules()))
        return compute_loss(model, inputs, *args, **kwargs)

    trainer.compute_loss = generate_then_train
    trainer.train()
    assert modes == [True]  # back in train mode for this step's forward and backward, not only from the next step


@pytest.mark.parametrize(("method", "once"), [("dpo", True), ("grpo", False)])
def test_grpo_asserts_train_mode_at_every_step(
    method: str, once: bool, tiny_model: Path, write_config, tmp_path: Path
) -> None:
    from korean_llm.config import load_config
    from korean_llm.data import RejectLog
    from korean_llm.pipeline.artifacts import StageDir
    from korean_llm.stages import rlhf
    from korean_llm.train.models import init_point, load_for_training

    data = {"dpo": "builtin:preference-ko", "grpo": "builtin:grpo-prompts-ko"}[method]
    over = {"lora": {"r": 4}, "rlhf": {"method": method}, "data": {"sources": [{"path": data}]}}
    cfg = load_config(write_config("rlhf", over), env={})
    rows = rlhf.training_rows(cfg, RejectLog())
    sdir = StageDir(tmp_path / "rlhf-dir", "rlhf")
    sdir.prepare()
    trainer = rlhf.build_trainer(cfg, load_for_training(cfg, init_point(cfg)), rows, sdir)
    # GRPO generates inside its training step, and generation switches modes: transformers' per-step walk stays
    assert trainer.walk_train_mode_once is once


@pytest.mark.slow
def test_sft_metrics_are_deferred_only_over_trl_and_transformers_own_compute_loss(
    tiny_model: Path, write_config, tmp_path: Path
) -> None:
    from korean_llm.train.trainer import StageTrainerMixin

    _, trainer = sft_trainer(write_config, tmp_path, {"max_steps": 1})
    batch = {"attention_mask": None}
    assert trainer._defers_sft_metrics(trainer.model.train(), batch)
    base = type(trainer).__mro__[2]  # TRL's SFTTrainer

    class Rewritten(base):  # as Unsloth's generated trainer: its own compute_loss
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    class Ours(StageTrainerMixin, Rewritten):
        pass

    trainer.__class__ = Ours
    assert not trainer._defers_sft_metrics(trainer.model, batch)
    trainer.__class__ = type("Eval", (StageTrainerMixin, base), {})
    assert not trainer._defers_sft_metrics(trainer.model.eval(), batch)  # evaluation keeps TRL's path
