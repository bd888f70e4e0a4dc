"""Drill: SIGTERM and Ctrl-C (SIGINT) to `korean-llm run`. The runner forwards SIGTERM to the running stage, waits
for its checkpoint, writes the summary and the report, exits 143 and leaves no stage process behind; the same
command then resumes from that checkpoint."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ..conftest import REPO
from .helpers import events_of, logged_steps, manifest_of, wait_for

ONLY = ["--only", "preprocess", "--only", "cpt"]
SLOW_CPT = [
    "--set",
    "models[0].stages.cpt.config.training.max_steps=30",
    "--set",
    "models[0].stages.cpt.config.training.save_steps=100",
    "--set",
    "models[0].stages.cpt.config.training.logging_steps=1",
]


def _runner(tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "runtime")}
    cmd = [sys.executable, "-m", "korean_llm", "run", "-f", str(REPO / "values" / "local.yaml")]
    cmd += ["--runs-dir", str(tmp_path), "--run-id", "sig", *ONLY, *SLOW_CPT, *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)


def _stage_pids(marker: str) -> list[int]:
    """Processes whose command line mentions `marker` (the run's config folder): the stages still alive."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline and " cpt " in f" {cmdline} ":
                pids.append(int(entry.name))
    return pids


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_runner_stops_the_stage_after_its_checkpoint(tmp_path: Path, sig: signal.Signals) -> None:
    runner = _runner(tmp_path)
    events = tmp_path / "sig" / "logs" / "tiny-ko-cpt.events.jsonl"
    wait_for(
        lambda: any(e.get("type") == "log" and e.get("step", 0) >= 2 for e in events_of(events)), "cpt step 2", runner
    )
    runner.send_signal(sig)
    out, _ = runner.communicate(timeout=180)
    assert runner.returncode == 143, out[-4000:]
    assert f"{sig.name}: stopping the running stage after its checkpoint" in out
    assert "korean-llm run sig" in out and "stopped" in out  # the summary table
    root = tmp_path / "sig"
    assert (root / "report.html").is_file()
    assert _stage_pids(str(root / "config")) == []  # no orphan trains on
    log = (root / "logs" / "tiny-ko-cpt.log").read_text()
    assert "stopped by SIGTERM at step" in log
    ckpts = sorted((root / "output" / "tiny-ko" / "sig" / "cpt.partial" / "checkpoints").glob("checkpoint-*"))
    assert len(ckpts) == 1 and (ckpts[0] / ".complete").is_file()
    stopped_at = int(ckpts[0].name.rsplit("-", 1)[1])
    assert 2 <= stopped_at < 30

    again = _runner(tmp_path)
    out2, _ = again.communicate(timeout=300)
    assert again.returncode == 0, out2[-4000:]
    cpt = root / "output" / "tiny-ko" / "sig" / "cpt"
    metrics = manifest_of(cpt)["metrics"]
    assert metrics["resumed_from_step"] == stopped_at and metrics["global_step"] == 30
    assert logged_steps(cpt) == list(range(1, 31))


def test_a_signal_while_a_step_starts_is_forwarded_once_it_runs(tmp_path: Path) -> None:
    """The stop request is remembered: a stage started after it gets SIGTERM at once and no later step runs."""
    from korean_llm.local.signals import StopRequest

    stop = StopRequest(grace_seconds=30)
    stop.handle(signal.SIGTERM, None)
    code = (
        "import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(143))\n"
        "print('ready', flush=True)\ntime.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"  # the handler is installed
    started = time.time()
    stop.attach(proc)
    assert proc.wait(timeout=30) == 143 and time.time() - started < 10
    assert stop.exit_code == 143


def _stop_past_the_grace(stop: Any, proc: subprocess.Popen[str]) -> None:
    """SIGTERM to the runner's stop request, then its ticks until the stage that ignores it is SIGKILLed."""
    stop.attach(proc)
    stop.handle(signal.SIGTERM, None)
    deadline = time.time() + 20
    while proc.poll() is None and time.time() < deadline:
        stop.tick()
        time.sleep(0.1)
    assert proc.returncode == -signal.SIGKILL and stop.killed


def test_a_stage_that_ignores_sigterm_is_killed_after_the_grace_period() -> None:
    from korean_llm.local.signals import StopRequest

    stop = StopRequest(grace_seconds=1.0)
    code = (
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\ntime.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    _stop_past_the_grace(stop, proc)


def test_the_runner_kills_a_stubborn_stage_with_its_whole_process_group() -> None:
    """The runner starts a stage in a session of its own; after the grace period the stage's workers die with it."""
    from korean_llm.local.signals import StopRequest
    from korean_llm.local.state import group_alive

    stop = StopRequest(grace_seconds=1.0)
    code = (
        "import signal, subprocess, sys, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "sleeper = 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'\n"
        "worker = subprocess.Popen([sys.executable, '-c', sleeper])\n"
        "print('ready', worker.pid, flush=True)\ntime.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("ready ")
        _stop_past_the_grace(stop, proc)
        deadline = time.time() + 10
        while group_alive(proc.pid) and time.time() < deadline:
            time.sleep(0.1)
        assert not group_alive(proc.pid)  # the worker went with it
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
