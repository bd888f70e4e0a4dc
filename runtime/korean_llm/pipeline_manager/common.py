"""What both backends share: the run and stage records, exit codes, parameter and age parsing, tables."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from rich.table import Table

from korean_llm.errors import EXIT_BUG, EXIT_GATE, EXIT_OK, ConfigError, RetryableError

TERMINAL_PHASES = ("Succeeded", "Failed", "Error", "Stopped")
RUN_ID = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # becomes part of object names (DNS-1123 label)
AGE = re.compile(r"^(\d+)([smhdw])$")
AGE_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class ClusterUnreachable(RetryableError):
    """No Kubernetes API server answered (or no kubeconfig / in-cluster service account was found): exit 129."""


@dataclass
class StageStatus:
    """One step of a run as `status` shows it."""

    name: str
    phase: str
    started_at: float | None = None
    finished_at: float | None = None
    step: int | None = None
    total_steps: int | None = None
    loss: float | None = None
    tokens_per_second: float | None = None
    eta_seconds: float | None = None
    exit_code: int | None = None
    message: str = ""

    def duration(self, now: float | None = None) -> float | None:
        if self.started_at is None:
            return None
        return (self.finished_at or now or time.time()) - self.started_at


@dataclass
class RunStatus:
    """One run (a local run folder or a Workflow)."""

    name: str
    run_id: str
    phase: str
    template: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    gate_failed: bool = False
    message: str = ""
    stages: list[StageStatus] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.phase in TERMINAL_PHASES

    def wait_exit_code(self) -> int:
        """`wait`'s exit code for a finished run: 0 success, 3 the evaluate gate stopped it, 1 otherwise."""
        if self.phase == "Succeeded":
            return EXIT_OK
        return EXIT_GATE if self.gate_failed else EXIT_BUG

    def current(self) -> str:
        running = [s.name for s in self.stages if s.phase == "Running"]
        if running:
            return ", ".join(running)
        done = sum(s.phase in ("Succeeded", "Skipped") for s in self.stages)
        return f"{done}/{len(self.stages)} steps done" if self.stages else ""


def parse_age(text: str) -> float:
    """`7d`, `12h`, `30m`, `45s`, `2w` -> seconds."""
    m = AGE.match(text.strip())
    if not m:
        raise ConfigError(f"--older '{text}': expected a number and a unit s, m, h, d or w (e.g. 7d)")
    return int(m.group(1)) * AGE_SECONDS[m.group(2)]


def parse_params(pairs: list[str]) -> dict[str, str]:
    """`-p key=value` options -> dict; a pair without `=` or with an empty key is an error."""
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"-p '{pair}': expected NAME=VALUE (e.g. -p run-id=r2)")
        params[key.strip()] = value
    return params


def check_params(params: dict[str, str], declared: list[str], template: str) -> None:
    """Every `-p` name must be one of the template's declared `spec.arguments.parameters`."""
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise ConfigError(
            f"-p {unknown[0]}: WorkflowTemplate {template} declares no parameter '{unknown[0]}' "
            f"(it declares: {', '.join(declared) or 'none'})"
        )


def check_run_id(run_id: str) -> str:
    if len(run_id) > 40 or not RUN_ID.match(run_id):
        raise ConfigError(
            f"run id '{run_id}': expected at most 40 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit (it becomes part of Kubernetes object names)"
        )
    return run_id


def new_run_id() -> str:
    return "r" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def parse_time(value: str | None) -> float | None:
    """Kubernetes / Argo RFC 3339 times (`2026-12-01T20:11:58Z`) -> Unix seconds."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def fmt_time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


PHASE_COLORS = {"Succeeded": "green", "Failed": "red", "Error": "red", "Stopped": "yellow", "Running": "cyan"}


def list_table(runs: list[RunStatus]) -> Table:
    table = Table(title="korean-llm runs")
    for col in ("name", "run", "phase", "started (UTC)", "duration", "now"):
        table.add_column(col)
    now = time.time()
    for r in runs:
        color = PHASE_COLORS.get(r.phase, "white")
        duration = None if r.started_at is None else (r.finished_at or now) - r.started_at
        table.add_row(
            r.name, r.run_id, f"[{color}]{r.phase}", fmt_time(r.started_at), fmt_seconds(duration), r.current()
        )
    return table


def status_table(run: RunStatus) -> Table:
    title = f"{run.name}: {run.phase}" + (f" ({run.message})" if run.message else "")
    table = Table(title=title)
    for col in ("stage", "phase", "duration", "step", "loss", "tokens/s", "ETA", "message"):
        table.add_column(col)
    now = time.time()
    for s in run.stages:
        color = PHASE_COLORS.get(s.phase, "white")
        steps = "-" if s.step is None else f"{s.step}/{s.total_steps or '?'}"
        eta = s.eta_seconds if s.phase == "Running" else None
        table.add_row(
            s.name,
            f"[{color}]{s.phase}",
            fmt_seconds(s.duration(now)),
            steps,
            _num(s.loss, ".4f"),
            _num(s.tokens_per_second, ".0f"),
            fmt_seconds(eta),
            s.message[:80],
        )
    return table
