"""The callback every stage trainer carries: metrics, progress, checkpoint markers and SIGTERM handling."""

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
from korean_llm.pipeline.artifacts import (
    COMPLETE_MARKER,
)

log = logging.getLogger("korean_llm")
console = stderr_console()


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


def make_callbacks(metrics: StageMetrics, flag: SigtermFlag, stage: str) -> list[Any]:
    from transformers import TrainerCallback
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    class StageCallback(TrainerCallback):
        """Metrics, progress, checkpoint markers and SIGTERM handling in one place."""

        def __init__(self) -> None:
            self.started = time.time()
            self.start_step = 0
            self.start_tokens = 0
            self.progress: Progress | None = None
            self.task: Any = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
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
            if dist.any_rank(flag.raised):  # every rank stops at the same step, or DDP would hang
                control.should_save = True
                control.should_training_stop = True
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
            if dist.is_main() and ckpt.is_dir():
                (ckpt / COMPLETE_MARKER).write_text(str(state.global_step))

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.progress is not None:
                self.progress.stop()
                self.progress = None

    return [StageCallback()]
