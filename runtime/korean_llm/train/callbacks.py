"""The callback every stage trainer carries: metrics, progress, checkpoint markers, SIGTERM and a lost lock."""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from korean_llm import dist
from korean_llm.console import stderr_console
from korean_llm.observe.events import emit_event
from korean_llm.observe.metrics import StageMetrics
from korean_llm.observe.tracking import log_step
from korean_llm.pipeline.artifacts import write_checkpoint_marker
from korean_llm.pipeline.locking import DirLock

log = logging.getLogger("korean_llm")
console = stderr_console()

# Written into every checkpoint next to trainer_state.json: the loss sum that transformers does not keep.
LOSS_STATE = "korean_llm_state.json"


class FinishedAtCheckpoint(Exception):
    """Raised from on_train_begin when the resumed checkpoint is already at max_steps."""


class LockLost(Exception):
    """Raised from the callback once the work folder's lock was taken over: training stops, nothing more is saved."""

    def __init__(self, step: int) -> None:
        super().__init__(f"lock lost at step {step}")
        self.step = step


class SigtermFlag:
    """SIGTERM sets `raised`; the callback then saves a checkpoint at the end of the step and stops."""

    def __init__(self) -> None:
        self.raised = False
        self._previous: Any = None

    def install(self) -> None:
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def _handle(self, signum: int, frame: Any) -> None:
        self.raised = True
        log.warning("SIGTERM: saving a checkpoint at the end of this step, then stopping")


def make_callbacks(
    metrics: StageMetrics, flag: SigtermFlag, stage: str, checksums: bool = True, lock: DirLock | None = None
) -> list[Any]:
    """The stage callback; `lock` is the work folder's lock (rank 0 holds it, None on the other ranks).

    A lock taken over by another process (this one stalled past lock.stale_seconds) stops training at the end of
    the step where it is seen, before the checkpoint that step would save: the new owner's checkpoints in the shared
    `<stage>.partial/` are not overwritten. The Trainer then raises `LockLost` (from on_epoch_end, the next hook
    after its step loop breaks), so neither the end-of-epoch save nor the end of training's checkpoint clean-up runs.
    """
    from transformers import TrainerCallback
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    class StageCallback(TrainerCallback):
        """Metrics, progress, checkpoint markers, SIGTERM and the lock in one place."""

        def __init__(self) -> None:
            self.started = time.time()
            self.start_step = 0
            self.start_tokens = 0
            self.progress: Progress | None = None
            self.task: Any = None
            self.lost_at: int | None = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.max_steps > 0 and state.global_step >= state.max_steps:
                # transformers 5.17.0 `_run_epoch` runs one optimizer step before it looks at should_training_stop:
                # resuming from the checkpoint taken at max_steps would train step max_steps + 1. The model already
                # holds that checkpoint's weights here (`_prepare_for_training` loaded them): stop before any step.
                raise FinishedAtCheckpoint()
            self.started = time.time()
            self.start_step = state.global_step
            self.start_tokens = state.num_input_tokens_seen or 0
            emit_event({"type": "start", "stage": stage, "step": state.global_step, "max_steps": state.max_steps})
            if console.is_terminal and dist.is_main():
                self.progress = Progress(
                    TextColumn(f"[bold]{stage}"),
                    BarColumn(),
                    TextColumn("{task.completed}/{task.total} steps {task.fields[info]}"),
                    TimeRemainingColumn(),
                    console=console,
                )
                self.progress.start()
                self.task = self.progress.add_task(stage, total=state.max_steps, completed=state.global_step, info="")

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            if self.progress is not None:
                self.progress.update(self.task, completed=state.global_step)
            lost = lock is not None and lock.taken_over()
            # one collective for both flags: every rank stops at the same step, or DDP would hang
            raised, lost_any = (n > 0 for n in dist.all_sum([int(flag.raised), int(lost)]))
            if lost_any:
                # transformers 5.17.0 trainer.py `_run_epoch`: on_step_end runs after DefaultFlowCallback's (which
                # sets should_save) and before `_maybe_log_save_evaluate`, which saves only when should_save is set
                self.lost_at = state.global_step
                control.should_save = False
                control.should_evaluate = False
                control.should_training_stop = True
            elif raised:
                control.should_save = True
                control.should_training_stop = True
            return control

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            if self.lost_at is not None:
                self._stop_progress()
                raise LockLost(self.lost_at)
            return control

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            logs = logs or {}
            elapsed = max(time.time() - self.started, 1e-9)
            done = state.global_step - self.start_step
            tokens = (state.num_input_tokens_seen or 0) - self.start_tokens
            tps = tokens / elapsed if tokens else None
            eta = (state.max_steps - state.global_step) * elapsed / done if done > 0 else None
            numeric = {k: float(v) for k, v in logs.items() if isinstance(v, int | float)}
            metrics.record(state.global_step, state.max_steps, numeric, tps, eta)
            log_step(state.global_step, {**numeric, **({"tokens_per_second": tps} if tps is not None else {})})
            emit_event(
                {
                    "type": "log",
                    "stage": stage,
                    "step": state.global_step,
                    "max_steps": state.max_steps,
                    "tokens_per_second": tps,
                    "eta_seconds": eta,
                    **numeric,
                }
            )
            if self.progress is not None and "loss" in numeric:
                self.progress.update(self.task, info=f"loss {numeric['loss']:.4f}")
            elif "loss" in numeric:
                log.info("%s step %d/%d loss %.4f", stage, state.global_step, state.max_steps, numeric["loss"])

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            ckpt = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            dist.barrier()  # every rank has written its part (rng state) before the marker says "complete"
            if lock is not None and lock.taken_over():
                # lost while this checkpoint was being written: it is not marked complete, so no resume trusts it
                log.error("%s: not marked complete, the lock was taken over while it was saved", ckpt)
            elif dist.is_main() and ckpt.is_dir():
                write_checkpoint_marker(ckpt, state.global_step, checksums=checksums)

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self._stop_progress()

        def _stop_progress(self) -> None:
            if self.progress is not None:
                self.progress.stop()
                self.progress = None

    return [StageCallback()]
