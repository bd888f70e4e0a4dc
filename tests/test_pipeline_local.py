"""`korean-llm pipeline` on the local backend, end to end on the tiny model: submit, status while running,
wait, logs, stop and cleanup of runs of the local runner under runs/<run-id>/."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from korean_llm.local.state import RunState, stage_alive
from korean_llm.pipeline_manager.local_backend import LocalBackend, group_alive

from .conftest import REPO, run_cli

LOCAL = str(REPO / "values" / "local.yaml")


def sets(**stages: Any) -> list[str]:
    out: list[str] = []
    for key, value in stages.items():
        out += ["--set", f"models[0].stages.{key.replace('__', '.')}={value}"]
    return out


# preprocess -> cpt (a few steps) -> evaluate whose gate no random-weight model passes.
GATE_RUN = sets(
    sft__enabled="false",
    rlhf__enabled="false",
    deploy__enabled="false",
    cpt__config__training__max_steps=6,
    cpt__config__training__logging_steps=1,
    evaluate__config__evaluate__max_new_tokens=4,
    evaluate__config__evaluate__gate__max_perplexity=1,
)
# preprocess -> a CPT far too long to finish, checkpointing often: to be stopped.
LONG_RUN = sets(
    sft__enabled="false",
    rlhf__enabled="false",
    evaluate__enabled="false",
    deploy__enabled="false",
    cpt__config__training__max_steps=100000,
    cpt__config__training__logging_steps=1,
    cpt__config__training__save_steps=2,
)

# preprocess only: a run that succeeds in seconds.
QUICK_RUN = sets(
    cpt__enabled="false",
    sft__enabled="false",
    rlhf__enabled="false",
    evaluate__enabled="false",
    deploy__enabled="false",
)
# preprocess -> a short CPT that logs every step: long enough to be followed while it runs.
FOLLOWED_RUN = sets(
    sft__enabled="false",
    rlhf__enabled="false",
    evaluate__enabled="false",
    deploy__enabled="false",
    cpt__config__training__max_steps=30,
    cpt__config__training__logging_steps=1,
)


def pm(runs: Path, *args: str, timeout: float = 2400) -> Any:
    return run_cli("pipeline", "--runs-dir", str(runs), *args, timeout=timeout)


def table_row(text: str, stage: str) -> str:
    return next(line for line in text.splitlines() if line.count("│") > 5 and line.split("│")[1].strip() == stage)


def cpt_step(backend: LocalBackend, run: str) -> int:
    """Steps the run's cpt stage has logged so far (0 before the runner wrote run.json)."""
    stage = next((s for s in backend.status(run).stages if s.name == "cpt"), None)
    return (stage.step or 0) if stage else 0


def wait_for(predicate: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {seconds}s waiting for {what}")


@pytest.mark.slow
def test_local_runs_end_to_end(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    backend = LocalBackend(runs)

    # submit: prints the run id at once, the runner goes on in the background.
    sub = pm(runs, "submit", "-f", LOCAL, "--run-id", "gate", *GATE_RUN)
    assert sub.returncode == 0, sub.stderr[-2000:]
    assert sub.stdout.strip() == "gate"
    submitted = json.loads((runs / "gate" / "submit.json").read_text())
    assert submitted["parameters"] == {"run-id": "gate"} and submitted["templates"] == ["korean-llm-tiny-ko"]

    # status while running: a stage is Running, the later ones Pending.
    wait_for(
        lambda: any(s.phase == "Running" for s in backend.status("gate").stages), 600, "a running stage"
    )  # a loaded CI host: minutes
    running = pm(runs, "status", "gate")
    assert running.returncode == 0
    assert "gate: Running" in running.stderr and "Pending" in table_row(running.stderr, "evaluate")

    # wait: the evaluate gate stops the run -> exit 3.
    waited = pm(runs, "wait", "gate", "--timeout", "1800")
    assert waited.returncode == 3, waited.stderr[-3000:]
    assert waited.stdout.strip() == "GateFailed"
    done = pm(runs, "status", "gate").stderr
    cpt = table_row(done, "cpt")
    assert "Succeeded" in cpt and "6/6" in cpt
    loss = json.loads((runs / "gate" / "output" / "tiny-ko" / "gate" / "cpt" / "manifest.json").read_text())
    assert f"{loss['metrics']['final_loss']:.4f}" in cpt
    assert "Failed" in table_row(done, "evaluate")

    # logs of one stage, and of all of them with the stage as a prefix.
    logs = pm(runs, "logs", "gate", "--stage", "evaluate")
    assert logs.returncode == 0 and "gate" in logs.stdout.lower()
    every = pm(runs, "logs", "gate").stdout
    assert any(line.startswith("cpt: ") and "loss" in line for line in every.splitlines())
    assert any(line.startswith("preprocess: ") for line in every.splitlines())

    # A long run: status shows live step, loss, tokens/s and ETA; cleanup keeps it while it runs; stop ends it.
    assert pm(runs, "submit", "-f", LOCAL, "-p", "run-id=long", *LONG_RUN).stdout.strip() == "long"
    wait_for(lambda: cpt_step(backend, "long") >= 3, 900, "cpt to log 3 steps")
    live = table_row(pm(runs, "status", "long").stderr, "cpt")
    assert "Running" in live and "/100000" in live
    cpt_live = next(s for s in backend.status("long").stages if s.name == "cpt")
    assert cpt_live.loss is not None and cpt_live.tokens_per_second and cpt_live.eta_seconds
    listed = pm(runs, "list").stderr
    assert "long" in listed and "Running" in listed and "gate" in listed and "Failed" in listed
    assert "kept: long (running)" in pm(runs, "cleanup", "--older", "0s", "--dry-run").stdout

    pid = json.loads((runs / "long" / "run.json").read_text())["pid"]
    stop = pm(runs, "stop", "long")
    assert stop.returncode == 0, stop.stderr
    assert not group_alive(pid)  # the runner and the training process are gone: nothing holds the CPU/GPU
    ckpts = list((runs / "long" / "output" / "tiny-ko" / "long" / "cpt.partial" / "checkpoints").glob("*/.complete"))
    assert ckpts, "SIGTERM should have left a complete checkpoint"
    assert pm(runs, "wait", "long", "--timeout", "5").returncode == 1
    stopped = pm(runs, "status", "long").stderr
    assert "long: Stopped" in stopped
    assert "already finished" in pm(runs, "stop", "long").stderr

    # cleanup: a run that holds a release is never deleted; finished runs older than the limit are.
    released = runs / "released"
    (released / "output" / "tiny-ko" / "releases" / "released").mkdir(parents=True)
    os.symlink("released", released / "output" / "tiny-ko" / "releases" / "current")
    state = RunState.begin(released, "released", [("tiny-ko", "deploy", None)])
    state.finish(0)
    dry = pm(runs, "cleanup", "--older", "0s", "--dry-run").stdout.splitlines()
    assert "kept: released (holds release tiny-ko/released)" in dry
    assert {ln.split(" (")[0] for ln in dry if ln.startswith("would delete")} == {
        "would delete: gate",
        "would delete: long",
    }
    assert (runs / "gate").is_dir()
    assert pm(runs, "cleanup", "--older", "7d").stdout == ""  # nothing that old
    real = pm(runs, "cleanup", "--older", "0s").stdout
    assert "deleted: gate" in real and "deleted: long" in real
    assert sorted(p.name for p in runs.iterdir()) == ["released"]


def test_local_submit_and_run_errors(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    bad = pm(runs, "submit", "-f", LOCAL, "--template", "korean-llm-nope")
    assert bad.returncode == 2 and "has no such WorkflowTemplate (it has: korean-llm-tiny-ko)" in bad.stderr
    bad = pm(runs, "submit", "-f", LOCAL, "-p", "epochs=3")
    assert bad.returncode == 2 and "declares no parameter 'epochs' (it declares: run-id)" in bad.stderr
    bad = pm(runs, "submit", "-f", LOCAL, "--run-id", "a", "-p", "run-id=b")
    assert bad.returncode == 2 and "disagree" in bad.stderr
    bad = pm(runs, "submit")
    assert bad.returncode == 2 and "pass -f VALUES (the chart is rendered here) or --template NAME" in bad.stderr
    # Without -f the chart renders with its defaults (charts/values.yaml: the qwen7b pipeline), as on a cluster.
    bad = pm(runs, "submit", "--template", "korean-llm-tiny-ko")
    assert bad.returncode == 2, bad.stderr
    assert "rendered with its default values" in bad.stderr and "(it has: korean-llm-qwen7b)" in bad.stderr
    bad = pm(runs, "submit", "--template", "korean-llm-qwen7b", "-p", "epochs=3")
    assert bad.returncode == 2 and "declares no parameter 'epochs' (it declares: run-id)" in bad.stderr
    assert not runs.exists()  # nothing half-written
    bad = pm(runs, "status", "nope")
    assert bad.returncode == 2 and "run 'nope': no such run" in bad.stderr
    bad = pm(runs, "cleanup", "--older", "7 days")
    assert bad.returncode == 2 and "expected a number and a unit" in bad.stderr


def test_a_runner_that_died_reads_as_failed_and_a_stopped_one_as_stopped(tmp_path: Path) -> None:
    """run.json left at Running by a killed runner (pid gone) is not shown as running forever."""
    root = tmp_path / "runs" / "dead"
    root.mkdir(parents=True)
    state = RunState.begin(root, "dead", [("tiny-ko", "preprocess", None), ("tiny-ko", "cpt", None)])
    state.step_started("tiny-ko", "preprocess")
    state.step_finished("tiny-ko", "preprocess", "ok", 0, root / "logs" / "tiny-ko-preprocess.log")
    state.step_started("tiny-ko", "cpt")
    (root / "logs").mkdir()
    (root / "logs" / "tiny-ko-preprocess.log").write_text("$ python -m korean_llm preprocess\nkept 9 of 11\n")
    (root / "logs" / "tiny-ko-cpt.log").write_text("cpt step 1/60 loss 7.1\n")
    data = json.loads((root / "run.json").read_text())
    data["pid"] = 2**22 + 17  # above the default pid_max: no such process
    (root / "run.json").write_text(json.dumps(data))
    backend = LocalBackend(tmp_path / "runs")
    status = backend.status("dead")
    assert status.phase == "Failed" and "ended without a final status" in status.message
    assert [s.phase for s in status.stages] == ["Succeeded", "Failed"]
    assert status.wait_exit_code() == 1
    # --follow on a run that has ended prints what was written and returns.
    assert list(backend.follow(root, None)) == [
        "preprocess: $ python -m korean_llm preprocess\n",
        "preprocess: kept 9 of 11\n",
        "cpt: cpt step 1/60 loss 7.1\n",
    ]
    assert list(backend.follow(root, "cpt")) == ["cpt step 1/60 loss 7.1\n"]
    (root / "stop-requested").write_text("1")
    assert backend.status("dead").phase == "Stopped"


# A stage of a hand-written WorkflowTemplate (`korean-llm run --manifests`), no model: it starts a child (its
# worker, in its process group), says "ready" once its SIGTERM handler is in place, then sleeps.
STAGE = """
import signal, subprocess, sys, time
HANDLER
sleeper = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
worker = subprocess.Popen([sys.executable, "-c", sleeper])
print("ready", worker.pid, flush=True)
time.sleep(600)
"""
IGNORES_SIGTERM = "signal.signal(signal.SIGTERM, signal.SIG_IGN)"
CHECKPOINTS_ON_SIGTERM = (
    "def stop(*a):\n    print('SIGTERM: checkpoint saved', flush=True); worker.kill(); sys.exit(143)\n"
    "signal.signal(signal.SIGTERM, stop)"
)


def stage_worker(root: Path) -> int | None:
    """The pid of the worker the stage started, once the stage said "ready" (the log's first line is the command)."""
    log = root / "logs" / "stub-train.log"
    lines = log.read_text().splitlines() if log.is_file() else []
    return next((int(ln.split()[1]) for ln in lines if ln.startswith("ready ")), None)


def start_stub_run(runs: Path, run: str, handler: str) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start the runner on a one-step pipeline the way `pipeline submit` does (a session of its own); return it and
    the run.json entry of its step once the stage is ready."""
    template = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowTemplate",
        "metadata": {"name": f"korean-llm-{run}", "labels": {"korean-llm/model": "stub"}},
        "spec": {
            "entrypoint": "main",
            "arguments": {"parameters": [{"name": "run-id", "value": run}]},
            "templates": [
                {"name": "main", "dag": {"tasks": [{"name": "train", "template": "train"}]}},
                {"name": "train", "container": {"command": ["python", "-c", STAGE.replace("HANDLER", handler)]}},
            ],
        },
    }
    runs.mkdir(parents=True, exist_ok=True)
    manifests = runs / f"{run}.yaml"
    manifests.write_text(yaml.safe_dump(template))
    cmd = [sys.executable, "-m", "korean_llm", "run", "--manifests", str(manifests), "--run-id", run]
    runner = subprocess.Popen(
        [*cmd, "--runs-dir", str(runs)],
        env={**os.environ, "PYTHONPATH": str(REPO / "runtime")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_for(lambda: stage_worker(runs / run) is not None, 120, "the stage to start")
    entry = json.loads((runs / run / "run.json").read_text())["steps"][0]
    assert entry["phase"] == "Running" and entry["pid"] and entry["start_ticks"] is not None
    assert entry["pgid"] == entry["pid"] != runner.pid  # a session of its own: not in the runner's group
    return runner, entry


def test_stop_kills_a_stage_that_ignores_sigterm_and_leaves_no_process(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runner, entry = start_stub_run(runs, "stubborn", IGNORES_SIGTERM)
    worker = stage_worker(runs / "stubborn")
    try:
        started = time.monotonic()
        stop = pm(runs, "stop", "stubborn", "--grace", "3", timeout=120)
        assert stop.returncode == 0, stop.stderr
        assert "stage stub/train" in stop.stderr and "still running after 3s: sent SIGKILL" in stop.stderr
        assert time.monotonic() - started < 60
        # No process of the stage is left, the worker it started included, nor the runner.
        assert not stage_alive(entry) and not group_alive(entry["pgid"]) and not group_alive(runner.pid)
        assert worker and not stage_alive({"pid": worker})
        # The runner saw its stage end, wrote the summary and the report, and exited 143.
        assert runner.wait(timeout=30) == 143
        final = json.loads((runs / "stubborn" / "run.json").read_text())
        assert final["grace_seconds"] == 600 and final["steps"][0]["phase"] == "Stopped"
        assert (runs / "stubborn" / "report.html").is_file()
        assert "stubborn: Stopped" in pm(runs, "status", "stubborn").stderr
    finally:
        for pgid in (entry["pgid"], runner.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        runner.wait(timeout=30)


def test_a_stage_left_by_a_killed_runner_is_running_until_stop_ends_it(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runner, entry = start_stub_run(runs, "orphan", CHECKPOINTS_ON_SIGTERM)
    try:
        runner.kill()  # kill -9: the runner cannot forward anything; its stage trains on
        assert runner.wait(timeout=30) == -signal.SIGKILL
        assert stage_alive(entry)
        status = pm(runs, "status", "orphan").stderr
        assert "orphan: Running" in status and "still runs" in status, status
        assert "kept: orphan (running)" in pm(runs, "cleanup", "--older", "0s").stdout
        assert (runs / "orphan" / "logs").is_dir()  # the live stage's folder is kept
        stop = pm(runs, "stop", "orphan", "--grace", "30", timeout=120)
        assert stop.returncode == 0, stop.stderr
        assert "the runner has ended: sent SIGTERM to stage stub/train" in stop.stderr and "SIGKILL" not in stop.stderr
        assert not stage_alive(entry) and not group_alive(entry["pgid"])
        assert "SIGTERM: checkpoint saved" in (runs / "orphan" / "logs" / "stub-train.log").read_text()
        final = json.loads((runs / "orphan" / "run.json").read_text())
        assert final["phase"] == "Stopped" and final["steps"][0]["phase"] == "Stopped"
        assert "orphan: Stopped" in pm(runs, "status", "orphan").stderr
        assert "deleted: orphan" in pm(runs, "cleanup", "--older", "0s").stdout
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(entry["pgid"], signal.SIGKILL)


def test_a_worker_that_outlives_its_stage_is_kept_by_cleanup_and_ended_by_stop(tmp_path: Path) -> None:
    """The stage's main process exits 0 but leaves its worker (its process group) running: the run is finished,
    yet cleanup keeps its folder and stop ends the worker."""
    runs = tmp_path / "runs"
    go = tmp_path / "go"
    leaves = (
        "import os, threading\n"
        f"def leave():\n    while not os.path.exists({str(go)!r}): time.sleep(0.05)\n    os._exit(0)\n"
        "threading.Thread(target=leave, daemon=True).start()"
    )
    runner, entry = start_stub_run(runs, "leftover", leaves)
    worker = stage_worker(runs / "leftover")
    try:
        go.touch()
        assert runner.wait(timeout=60) == 0
        assert json.loads((runs / "leftover" / "run.json").read_text())["steps"][0]["phase"] == "Succeeded"
        assert worker and stage_alive({"pid": worker}) and stage_alive(entry)  # through its group
        kept = pm(runs, "cleanup", "--older", "0s").stdout
        assert f"kept: leftover (stage stub/train (pid {entry['pid']}) still runs)" in kept, kept
        stop = pm(runs, "stop", "leftover", "--grace", "2", timeout=120)
        assert stop.returncode == 0 and "sent SIGKILL to its process group" in stop.stderr, stop.stderr
        assert not stage_alive(entry) and not group_alive(entry["pgid"])
        assert "already finished (Succeeded)" in pm(runs, "stop", "leftover").stderr
        assert "deleted: leftover" in pm(runs, "cleanup", "--older", "0s").stdout
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(entry["pgid"], signal.SIGKILL)


def test_submit_by_template_runs_only_that_template_and_wait_exits_0(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    sub = pm(runs, "submit", "-f", LOCAL, "--template", "korean-llm-tiny-ko", "-p", "run-id=quick", *QUICK_RUN)
    assert sub.returncode == 0 and sub.stdout.strip() == "quick", sub.stderr[-2000:]
    submitted = json.loads((runs / "quick" / "submit.json").read_text())
    assert submitted["templates"] == ["korean-llm-tiny-ko"] and submitted["parameters"] == {"run-id": "quick"}
    manifests = list(yaml.safe_load_all((runs / "quick" / "manifests.yaml").read_text()))
    templates = [d["metadata"]["name"] for d in manifests if d and d.get("kind") == "WorkflowTemplate"]
    assert templates == ["korean-llm-tiny-ko"]
    waited = pm(runs, "wait", "quick", "--timeout", "600")
    assert waited.returncode == 0, waited.stderr[-3000:]
    assert waited.stdout.strip() == "Succeeded"
    state = json.loads((runs / "quick" / "run.json").read_text())
    assert [(s["step"], s["phase"]) for s in state["steps"] if s["phase"] != "Skipped"] == [
        ("preprocess", "Succeeded")
    ], state["steps"]


@pytest.mark.slow
def test_wait_times_out_with_124_and_logs_follow_a_running_run_until_it_ends(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    sub = pm(runs, "submit", "-f", LOCAL, "--run-id", "followed", *FOLLOWED_RUN)
    assert sub.returncode == 0, sub.stderr[-2000:]
    backend = LocalBackend(runs)
    try:
        started = time.monotonic()
        waited = pm(runs, "wait", "followed", "--timeout", "1")
        assert waited.returncode == 124 and "followed: still running after 1s" in waited.stderr, waited.stderr
        assert time.monotonic() - started < 60 and not backend.status("followed").done

        command = ["pipeline", "--runs-dir", str(runs), "logs", "followed", "--stage", "cpt", "--follow"]
        follow = subprocess.Popen(
            [sys.executable, "-m", "korean_llm", *command],
            env={**os.environ, "PYTHONPATH": str(REPO / "runtime")},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        seen: list[tuple[float, str]] = []  # (time read, line)
        assert follow.stdout is not None
        for line in follow.stdout:  # ends when `logs --follow` exits
            seen.append((time.time(), line))
            assert time.monotonic() - started < 900, "logs --follow did not end with the run"
        assert follow.wait(timeout=60) == 0, follow.stderr.read() if follow.stderr else ""
        final = backend.status("followed")
        assert final.phase == "Succeeded" and final.finished_at is not None
        losses = [(t, ln) for t, ln in seen if "loss" in ln]
        assert losses, "".join(ln for _, ln in seen)[-2000:]
        # Lines were printed while the run was still running, not only once it had ended.
        assert losses[0][0] < final.finished_at, (losses[0], final.finished_at)
        assert "".join(ln for _, ln in seen) == (runs / "followed" / "logs" / "tiny-ko-cpt.log").read_text()
    finally:
        if not backend.status("followed").done:
            pm(runs, "stop", "followed", "--grace", "30", timeout=300)


def test_submit_by_template_without_values_runs_the_charts_defaults(tmp_path: Path) -> None:
    """No -f: the chart renders with charts/values.yaml (the qwen7b pipeline) and that template's DAG runs; its
    preprocess has no inputs set there, so the run stops at once with the step's exit 2, named."""
    runs = tmp_path / "runs"
    sub = pm(runs, "submit", "--template", "korean-llm-qwen7b", "--run-id", "dflt")
    assert sub.returncode == 0 and sub.stdout.strip() == "dflt", sub.stderr[-2000:]
    manifests = list(yaml.safe_load_all((runs / "dflt" / "manifests.yaml").read_text()))
    templates = [d["metadata"]["name"] for d in manifests if d and d.get("kind") == "WorkflowTemplate"]
    assert templates == ["korean-llm-qwen7b"]
    waited = pm(runs, "wait", "dflt", "--timeout", "600")
    assert waited.returncode == 1 and waited.stdout.strip() == "Failed", waited.stderr[-3000:]
    assert "dflt: Failed (preprocess failed (exit 2))" in waited.stderr
    assert "key 'preprocess': no inputs" in (runs / "dflt" / "logs" / "qwen7b-preprocess.log").read_text()
    bad = pm(runs, "submit", "--template", "korean-llm-qwen7b", "--set", "models[0].stages.cpt.enabled=false")
    assert bad.returncode == 2 and "helm template failed for the chart's default values" in bad.stderr
