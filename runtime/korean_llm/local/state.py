"""`runs/<run-id>/run.json`: the state of one local run, written by the local runner as it goes.

The local runner (`korean-llm run`) records its pid, the grace it gives a stage after forwarding SIGTERM,
every step it will run and, as it runs them, each step's phase, start and end time, exit code and process
(`pid`, `pgid`: the stage runs in a session of its own, so it is not in the runner's process group; `start_ticks`:
its start time in clock ticks since boot, field 22 of `/proc/<pid>/stat` (proc(5)), so a pid the kernel reused
for another program is never taken for the stage), and finally the run's exit code. `korean-llm pipeline` reads it
(with the stages' event feeds and manifests) to show, wait for, stop and clean up local runs. Every write replaces
the file atomically, so a reader never sees half of it.

Phases follow Argo's node phases (`Pending`, `Running`, `Succeeded`, `Failed`, `Skipped`, `Omitted`), so a
local run and a Workflow on a cluster read the same; a run stopped by `korean-llm pipeline stop` is `Stopped`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

STATE_FILE = "run.json"
SUBMIT_FILE = "submit.json"
STOP_FILE = "stop-requested"
RUNNER_LOG = "runner.log"

TERMINAL = ("Succeeded", "Failed", "Stopped")
# StepResult.status of the local runner -> phase.
STEP_PHASES = {
    "ok": "Succeeded",
    "done before": "Succeeded",
    "failed": "Failed",
    "stopped": "Stopped",
    "skipped": "Skipped",
}


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace `path` atomically (temporary file in the same folder, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def proc_stat(pid: int) -> list[str] | None:
    """The fields of `/proc/<pid>/stat` after the command name (index 0 is the state, 2 the pgid, 19 the start
    time), or None when there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None


def start_ticks(pid: int) -> int | None:
    fields = proc_stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def group_alive(pgid: int) -> bool:
    """True while any live (non-zombie) process belongs to process group `pgid`."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def stage_alive(entry: dict[str, Any]) -> bool:
    """True while the process a step entry of run.json records (or any process of its group) still runs.

    Linux keeps a pid number allocated while a process group of that id has members, so a group still alive
    under the recorded pgid is the stage's; a leader with another start time is a reused pid, and then the
    stage's group has ended."""
    pid, pgid, ticks = entry.get("pid"), entry.get("pgid"), entry.get("start_ticks")
    if not pid:
        return False
    leader = proc_stat(int(pid))
    if leader is not None and isinstance(ticks, int) and len(leader) > 19 and int(leader[19]) != ticks:
        return False
    if leader is not None and leader[0] not in ("Z", "X"):
        return True
    return isinstance(pgid, int) and group_alive(pgid)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class RunState:
    """What the local runner writes into `runs/<run-id>/run.json`."""

    def __init__(self, root: Path, data: dict[str, Any]) -> None:
        self.root = root
        self.data = data

    @classmethod
    def begin(
        cls,
        root: Path,
        run_id: str,
        steps: Iterable[tuple[str, str, str | None]],
        grace_seconds: float | None = None,
    ) -> RunState:
        """Start the record: `steps` are (model, step, skip reason or None) in the order they will run;
        `grace_seconds`: how long the runner waits for a stage after forwarding SIGTERM before it kills it."""
        now = time.time()
        data: dict[str, Any] = {
            "run_id": run_id,
            "pid": os.getpid(),
            "grace_seconds": grace_seconds,
            "phase": "Running",
            "started_at": now,
            "finished_at": None,
            "exit_code": None,
            "steps": [
                {
                    "model": model,
                    "step": step,
                    "phase": "Skipped" if reason else "Pending",
                    "detail": reason or "",
                    "started_at": None,
                    "finished_at": None,
                    "exit_code": None,
                    "log": None,
                    "pid": None,
                    "pgid": None,
                    "start_ticks": None,
                }
                for model, step, reason in steps
            ],
        }
        state = cls(root, data)
        state.save()
        return state

    def save(self) -> None:
        write_json(self.root / STATE_FILE, self.data)

    def _step(self, model: str, step: str) -> dict[str, Any]:
        return next(s for s in self.data["steps"] if s["model"] == model and s["step"] == step)

    def step_started(self, model: str, step: str) -> None:
        entry = self._step(model, step)
        if entry["phase"] == "Pending":
            entry.update(phase="Running", started_at=time.time())
            self.save()

    def step_process(self, model: str, step: str, pid: int) -> None:
        """The stage process of a running step, recorded as soon as it is started."""
        try:
            pgid: int | None = os.getpgid(pid)
        except ProcessLookupError:  # already gone: its group was its own when started in a session of its own
            pgid = None
        self._step(model, step).update(pid=pid, pgid=pgid, start_ticks=start_ticks(pid))
        self.save()

    def step_finished(
        self, model: str, step: str, status: str, exit_code: int | None, log: Path | None, detail: str = ""
    ) -> None:
        entry = self._step(model, step)
        phase = STEP_PHASES.get(status, "Omitted")  # "not run": an earlier step failed; not selected by --only
        finished = time.time() if entry["started_at"] is not None else None
        entry.update(phase=phase, finished_at=finished, exit_code=exit_code, detail=detail or entry["detail"])
        if log is not None:
            entry["log"] = str(log)
        self.save()

    def finish(self, exit_code: int) -> None:
        for entry in self.data["steps"]:
            if entry["phase"] == "Pending":
                entry["phase"] = "Omitted"
        self.data.update(phase="Succeeded" if exit_code == 0 else "Failed", exit_code=exit_code)
        self.data["finished_at"] = time.time()
        self.save()
