"""Local backend: runs of `korean-llm run` under `runs/<run-id>/`.

`submit` renders the chart here (`helm template`, with the `-f` values or else the chart's defaults), applies
`-p` to the selected WorkflowTemplate's declared parameters (only that template's DAG runs), saves the result as
`runs/<run-id>/manifests.yaml` and starts `python -m korean_llm run --manifests … --run-id …` in its own session
(process group), detached, its output in `runs/<run-id>/runner.log`. What the other commands read:

- `run.json` (written by the runner: pid, steps, phases, times, exit codes; see local/state.py),
- `logs/<model>-<step>.events.jsonl` (the stage's event feed: step, max_steps, loss, tokens/s, ETA),
- `output/<model>/<run>/<step>/manifest.json` (final loss of a finished stage),
- `logs/<model>-<step>.log` (the stage's output).

`stop` sends SIGTERM to the runner's process group; the runner forwards it to the running stage (training
stages checkpoint, then exit 143), which runs in a session of its own and so is not in that group: `stop` also
watches the stage process the runner recorded in `run.json` (its pid, group and start time), and SIGTERMs it
itself when the runner is gone. It waits for the runner and every stage process to end: by default as long as the
runner waits for its stage (its `grace_seconds`, 600) plus `REPORT_SECONDS` for the runner's report; after that
(or after `--grace` seconds) it SIGKILLs the stage's group, gives the runner `REPORT_SECONDS` to write the report,
then SIGKILLs the runner's group, and records the run as `Stopped`. A run whose runner died while a stage still
runs reads as `Running` until `stop` ends that stage; `cleanup` keeps every run with a stage process (or a worker
that outlived its stage) still alive, and `stop` ends those even in a finished run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import yaml

from korean_llm.errors import EXIT_GATE, ConfigError, KoreanLLMError
from korean_llm.local.signals import DEFAULT_GRACE_SECONDS
from korean_llm.local.state import (
    RUNNER_LOG,
    STATE_FILE,
    STOP_FILE,
    SUBMIT_FILE,
    group_alive,
    proc_stat,
    read_json,
    stage_alive,
    write_json,
)
from korean_llm.pipeline_manager.common import (
    RunStatus,
    StageStatus,
    check_params,
    check_run_id,
    new_run_id,
)

POLL_SECONDS = 0.5
# What `stop` gives the runner, after its stage has ended, to write the summary and the report.
REPORT_SECONDS = 60.0


def process_alive(pid: int | None) -> bool:
    """True while `pid` runs a korean-llm process (a zombie or a reused pid of another program is not alive)."""
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X") and b"korean" in cmdline


def _last_event(path: Path) -> dict[str, Any]:
    """Merged view of a stage's event feed: the newest step/max_steps and the last logged loss, tokens/s, ETA."""
    merged: dict[str, Any] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return merged
    for line in lines:
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:  # a line being written right now
            continue
        if not isinstance(ev, dict):
            continue
        for key in ("step", "max_steps", "loss", "tokens_per_second", "eta_seconds"):
            if ev.get(key) is not None:
                merged[key] = ev[key]
    return merged


class LocalBackend:
    """The `pipeline` commands over `runs_dir`."""

    def __init__(self, runs_dir: str | Path, chart: str | None = None) -> None:
        self.runs_dir = Path(runs_dir).resolve()
        self.chart = chart

    # ---- submit -------------------------------------------------------------------------------------
    def submit(
        self,
        values: list[str],
        template: str | None,
        params: dict[str, str],
        run_id: str | None,
        helm_set: list[str],
    ) -> str:
        from korean_llm.local import runner as local

        if not values and template is None:
            raise ConfigError("local submit: pass -f VALUES (the chart is rendered here) or --template NAME")
        run_id = _resolve_run_id(run_id, params)
        chart = Path(self.chart) if self.chart else local.REPO_ROOT / "charts"
        # Without -f the chart renders with its own defaults (values.yaml), as `helm install` would have done.
        docs = local.render(chart, values, [*helm_set, f"runId={run_id}"])
        pipelines = {p.template: p for p in local.parse_pipelines(docs)}
        if template is not None and template not in pipelines:
            rendered = f"with {', '.join(values)}" if values else f"with its default values ({chart / 'values.yaml'})"
            raise ConfigError(
                f"--template {template}: the chart rendered {rendered} has no such WorkflowTemplate "
                f"(it has: {', '.join(pipelines) or 'none'})"
            )
        selected = [template] if template else list(pipelines)
        for name in selected:
            check_params(params, list(pipelines[name].parameters), name)
        kept: list[dict[str, Any]] = []
        for doc in docs:
            meta = doc.get("metadata", {})
            if doc.get("kind") == "WorkflowTemplate" and "korean-llm/model" in meta.get("labels", {}):
                if meta["name"] not in selected:
                    continue
                for p in doc["spec"].get("arguments", {}).get("parameters", []):
                    p["value"] = run_id if p["name"] == "run-id" else params.get(p["name"], p.get("value", ""))
            kept.append(doc)
        root = self.runs_dir / run_id
        if root.exists() and not self._status(root).done:
            raise ConfigError(f"run {run_id} is still running ({root}); stop it first or choose another --run-id")
        root.mkdir(parents=True, exist_ok=True)
        (root / STOP_FILE).unlink(missing_ok=True)
        (root / STATE_FILE).unlink(missing_ok=True)  # the new runner writes its own
        manifests = root / "manifests.yaml"
        manifests.write_text(yaml.safe_dump_all(kept, allow_unicode=True, sort_keys=False), encoding="utf-8")
        command = [
            sys.executable,
            "-m",
            "korean_llm",
            "run",
            "--manifests",
            str(manifests),
            "--run-id",
            run_id,
            "--runs-dir",
            str(self.runs_dir),
        ]
        with open(root / RUNNER_LOG, "w", encoding="utf-8") as out:
            proc = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        write_json(
            root / SUBMIT_FILE,
            {
                "run_id": run_id,
                "pid": proc.pid,
                "command": command,
                "values": values,
                "templates": selected,
                "parameters": {"run-id": run_id, **params},
                "submitted_at": time.time(),
            },
        )
        return run_id

    # ---- reading ------------------------------------------------------------------------------------
    def _root(self, run: str) -> Path:
        root = self.runs_dir / run
        if not ((root / STATE_FILE).is_file() or (root / SUBMIT_FILE).is_file()):
            known = ", ".join(r.name for r in self._roots()) or "none"
            raise ConfigError(f"run '{run}': no such run in {self.runs_dir} (runs there: {known})")
        return root

    def _roots(self) -> list[Path]:
        if not self.runs_dir.is_dir():
            return []
        return sorted(p for p in self.runs_dir.iterdir() if (p / STATE_FILE).is_file() or (p / SUBMIT_FILE).is_file())

    def runs(self) -> list[RunStatus]:
        runs = [self._status(root) for root in self._roots()]
        return sorted(runs, key=lambda r: r.started_at or 0.0)

    def status(self, run: str) -> RunStatus:
        return self._status(self._root(run))

    def _status(self, root: Path) -> RunStatus:
        state = read_json(root / STATE_FILE)
        submit = read_json(root / SUBMIT_FILE) or {}
        stop_requested = (root / STOP_FILE).exists()
        if state is None:
            pid = submit.get("pid")
            if process_alive(pid):
                return RunStatus(root.name, root.name, "Pending", started_at=submit.get("submitted_at"))
            return RunStatus(
                root.name,
                root.name,
                "Stopped" if stop_requested else "Failed",
                started_at=submit.get("submitted_at"),
                message=f"the runner ended before it started the DAG: {_tail(root / RUNNER_LOG)}",
            )
        phase = state.get("phase", "Running")
        message = ""
        runner_alive = process_alive(state.get("pid"))
        orphans = [] if runner_alive else _live_stages(state)
        if phase == "Running" and not runner_alive:
            phase = "Failed"
            message = f"runner process {state.get('pid')} ended without a final status"
        if stop_requested and phase != "Succeeded":
            phase, message = "Stopped", "stopped by `korean-llm pipeline stop`"
        if orphans:  # not finished while a stage still trains, whatever the runner managed to write
            phase = "Running"
            message = (
                f"the runner (pid {state.get('pid')}) has ended but {_describe(orphans)} still runs: "
                f"`korean-llm pipeline stop {root.name}` ends it"
            )
        models = {s["model"] for s in state.get("steps", [])}
        stages: list[StageStatus] = []
        gate = False
        for s in state.get("steps", []):
            name = s["step"] if len(models) == 1 else f"{s['model']}/{s['step']}"
            st = StageStatus(
                name,
                s["phase"],
                s.get("started_at"),
                s.get("finished_at"),
                exit_code=s.get("exit_code"),
                message=s.get("detail") or "",
            )
            if st.phase == "Running" and phase in ("Failed", "Stopped"):
                st.phase, st.finished_at = "Failed", state.get("finished_at") or _mtime(root / STATE_FILE)
                st.message = "stopped" if phase == "Stopped" else "the runner ended while this step ran"
            ev = _last_event(root / "logs" / f"{s['model']}-{s['step']}.events.jsonl")
            st.step, st.total_steps = ev.get("step"), ev.get("max_steps")
            st.loss, st.tokens_per_second, st.eta_seconds = (
                ev.get("loss"),
                ev.get("tokens_per_second"),
                ev.get("eta_seconds"),
            )
            if st.loss is None and st.phase == "Succeeded":
                st.loss = _manifest_metric(root, s["model"], s["step"], "final_loss")
            if st.phase == "Failed" and st.exit_code == EXIT_GATE:
                gate = True
                st.message = st.message or "quality gate failed (exit 3)"
            stages.append(st)
        if phase == "Failed" and not message:
            failed = [st for st in stages if st.phase == "Failed"]
            message = f"{failed[0].name} failed (exit {failed[0].exit_code})" if failed else "failed"
        return RunStatus(
            root.name,
            root.name,
            phase,
            template=", ".join(submit.get("templates", [])),
            started_at=state.get("started_at"),
            finished_at=state.get("finished_at") or (_mtime(root / STATE_FILE) if phase != "Running" else None),
            exit_code=state.get("exit_code"),
            gate_failed=gate,
            message=message,
            stages=stages,
        )

    def wait(self, run: str, timeout: float | None) -> RunStatus | None:
        """The finished run, or None when `timeout` seconds passed first."""
        root = self._root(run)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self._status(root)
            if status.done:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(POLL_SECONDS)

    # ---- logs ---------------------------------------------------------------------------------------
    def _logs(self, root: Path, stage: str | None) -> list[tuple[str, Path]]:
        state = read_json(root / STATE_FILE) or {}
        steps = state.get("steps", [])
        models = {s["model"] for s in steps}
        out = []
        for s in steps:
            name = s["step"] if len(models) == 1 else f"{s['model']}/{s['step']}"
            if stage is None or stage in (s["step"], name):
                out.append((name, root / "logs" / f"{s['model']}-{s['step']}.log"))
        if stage is not None and not out:
            names = ", ".join(s["step"] for s in steps) or "none yet"
            raise ConfigError(f"--stage {stage}: run {root.name} has no such step (steps: {names})")
        return out

    def logs(self, run: str, stage: str | None, follow: bool, out: TextIO) -> None:
        root = self._root(run)
        if follow:
            for line in self.follow(root, stage):
                out.write(line)
                out.flush()
            return
        paths = self._logs(root, stage)
        if not paths:
            out.write(_read(root / RUNNER_LOG))
        for name, path in paths:
            for line in _read(path).splitlines(keepends=True):
                out.write(line if stage else f"{name}: {line}")

    def follow(self, root: Path, stage: str | None) -> Iterator[str]:
        """Lines of each selected step's log as they are written, until the run has finished."""
        done_steps: set[str] = set()
        offsets: dict[str, int] = {}
        while True:
            finished = self._status(root).done
            phases = {s.name: s.phase for s in self._status(root).stages}
            for name, path in self._logs(root, stage):
                if name in done_steps or not path.exists():
                    continue
                with open(path, encoding="utf-8", errors="replace") as fh:
                    fh.seek(offsets.get(name, 0))
                    chunk = fh.read()
                    offsets[name] = fh.tell()
                for line in chunk.splitlines(keepends=True):
                    yield line if stage else f"{name}: {line}"
                if phases.get(name) not in ("Running", "Pending"):
                    done_steps.add(name)
            if finished:
                return
            time.sleep(POLL_SECONDS)

    # ---- stop and cleanup ---------------------------------------------------------------------------
    def stop(self, run: str, grace: float | None = None) -> list[str]:
        """Stop the runner and its stage; `grace`: seconds before SIGKILL (default: the runner's own grace for
        its stage plus REPORT_SECONDS, so a stage that checkpoints in time is never killed)."""
        root = self._root(run)
        status = self._status(root)
        state = read_json(root / STATE_FILE) or {}
        if status.done and not _live_stages(state, every_step=True):
            return [f"{run} already finished ({status.phase}); nothing to stop"]
        if not status.done:
            (root / STOP_FILE).write_text(str(time.time()), encoding="utf-8")
        if grace is None:
            grace = float(state.get("grace_seconds") or DEFAULT_GRACE_SECONDS) + REPORT_SECONDS
        pid = int(state.get("pid") or (read_json(root / SUBMIT_FILE) or {}).get("pid") or 0)
        said: list[str] = []
        runner = _Runner(pid)
        if runner.alive():
            # The runner forwards SIGTERM to its stage (korean_llm.local.signals) and waits for its checkpoint.
            runner.signal(signal.SIGTERM)
            said.append(f"sent SIGTERM to the runner (pid {pid}); it forwards it to the running stage")
        else:
            for entry in _live_stages(state, every_step=True):
                _signal_stage(entry, signal.SIGTERM)
                said.append(f"the runner has ended: sent SIGTERM to {_describe([entry])}")

        def stages() -> list[dict[str, Any]]:  # re-read: a stage the runner started meanwhile is recorded there
            return _live_stages(read_json(root / STATE_FILE) or state, every_step=True)

        deadline = time.monotonic() + grace
        while (runner.alive() or stages()) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = stages()
        if left:
            for entry in left:
                _signal_stage(entry, signal.SIGKILL)
            said.append(f"{_describe(left)} still running after {grace:.0f}s: sent SIGKILL to its process group")
            deadline = time.monotonic() + REPORT_SECONDS  # the runner sees its stage end and writes the report
            while runner.alive() and time.monotonic() < deadline:
                time.sleep(0.2)
        if runner.alive():
            runner.signal(signal.SIGKILL)
            said.append(f"the runner (pid {pid}) still running: sent SIGKILL")
        deadline = time.monotonic() + 10.0  # SIGKILL is not instant: the kernel still has to tear them down
        while (runner.alive() or stages()) and time.monotonic() < deadline:
            time.sleep(0.1)
        survivors = [f"the runner (pid {pid})"] if runner.alive() else []
        survivors += [_describe([e]) for e in stages()]
        if survivors:  # exit 1: nothing the user's input could change
            raise KoreanLLMError(f"{run}: {', '.join(survivors)} still there 10s after SIGKILL (stuck in the kernel?)")
        final = read_json(root / STATE_FILE)
        if final is not None and (
            final.get("phase") == "Running" or any(s.get("phase") == "Running" for s in final.get("steps", []))
        ):
            now = time.time()
            for entry in final.get("steps", []):
                if entry.get("phase") == "Running":
                    entry.update(phase="Stopped", finished_at=now, detail="killed by `korean-llm pipeline stop`")
            if final.get("phase") == "Running":
                final.update(phase="Stopped", finished_at=now)
            write_json(root / STATE_FILE, final)
        said.append(f"{run} stopped")
        return said

    def cleanup(self, older_seconds: float, dry_run: bool) -> list[tuple[str, str, str]]:
        """(run, action, reason) for every run older than `older_seconds`; running runs and releases are kept."""
        now = time.time()
        report = []
        for root in self._roots():
            status = self._status(root)
            ended = status.finished_at or _mtime(root)
            if not status.done:
                if now - (status.started_at or now) >= older_seconds:
                    report.append((root.name, "kept", f"{status.phase.lower()}"))
                continue
            if now - ended < older_seconds:
                continue
            live = _live_stages(read_json(root / STATE_FILE) or {}, every_step=True)
            if live:  # a worker that outlived its run: its folder is still written to
                report.append((root.name, "kept", f"{_describe(live)} still runs"))
                continue
            releases = sorted(
                f"{r.parent.parent.name}/{r.name}"
                for r in root.glob("output/*/releases/*")
                if r.is_dir() and not r.is_symlink() and not r.name.startswith(".")
            )
            if releases:
                report.append((root.name, "kept", f"holds release {', '.join(releases)}"))
                continue
            if dry_run:
                report.append((root.name, "would delete", f"{status.phase}, ended {_ago(now - ended)} ago"))
            else:
                shutil.rmtree(root)
                report.append((root.name, "deleted", f"{status.phase}, ended {_ago(now - ended)} ago"))
        return report


def _resolve_run_id(run_id: str | None, params: dict[str, str]) -> str:
    if run_id and params.get("run-id") and params["run-id"] != run_id:
        raise ConfigError(f"--run-id {run_id} and -p run-id={params['run-id']} disagree: give one of them")
    return check_run_id(run_id or params.get("run-id") or new_run_id())


class _Runner:
    """The runner process: its own process group when `submit` started it (a session of its own), else itself."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.pgid: int | None = None
        if process_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                self.pgid = pid if os.getpgid(pid) == pid else None

    def alive(self) -> bool:
        return group_alive(self.pgid) if self.pgid is not None else process_alive(self.pid)

    def signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            if self.pgid is not None:
                os.killpg(self.pgid, sig)
            elif self.pid:
                os.kill(self.pid, sig)


def _live_stages(state: dict[str, Any], every_step: bool = False) -> list[dict[str, Any]]:
    """The step entries of run.json whose stage process still runs (the runner records pid, pgid, start time):
    of the running steps, or (`every_step`: for stop and cleanup) of every step, as a worker can outlive its
    stage's main process."""
    steps = state.get("steps", [])
    return [s for s in steps if (every_step or s.get("phase") == "Running") and s.get("pid") and stage_alive(s)]


def _describe(entries: list[dict[str, Any]]) -> str:
    return ", ".join(f"stage {e['model']}/{e['step']} (pid {e['pid']})" for e in entries)


def _signal_stage(entry: dict[str, Any], sig: signal.Signals) -> None:
    """SIGTERM to the stage's leader (it checkpoints and stops its workers); SIGKILL to its whole group."""
    with contextlib.suppress(ProcessLookupError):
        leader = proc_stat(int(entry["pid"]))
        if sig == signal.SIGTERM and leader is not None and leader[0] not in ("Z", "X"):
            os.kill(int(entry["pid"]), sig)
        elif entry.get("pgid"):
            os.killpg(int(entry["pgid"]), sig)
        else:
            os.kill(int(entry["pid"]), sig)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _tail(path: Path) -> str:
    lines = [ln for ln in _read(path).splitlines() if ln.strip()]
    return lines[-1] if lines else f"{path} is empty"


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time()


def _ago(seconds: float) -> str:
    from korean_llm.pipeline_manager.common import fmt_seconds

    return fmt_seconds(seconds)


def _manifest_metric(root: Path, model: str, step: str, key: str) -> float | None:
    for path in (root / "output" / model).glob(f"*/{step}/manifest.json"):
        value = (read_json(path) or {}).get("metrics", {}).get(key)
        if isinstance(value, int | float):
            return float(value)
    return None
