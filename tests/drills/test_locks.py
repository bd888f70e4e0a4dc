"""Drill: two processes on one stage folder or one releases folder. One works, the other refuses (exit 2,
naming the owner) or waits; a crashed owner's lock is taken over; nothing is trained, published or deleted twice.
An owner that stalled and lost its lock writes nothing more: no deleted `processed/`, no release, no checkpoint."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from korean_llm.errors import LockHeld
from korean_llm.pipeline.locking import OWNER, DirLock

from ..conftest import REPO, run_cli
from .helpers import CPT, run_dir, start_stage, wait_for, wait_for_step, with_training


def _lock(path: Path, **kw: object) -> DirLock:
    return DirLock(path, what="the test folder", stale_seconds=4.0, heartbeat_seconds=1.0, poll_seconds=0.1, **kw)  # type: ignore[arg-type]


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_a_second_holder_is_refused_with_the_owner_named(tmp_path: Path) -> None:
    first = _lock(tmp_path / "cpt.lock", info={"stage": "cpt", "run_id": "r1"}).acquire()
    try:
        with pytest.raises(LockHeld) as err:
            _lock(tmp_path / "cpt.lock").acquire()
        assert err.value.exit_code == 2
        msg = str(err.value)
        assert f"pid {os.getpid()} on host {socket.gethostname()} (stage cpt, run_id r1)" in msg
        assert "--wait-lock" in msg and str(tmp_path / "cpt.lock") in msg
    finally:
        first.release()
    assert not (tmp_path / "cpt.lock").exists()  # released: nothing left behind
    _lock(tmp_path / "cpt.lock").acquire().release()


def test_heartbeat_keeps_a_slow_owner_alive_and_a_waiter_gets_the_lock_after_it(tmp_path: Path) -> None:
    path = tmp_path / "cpt.lock"
    owner = _lock(path).acquire()
    time.sleep(6)  # longer than stale_seconds: only the heartbeat keeps the lock fresh
    with pytest.raises(LockHeld):
        _lock(path).acquire()
    threading.Timer(1.0, owner.release).start()
    started = time.time()
    waiter = _lock(path, wait=True).acquire()
    assert 0.5 < time.time() - started < 10
    assert json.loads((path / OWNER).read_text())["token"] == waiter.token
    waiter.release()


def test_a_dead_owner_on_this_host_is_taken_over_at_once(tmp_path: Path) -> None:
    path = tmp_path / "cpt.lock"
    path.mkdir()
    record = {"host": socket.gethostname(), "pid": _dead_pid(), "token": "old", "heartbeat_at": time.time()}
    (path / OWNER).write_text(json.dumps({**record, "started_at": time.time()}))
    lock = _lock(path).acquire()
    assert json.loads((path / OWNER).read_text())["token"] == lock.token
    lock.release()


def test_an_owner_on_another_host_is_stale_only_when_its_heartbeat_is_old(tmp_path: Path) -> None:
    path = tmp_path / "cpt.lock"
    path.mkdir()
    # pid 1 on another node: liveness cannot be probed from here, only the heartbeat's age tells
    record = {"host": "node-7", "pid": 1, "token": "other", "started_at": time.time()}
    (path / OWNER).write_text(json.dumps({**record, "heartbeat_at": time.time()}))
    with pytest.raises(LockHeld, match="pid 1 on host node-7"):
        _lock(path).acquire()
    (path / OWNER).write_text(json.dumps({**record, "heartbeat_at": time.time() - 60}))
    lock = _lock(path).acquire()
    lock.release()


def test_an_owner_that_lost_its_lock_does_not_publish(tmp_path: Path) -> None:
    path = tmp_path / "cpt.lock"
    stalled = _lock(path).acquire()
    stalled._stop.set()  # its heartbeat thread stops, as when the process hangs on I/O
    assert stalled._thread is not None
    stalled._thread.join()
    record = json.loads((path / OWNER).read_text())
    (path / OWNER).write_text(json.dumps({**record, "host": "node-7", "heartbeat_at": time.time() - 60}))
    taker = _lock(path).acquire()
    with pytest.raises(LockHeld, match="taken over"):
        stalled.ensure_held()
    stalled.release()  # must leave the new owner's lock alone
    assert json.loads((path / OWNER).read_text())["token"] == taker.token
    taker.release()


RACE = """
import pathlib, sys, time
sys.path.insert(0, {runtime!r})
from korean_llm.pipeline.locking import DirLock
from korean_llm.errors import LockHeld
tmp = pathlib.Path({tmp!r})
lock = DirLock(tmp / "cpt.lock", what="race", stale_seconds=600, heartbeat_seconds=5)
(tmp / "ready-{n}").touch()
while not (tmp / "go").exists():  # the barrier: every process imported and is waiting here
    time.sleep(0.001)
try:
    lock.acquire()
except LockHeld:
    print("refused", flush=True)
else:
    print("acquired", flush=True)
    while not (tmp / "release").exists():  # held until every other process has tried
        time.sleep(0.01)
    lock.release()
"""


def test_only_one_of_many_simultaneous_processes_gets_the_lock(tmp_path: Path) -> None:
    """Six processes try at once (a barrier they all reach before any tries); the one that gets the lock holds it
    until the five others have answered, so no timing of a loaded host changes the outcome."""
    procs = []
    for n in range(6):
        code = RACE.format(runtime=str(REPO / "runtime"), tmp=str(tmp_path), n=n)
        with open(tmp_path / f"out-{n}", "w") as out:
            procs.append(subprocess.Popen([sys.executable, "-c", code], stdout=out, text=True))
    try:
        outs = [tmp_path / f"out-{n}" for n in range(6)]

        def answers() -> list[str]:
            return sorted(o.read_text().strip() for o in outs if o.read_text().strip())

        deadline = time.time() + 300  # six interpreters starting on a busy two-core host
        while len(list(tmp_path.glob("ready-*"))) < 6 and time.time() < deadline:
            assert all(p.poll() is None for p in procs), [o.read_text() for o in outs]
            time.sleep(0.05)
        (tmp_path / "go").touch()
        while len(answers()) < 6 and time.time() < deadline:
            time.sleep(0.05)
        assert answers() == ["acquired"] + ["refused"] * 5
    finally:
        (tmp_path / "release").touch()
        for p in procs:
            p.wait(timeout=60)
    assert [p.returncode for p in procs] == [0] * 6
    assert not (tmp_path / "cpt.lock").exists()


@pytest.mark.slow
def test_two_cpt_processes_of_one_run(tmp_path: Path, write_config) -> None:
    """The second refuses while the first trains; with --wait-lock it waits for the live owner, then resumes from
    the first's last checkpoint: no step is trained twice. The first trains until the test stops it (SIGTERM),
    so both checks run against a process that still holds the lock, however slow the host."""
    config = write_config("cpt", with_training(max_steps=100000, save_steps=50))
    first = start_stage("cpt", config, tmp_path / "ev1.jsonl")
    waiter: subprocess.Popen[str] | None = None
    try:
        wait_for_step(tmp_path / "ev1.jsonl", 2, first)
        refused = run_cli("cpt", "--config", str(config))
        assert refused.returncode == 2, refused.stderr[-2000:]
        assert f"cpt.lock: the cpt work folder {run_dir(tmp_path) / 'cpt.partial'} is locked by pid {first.pid}" in (
            refused.stderr
        )
        waiter_log = tmp_path / "waiter.log"
        env = {**os.environ, "PYTHONPATH": str(REPO / "runtime"), "KOREAN_LLM_EVENTS": str(tmp_path / "ev2.jsonl")}
        with open(waiter_log, "w") as out:
            cmd = [sys.executable, "-m", "korean_llm", "cpt", "--config", str(config), "--wait-lock"]
            waiter = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        wait_for(lambda: f"waiting for pid {first.pid}" in waiter_log.read_text(), "the waiter to wait", waiter)
        assert first.poll() is None  # the owner still trains: the waiter waits on a live lock

        first.send_signal(signal.SIGTERM)
        out1, _ = first.communicate(timeout=300)
        assert first.returncode == 143, out1[-3000:]
        stopped_at = max(e["step"] for e in _events(tmp_path / "ev1.jsonl") if e.get("type") == "log")
        partial = run_dir(tmp_path) / "cpt.partial" / "checkpoints"
        assert (partial / f"checkpoint-{stopped_at}" / ".complete").is_file()

        wait_for_step(tmp_path / "ev2.jsonl", stopped_at + 2, waiter)
        waiter.send_signal(signal.SIGTERM)
        assert waiter.wait(timeout=300) == 143, waiter_log.read_text()[-3000:]
    finally:
        for proc in (first, waiter):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=60)
    events = _events(tmp_path / "ev2.jsonl")
    assert [e["step"] for e in events if e.get("type") == "start"] == [stopped_at]  # resumed where the first stopped
    steps = [e["step"] for e in events if e.get("type") == "log" and "loss" in e]  # not the end-of-training summary
    assert steps[0] == stopped_at + 1 and steps == list(range(stopped_at + 1, steps[-1] + 1))
    assert not (run_dir(tmp_path) / "cpt.lock").exists()  # both released it


def _events(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_a_second_deploy_leaves_a_live_publish_alone(tmp_path: Path, write_config) -> None:
    releases = tmp_path / "output" / "tiny-ko" / "releases"
    staging = releases / ".r1.partial-4242"  # the live publish's folder, being assembled by another process
    staging.mkdir(parents=True)
    (staging / "model.safetensors").write_bytes(b"half written")
    live = DirLock(releases.with_name("releases.lock"), what="publishing", info={"stage": "deploy", "run_id": "r1"})
    live.acquire()
    try:
        cfg = write_config("deploy", {"run": {"run_id": "r2"}})
        second = run_cli("deploy", "--config", str(cfg))
        assert second.returncode == 2, second.stderr[-2000:]
        assert f"releases.lock: publishing into {releases} is locked by pid {os.getpid()}" in second.stderr
        assert (staging / "model.safetensors").read_bytes() == b"half written"
        assert not (releases / "current").exists()
        assert not (tmp_path / "output" / "tiny-ko" / "r2" / "deploy").exists()
    finally:
        live.release()


def test_preprocess_refuses_while_another_one_works_on_the_run(tmp_path: Path, write_config) -> None:
    data = run_dir(tmp_path).parent.parent.parent / "data" / "tiny-ko" / "t" / "processed"
    data.mkdir(parents=True)
    (data / "stats.json").write_text("{}")  # published by the process that holds the lock
    out = run_dir(tmp_path)
    live = DirLock(out / "preprocess.lock", what="the preprocess work folder").acquire()
    try:
        cfg = write_config("preprocess", {"preprocess": {"cpt_sources": [{"path": "builtin:korean-corpus"}]}})
        second = run_cli("preprocess", "--config", str(cfg))
        assert second.returncode == 2, second.stderr[-2000:]
        assert f"preprocess.lock: the preprocess work folder {out / 'preprocess.partial'} is locked by pid" in (
            second.stderr
        )
        assert (data / "stats.json").read_text() == "{}"
    finally:
        live.release()


def test_wait_lock_gives_up_after_its_timeout(tmp_path: Path, write_config) -> None:
    live = DirLock(run_dir(tmp_path) / "cpt.lock", what="the cpt work folder").acquire()
    try:
        cfg = write_config("cpt", {**CPT, "lock": {"wait": True, "wait_timeout_seconds": 2}})
        started = time.time()
        waited = run_cli("cpt", "--config", str(cfg))
        assert waited.returncode == 2
        assert "still locked by" in waited.stderr and "after waiting 2s" in waited.stderr
        assert time.time() - started >= 2
    finally:
        live.release()
    assert not (run_dir(tmp_path) / "cpt.partial").exists()


def _take_over(lock_dir: Path) -> dict:
    """What a second process does once it judged `lock_dir` stale: the lock is now its own (another host's)."""
    record = {"host": "node-7", "pid": 1, "token": "new-owner", "started_at": time.time(), "heartbeat_at": time.time()}
    (lock_dir / OWNER).write_text(json.dumps(record))
    return record


def test_preprocess_that_lost_its_lock_leaves_the_new_owners_processed_folder_alone(
    tmp_path: Path, write_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock is taken over after the work is done and before `processed/` is replaced: exit 2, and the new
    owner's `processed/` is neither deleted nor renamed over."""
    from korean_llm.cli import main as cli_main
    from korean_llm.stages import preprocess

    processed = tmp_path / "data" / "tiny-ko" / "t" / "processed"
    summary = preprocess._summary

    def stall_and_lose(*args: object) -> None:
        summary(*args)  # type: ignore[arg-type]
        _take_over(run_dir(tmp_path) / "preprocess.lock")
        processed.mkdir(parents=True)
        (processed / "stats.json").write_text('{"owner": "new"}')  # what the new owner published meanwhile

    monkeypatch.setattr(preprocess, "_summary", stall_and_lose)
    cfg = write_config("preprocess", {"preprocess": {"cpt_sources": [{"path": "builtin:korean-corpus"}]}})
    assert cli_main(["preprocess", "--config", str(cfg)]) == 2
    assert sorted(p.name for p in processed.iterdir()) == ["stats.json"]
    assert (processed / "stats.json").read_text() == '{"owner": "new"}'
    assert json.loads((run_dir(tmp_path) / "preprocess.lock" / OWNER).read_text())["token"] == "new-owner"
    assert not (run_dir(tmp_path) / "preprocess").exists()  # no manifest published either


@pytest.mark.parametrize("lost_before", ["publish", "switch"])
def test_deploy_that_lost_its_lock_publishes_nothing_and_leaves_current(
    lost_before: str, tmp_path: Path, write_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The releases lock is taken over while the deploy merges (before `release.publish`) or right after it
    published (before the switch): exit 2, `current` still names the earlier release, nothing pruned."""
    from korean_llm.cli import main as cli_main
    from korean_llm.pipeline import release
    from korean_llm.stages import deploy

    releases = tmp_path / "output" / "tiny-ko" / "releases"

    def cfg(run_id: str) -> Path:
        return write_config("deploy", {"run": {"run_id": run_id}, "deploy": {"keep_releases": 1}}, f"{run_id}.yaml")

    assert cli_main(["deploy", "--config", str(cfg("r1"))]) == 0
    assert os.readlink(releases / "current") == "r1"
    lock_dir = releases.with_name("releases.lock")
    if lost_before == "publish":
        export = deploy.export_gguf
        monkeypatch.setattr(deploy, "export_gguf", lambda *a: (_take_over(lock_dir), export(*a))[1])
    else:
        publish = release.publish
        monkeypatch.setattr(release, "publish", lambda *a: (publish(*a), _take_over(lock_dir))[0])
    assert cli_main(["deploy", "--config", str(cfg("r2"))]) == 2
    assert os.readlink(releases / "current") == "r1"
    assert json.loads((releases / "current.json").read_text())["version"] == "r1"
    assert (releases / "r1" / "release.json").is_file()  # keep_releases 1: a prune would have removed it
    assert (releases / "r2").exists() == (lost_before == "switch")
    assert json.loads((lock_dir / OWNER).read_text())["token"] == "new-owner"
    assert not (tmp_path / "output" / "tiny-ko" / "r2" / "deploy").exists()


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.mark.slow
@pytest.mark.parametrize("lost_at", [2, 4])
def test_a_training_stage_that_lost_its_lock_stops_without_another_checkpoint(
    lost_at: int, tmp_path: Path, write_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock is taken over right after checkpoint-<lost_at> is complete (as when this process stalled there and
    another one broke its lock). At step 2 of 4: training stops at the end of step 3, before checkpoint-4; at the last
    step: no training log, weights or manifest follow. Either way exit 2, nothing in the shared `cpt.partial/`
    changes after the loss, and the new owner's lock is left alone."""
    from korean_llm.cli import main as cli_main
    from korean_llm.train import callbacks

    partial = run_dir(tmp_path) / "cpt.partial"
    lock_dir = run_dir(tmp_path) / "cpt.lock"
    seen: dict[str, dict[str, tuple[int, int]]] = {}
    mark = callbacks.write_checkpoint_marker

    def mark_then_lose(ckpt: Path, step: int, **kw: object) -> None:
        mark(ckpt, step, **kw)  # type: ignore[arg-type]
        if step == lost_at:
            _take_over(lock_dir)
            seen["at_loss"] = _files(partial)

    monkeypatch.setattr(callbacks, "write_checkpoint_marker", mark_then_lose)
    monkeypatch.setenv("KOREAN_LLM_EVENTS", str(tmp_path / "events.jsonl"))
    config = write_config("cpt", with_training(max_steps=4, save_steps=2))
    assert cli_main(["cpt", "--config", str(config)]) == 2
    saved = sorted(p.name for p in (partial / "checkpoints").glob("checkpoint-*"))
    assert saved == [f"checkpoint-{n}" for n in range(2, lost_at + 1, 2)]
    assert _files(partial) == seen["at_loss"]  # no file written, replaced or removed after the loss
    assert not (partial / "log_history.json").exists() and not (partial / "adapter").exists()
    steps = [e["step"] for e in _events(tmp_path / "events.jsonl") if e.get("type") == "log" and "loss" in e]
    assert steps == list(range(1, min(lost_at + 1, 4) + 1))  # stopped at the first step boundary after the loss
    assert json.loads((lock_dir / OWNER).read_text())["token"] == "new-owner"
    assert not (run_dir(tmp_path) / "cpt").exists()
