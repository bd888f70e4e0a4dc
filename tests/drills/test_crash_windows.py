"""Drill: crashes between the last checkpoint and the publish, and kill -9 mid-run. The published model and its
metrics are those of an uninterrupted run: no step trained twice ("step 13/12"), none lost, the true train_loss.

What is replayed here comes from transformers 5.17.0 `Trainer._inner_training_loop` (trainer.py): on resume it
restores `global_step` from trainer_state.json, skips `steps_trained_in_current_epoch` batches and then always runs
one optimizer step before looking at `should_training_stop`; `train_loss` is `_total_loss_scalar / global_step`
with `_total_loss_scalar` counted from 0 in each process.
"""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest

from korean_llm.pipeline.artifacts import checkpoint_step, latest_checkpoint

from .helpers import logged_steps, manifest_of, run_dir, start_stage, wait_for_step, with_training

MAX_STEPS = 12


def _run_to_end(config: Path, events: Path, *extra: str) -> str:
    proc = start_stage("cpt", config, events, *extra)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    return out


def _back_to_the_crash_window(stage: Path) -> None:
    """What a crash after the final checkpoint and before the rename leaves: the work folder with its checkpoints."""
    partial = stage.with_name("cpt.partial")
    stage.rename(partial)
    for name in ("manifest.json", "log_history.json"):
        (partial / name).unlink()
    for name in ("adapter", "tokenizer"):
        shutil.rmtree(partial / name)


@pytest.mark.slow
def test_restart_after_the_last_checkpoint_publishes_the_uninterrupted_model(tmp_path: Path, write_config) -> None:
    config = write_config("cpt", with_training(max_steps=MAX_STEPS))
    _run_to_end(config, tmp_path / "events1.jsonl")
    stage = run_dir(tmp_path) / "cpt"
    # what the uninterrupted run published
    ref_metrics = manifest_of(stage)["metrics"]
    ref_weights = (stage / "adapter" / "adapter_model.safetensors").read_bytes()
    ref_history = json.loads((stage / "log_history.json").read_text())
    _back_to_the_crash_window(stage)
    assert checkpoint_step(latest_checkpoint(stage.with_name("cpt.partial") / "checkpoints")) == MAX_STEPS  # type: ignore[arg-type]

    out = _run_to_end(config, tmp_path / "events2.jsonl")
    assert f"is at max_steps {MAX_STEPS}: nothing left to train" in out
    assert f"step {MAX_STEPS + 1}/" not in out
    metrics = manifest_of(stage)["metrics"]
    assert metrics["global_step"] == MAX_STEPS and metrics["trained_steps"] == 0
    assert metrics["resumed_from_step"] == MAX_STEPS
    assert (stage / "adapter" / "adapter_model.safetensors").read_bytes() == ref_weights
    assert abs(metrics["train_loss"] - ref_metrics["train_loss"]) < 1e-9 * ref_metrics["train_loss"]
    assert metrics["final_loss"] == ref_metrics["final_loss"] and metrics["first_loss"] == ref_metrics["first_loss"]
    published = json.loads((stage / "log_history.json").read_text())
    assert [h for h in published if "loss" in h] == [h for h in ref_history if "loss" in h]
    assert logged_steps(stage) == list(range(1, MAX_STEPS + 1))  # each step once in the published history


@pytest.mark.slow
def test_kill_9_mid_run_gives_the_true_train_loss(tmp_path: Path, write_config) -> None:
    config = write_config("cpt", with_training(max_steps=MAX_STEPS, save_steps=4))
    events = tmp_path / "events1.jsonl"
    proc = start_stage("cpt", config, events)
    wait_for_step(events, 6, proc)  # past checkpoint-4
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = latest_checkpoint(run_dir(tmp_path) / "cpt.partial" / "checkpoints")
    assert resumed is not None
    step = checkpoint_step(resumed)  # 4 or 8: where the kill landed depends on the machine's load
    assert 4 <= step < MAX_STEPS
    assert json.loads((resumed / "korean_llm_state.json").read_text())["global_step"] == step

    _run_to_end(config, tmp_path / "events2.jsonl")
    stage = run_dir(tmp_path) / "cpt"
    metrics = manifest_of(stage)["metrics"]
    assert metrics["global_step"] == MAX_STEPS and metrics["resumed_from_step"] == step
    assert metrics["trained_steps"] == MAX_STEPS - step
    assert logged_steps(stage) == list(range(1, MAX_STEPS + 1))  # no step lost, none doubled
    # logging_steps 1: the published history holds every step's loss; train_loss is their mean
    history = json.loads((stage / "log_history.json").read_text())
    losses = [h["loss"] for h in history if "loss" in h]
    true_mean = sum(losses) / len(losses)
    assert abs(metrics["train_loss"] - true_mean) < 1e-6 * true_mean
    # what transformers alone reports after this resume: the steps after it, divided by all 12
    transformers_alone = sum(losses[step:]) / MAX_STEPS
    assert abs(metrics["train_loss"] - transformers_alone) > 0.2 * true_mean
