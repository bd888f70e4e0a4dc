"""SIGTERM and Ctrl-C for the local runner: stop the running stage cleanly, then report.

The runner starts each stage in a session of its own, so a Ctrl-C typed in the terminal reaches the runner
only (not the stage, which would die of KeyboardInterrupt without a checkpoint). On SIGTERM or SIGINT the
runner forwards SIGTERM to the stage, which saves a checkpoint at the end of its current step and exits 143
(korean_llm.training); the runner waits for that, marks the remaining steps as not run, writes the summary
and the report, and exits 143. A stage that has not stopped `grace_seconds` after the signal is killed with its
process group (the workers it started).
A second signal while waiting only says what is happening.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

from korean_llm.console import stderr_console
from korean_llm.errors import EXIT_TERMINATED

console = stderr_console()
DEFAULT_GRACE_SECONDS = 600.0


class StopRequest:
    """Set by SIGTERM / SIGINT; forwards SIGTERM to the stage process that is running."""

    def __init__(self, grace_seconds: float = DEFAULT_GRACE_SECONDS) -> None:
        self.signum: int | None = None
        self.grace_seconds = grace_seconds
        self.proc: subprocess.Popen[Any] | None = None
        self.forwarded_at: float | None = None
        self.killed = False

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            console.print(
                f"[yellow]{signal.Signals(signum).name}: already stopping, waiting for the stage's checkpoint"
            )
            return
        self.signum = signum
        console.print(f"[yellow]{self.name}: stopping the running stage after its checkpoint, then writing the report")
        self._forward()

    def _forward(self) -> None:
        if self.proc is not None and self.proc.poll() is None and self.forwarded_at is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            self.forwarded_at = time.time()

    def attach(self, proc: subprocess.Popen[Any]) -> None:
        """The stage that now runs; a stop requested before it started is forwarded at once."""
        self.proc, self.forwarded_at = proc, None
        if self.requested:
            self._forward()

    def tick(self) -> None:
        """Called while waiting for the stage: kill it when it ignores the forwarded signal too long."""
        if self.proc is None or self.forwarded_at is None or self.killed or self.proc.poll() is not None:
            return
        if time.time() - self.forwarded_at > self.grace_seconds:
            console.print(f"[red]the stage did not stop within {self.grace_seconds:.0f}s of SIGTERM: killing it")
            with contextlib.suppress(ProcessLookupError):
                if os.getpgid(self.proc.pid) == self.proc.pid:  # a session of its own: its workers go with it
                    os.killpg(self.proc.pid, signal.SIGKILL)
                else:
                    self.proc.kill()
            self.killed = True

    @property
    def exit_code(self) -> int:
        return EXIT_TERMINATED


@contextlib.contextmanager
def stop_on_signals(grace_seconds: float = DEFAULT_GRACE_SECONDS) -> Iterator[StopRequest]:
    """Install the SIGTERM / SIGINT handlers for the duration of a run (main thread only)."""
    stop = StopRequest(grace_seconds)
    previous = {sig: signal.signal(sig, stop.handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
