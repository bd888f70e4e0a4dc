"""Local runner: the chart's DAG, run on this machine.

    korean-llm run -f values/local.yaml

It renders `charts/` with `helm template`, reads each WorkflowTemplate's DAG and the stage
configs from the rendered ConfigMaps, and runs every step's container command (the PyTorchJob
Master's `pytorch` container, the TrainJob's first trainer pod on its runtime with the PET_* variables Kubeflow
Trainer injects (korean_llm/local/trainjob.py), or a plain container step) as a local process. Volumes are mapped
into `runs/<run-id>/`: PVCs mounted at `/data` and `/output` become `runs/<run-id>/data` and
`runs/<run-id>/output`; ConfigMap volumes are written out under `runs/<run-id>/config/`.
With mlflow installed and no `MLFLOW_TRACKING_URI` set, stages track into `runs/<run-id>/mlruns/mlflow.db`
(`mlflow ui --backend-store-uri sqlite:///runs/<run-id>/mlruns/mlflow.db` shows them). A failed stage ends at
once: its exporter does not wait for a scrape (`metrics.failure_linger_seconds` is 0 unless a stage config sets it).
Steps that only make sense in a cluster (a patch of the inference Deployment, the exit handler)
are reported as skipped with the reason, never silently dropped.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from korean_llm.command import Command
from korean_llm.config import yaml_load
from korean_llm.console import stderr_console
from korean_llm.errors import ConfigError
from korean_llm.local.signals import DEFAULT_GRACE_SECONDS, StopRequest, stop_on_signals
from korean_llm.local.state import RunState
from korean_llm.local.trainjob import local_trainer_pod, multi_node_refusal
from korean_llm.observe.events import EVENTS_ENV

console = stderr_console()
REPO_ROOT = Path(__file__).resolve().parents[3]
MIN_HELM = (3, 14)
PARAM = re.compile(r"\{\{\s*workflow\.parameters\.([A-Za-z0-9_-]+)\s*\}\}")


@dataclass
class Step:
    """One DAG task resolved to a local process (or a reason why it cannot run here)."""

    name: str
    depends: list[str]
    command: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    mounts: dict[str, dict[str, Any]] = field(default_factory=dict)  # mountPath -> volume
    skip_reason: str | None = None


@dataclass
class Pipeline:
    model: str
    template: str
    parameters: dict[str, str]
    steps: list[Step]
    configmaps: dict[str, dict[str, str]]


@dataclass
class StepResult:
    model: str
    step: str
    status: str
    exit_code: int | None = None
    seconds: float = 0.0
    detail: str = ""
    log: Path | None = None


def find_helm() -> str:
    """helm from the project's virtualenv, else from PATH; at least 3.14."""
    candidates = [Path(sys.prefix) / "bin" / "helm", shutil.which("helm")]
    for cand in candidates:
        if cand and Path(cand).is_file():
            out = subprocess.run([str(cand), "version", "--short"], capture_output=True, text=True, check=False)
            m = re.search(r"v(\d+)\.(\d+)", out.stdout)
            if m and (int(m.group(1)), int(m.group(2))) >= MIN_HELM:
                return str(cand)
    raise ConfigError("helm >= 3.14 not found: run `make setup` (it installs helm into .venv/bin)")


def render_text(
    chart: Path, values: list[str], sets: list[str], release: str = "korean-llm", set_json: Sequence[str] = ()
) -> str:
    """`helm template` output of the chart (YAML stream).

    `sets` go to `--set`, which keeps a float such as `1.5` a string (Helm's strvals parses only integers and
    booleans); `set_json` goes to `--set-json` (`key=1.5`, `key=[1,2]`), which keeps JSON types.
    """
    cmd = [find_helm(), "template", release, str(chart)]
    for v in values:
        if not Path(v).is_file():
            raise ConfigError(f"{v}: values file not found")
        cmd += ["-f", v]
    for s in sets:
        cmd += ["--set", s]
    for j in set_json:
        cmd += ["--set-json", j]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        given = ", ".join(values) or f"the chart's default values ({chart / 'values.yaml'})"
        raise ConfigError(f"helm template failed for {given}:\n{out.stderr.strip()}")
    return out.stdout


def render(
    chart: Path, values: list[str], sets: list[str], release: str = "korean-llm", set_json: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """`helm template` the chart and return its objects."""
    text = render_text(chart, values, sets, release, set_json)
    return [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]


def load_objects(args: Any) -> list[dict[str, Any]]:
    """The chart's objects: rendered now with helm, or read from `--manifests` (rendered elsewhere)."""
    if getattr(args, "manifests", None):
        path = Path(args.manifests)
        if not path.is_file():
            raise ConfigError(f"{path}: rendered manifests not found")
        return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if isinstance(d, dict)]
    chart, values = _chart_and_values(args)
    sets = list(args.helm_set) + ([f"runId={args.run_id}"] if args.run_id else [])
    return render(chart, values, sets, set_json=args.helm_set_json)


def _volumes_by_mount(container: dict[str, Any], pod_spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    volumes = {v["name"]: v for v in pod_spec.get("volumes", []) or []}
    return {m["mountPath"]: volumes.get(m["name"], {}) for m in container.get("volumeMounts", []) or []}


def _env(container: dict[str, Any]) -> dict[str, str]:
    # Only literal values travel; secretKeyRef and the like come from the local environment, if set there.
    return {e["name"]: str(e["value"]) for e in container.get("env", []) or [] if "value" in e}


def _step_from_template(name: str, depends: list[str], tpl: dict[str, Any], docs: list[dict[str, Any]]) -> Step:
    if "container" in tpl:
        c = tpl["container"]
        pod = {"volumes": tpl.get("volumes", [])}
        return Step(name, depends, [*c.get("command", []), *c.get("args", [])], _env(c), _volumes_by_mount(c, pod))
    if "resource" in tpl:
        res = tpl["resource"]
        manifest = yaml.safe_load(res.get("manifest", "")) or {}
        kind = manifest.get("kind", "?")
        target = manifest.get("metadata", {}).get("name") or manifest.get("metadata", {}).get("generateName", "")
        if kind == "TrainJob" and res.get("action") in ("create", "apply"):  # Kubeflow Trainer v2: node 0
            trainer = local_trainer_pod(manifest, docs)
            c = trainer.container
            return Step(
                name,
                depends,
                [*c.get("command", []), *c.get("args", [])],
                _env(c),
                _volumes_by_mount(c, trainer.pod_spec),
            )
        if kind != "PyTorchJob" or res.get("action") not in ("create", "apply"):
            return Step(name, depends, skip_reason=f"cluster only: {res.get('action')} {kind}/{target}")
        master = manifest["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
        c = next(c for c in master["spec"]["containers"] if c["name"] == "pytorch")
        return Step(
            name, depends, [*c.get("command", []), *c.get("args", [])], _env(c), _volumes_by_mount(c, master["spec"])
        )
    kind = next((k for k in ("suspend", "http", "steps", "dag", "script") if k in tpl), "unknown")
    return Step(name, depends, skip_reason=f"cluster only: {kind} template")


def _topological(steps: list[Step]) -> list[Step]:
    by_name = {s.name: s for s in steps}
    done: list[Step] = []
    seen: set[str] = set()

    def visit(s: Step, stack: tuple[str, ...]) -> None:
        if s.name in seen:
            return
        if s.name in stack:
            raise ConfigError(f"DAG cycle through {' -> '.join((*stack, s.name))}")
        for d in s.depends:
            if d not in by_name:
                raise ConfigError(f"DAG task '{s.name}' depends on unknown task '{d}'")
            visit(by_name[d], (*stack, s.name))
        seen.add(s.name)
        done.append(s)

    for s in steps:
        visit(s, ())
    return done


def _task_depends(task: dict[str, Any]) -> list[str]:
    if task.get("dependencies"):
        return list(task["dependencies"])
    if task.get("depends"):  # enhanced depends: "a && b.Succeeded"
        return sorted({t.split(".")[0] for t in re.findall(r"[A-Za-z0-9_-]+(?:\.[A-Za-z]+)?", task["depends"])})
    return []


def parse_pipelines(docs: list[dict[str, Any]]) -> list[Pipeline]:
    """Pipelines (one per model WorkflowTemplate) with their steps in dependency order."""
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d.get("kind") == "ConfigMap"}
    pipelines = []
    for doc in docs:
        labels = doc.get("metadata", {}).get("labels", {})
        if doc.get("kind") != "WorkflowTemplate" or "korean-llm/model" not in labels:
            continue
        spec = doc["spec"]
        templates = {t["name"]: t for t in spec["templates"]}
        entry = templates[spec["entrypoint"]]
        if "dag" not in entry:
            raise ConfigError(f"WorkflowTemplate {doc['metadata']['name']}: entrypoint is not a DAG")
        steps = [
            _step_from_template(t["name"], _task_depends(t), templates[t["template"]], docs)
            for t in entry["dag"]["tasks"]
        ]
        if spec.get("onExit"):
            steps.append(Step(spec["onExit"], [], skip_reason="cluster only: exit handler (notification)"))
        params = {p["name"]: str(p.get("value", "")) for p in spec.get("arguments", {}).get("parameters", [])}
        pipelines.append(
            Pipeline(labels["korean-llm/model"], doc["metadata"]["name"], params, _topological(steps), configmaps)
        )
    if not pipelines:
        raise ConfigError("the rendered chart has no pipeline WorkflowTemplate (is `models:` empty?)")
    return pipelines


LOCAL_MOUNTS_ENV = "KOREAN_LLM_LOCAL_MOUNTS"


class PathMap:
    """Container paths -> local paths, longest mount first."""

    def __init__(self, mapping: dict[str, Path]) -> None:
        self.mapping = sorted(mapping.items(), key=lambda kv: -len(kv[0]))

    def __call__(self, value: str) -> str:
        for mount, local in self.mapping:
            if value == mount or value.startswith(mount.rstrip("/") + "/"):
                return str(local) + value[len(mount.rstrip("/")) :]
            if "=" in value:  # --set key=/data/...
                key, _, rest = value.partition("=")
                if rest == mount or rest.startswith(mount.rstrip("/") + "/"):
                    return f"{key}={self(rest)}"
        return value

    def walk(self, obj: Any) -> Any:
        if isinstance(obj, dict):
            return {k: self.walk(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.walk(v) for v in obj]
        return self(obj) if isinstance(obj, str) else obj


def _substitute(text: str, params: dict[str, str]) -> str:
    def repl(m: re.Match[str]) -> str:
        if m.group(1) not in params:
            raise ConfigError(f"unknown workflow parameter '{m.group(1)}' in '{text}'")
        return params[m.group(1)]

    return PARAM.sub(repl, text)


def _local_stage_config(parsed: Any) -> Any:
    """A stage config as the runner writes it: `metrics.failure_linger_seconds` 0 unless the config sets it (the
    linger lets the cluster's Prometheus scrape a failed stage's counter; nothing scrapes a local stage process)."""
    if isinstance(parsed, dict) and "stage" in parsed and isinstance(parsed.get("metrics") or {}, dict):
        parsed = {**parsed, "metrics": {"failure_linger_seconds": 0, **(parsed.get("metrics") or {})}}
    return parsed


def prepare_step(step: Step, pipe: Pipeline, root: Path) -> tuple[list[str], dict[str, str]]:
    """Map volumes into `root`, write ConfigMap files, and return the local command and env."""
    mapping: dict[str, Path] = {}
    for mount, volume in step.mounts.items():
        if "configMap" in volume:
            local = root / "config" / volume["configMap"]["name"]
            mapping[mount] = local
        elif mount in ("/data", "/output"):
            mapping[mount] = root / mount.strip("/")
        else:
            mapping[mount] = root / "volumes" / mount.strip("/").replace("/", "_")
    pmap = PathMap(mapping)
    # In the stage configs only the data volumes (and the config mount) are mapped: scratch mounts such as /tmp are
    # empty on a cluster, so a config path there is the user's own file on this machine, read where it is.
    config_map = PathMap(
        {m: p for m, p in mapping.items() if m in ("/data", "/output") or "configMap" in step.mounts[m]}
    )
    for mount, volume in step.mounts.items():
        local = mapping[mount]
        local.mkdir(parents=True, exist_ok=True)
        if "configMap" in volume:
            data = pipe.configmaps.get(volume["configMap"]["name"], {})
            for key, text in data.items():
                parsed = _local_stage_config(yaml_load(_substitute(text, pipe.parameters)))
                (local / key).write_text(yaml.safe_dump(config_map.walk(parsed), allow_unicode=True, sort_keys=False))
    command = [pmap(_substitute(a, pipe.parameters)) for a in step.command]
    if command and command[0] in ("python", "python3"):
        command[0] = sys.executable
    elif command and command[0] == "torchrun":
        command = [sys.executable, "-m", "torch.distributed.run", *command[1:]]
    env = {k: pmap(_substitute(v, pipe.parameters)) for k, v in step.env.items()}
    # Lets a stage say, for a missing /data/... input, where the runner put that folder (korean_llm.data.source_files).
    mounts = {m: str(p) for m, p in mapping.items() if m in ("/data", "/output")}
    env[LOCAL_MOUNTS_ENV] = json.dumps(mounts)
    return command, env


def _follow_events(path: Path, offset: int, progress: Progress, task: Any) -> int:
    if not path.exists():
        return offset
    with open(path, encoding="utf-8") as fh:
        fh.seek(offset)
        for line in fh:
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                continue
            if ev.get("max_steps"):
                progress.update(task, total=ev["max_steps"], completed=ev.get("step", 0))
            if "loss" in ev:
                progress.update(task, info=f"loss {ev['loss']:.4f}")
        return fh.tell()


def run_step(
    step: Step,
    pipe: Pipeline,
    root: Path,
    progress: Progress,
    stop: StopRequest | None = None,
    started: Callable[[int], None] | None = None,
) -> StepResult:
    """Run one step as a local process; `started(pid)` is called as soon as the stage process exists."""
    label = f"{pipe.model}/{step.name}"
    if step.skip_reason:
        progress.add_task(label, total=1, completed=1, info=f"skipped: {step.skip_reason}")
        return StepResult(pipe.model, step.name, "skipped", detail=step.skip_reason)
    refusal = multi_node_refusal(step.name, step.env)
    if refusal:
        progress.add_task(label, total=1, completed=0, info=f"[red]{refusal}")
        return StepResult(pipe.model, step.name, "failed", ConfigError.exit_code, detail=refusal)
    command, env = prepare_step(step, pipe, root)
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{pipe.model}-{step.name}.log"
    events = logs / f"{pipe.model}-{step.name}.events.jsonl"
    events.unlink(missing_ok=True)
    full_env = {**os.environ, **env, EVENTS_ENV: str(events), "PYTHONUNBUFFERED": "1"}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT / "runtime"), os.environ.get("PYTHONPATH")]))
    if importlib.util.find_spec("mlflow") is not None:  # tracked runs with no server: a store beside the outputs
        (root / "mlruns").mkdir(exist_ok=True)
        full_env.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    task = progress.add_task(label, total=None, info="starting")
    started_at = time.time()
    with open(log_path, "w", encoding="utf-8") as log_fh:
        log_fh.write("$ " + " ".join(command) + "\n")
        log_fh.flush()
        # A session of its own: a terminal's Ctrl-C reaches the runner, which stops the stage cleanly (SIGTERM)
        proc = subprocess.Popen(
            command, stdout=log_fh, stderr=subprocess.STDOUT, env=full_env, start_new_session=stop is not None
        )
        if started is not None:
            started(proc.pid)
        if stop is not None:
            stop.attach(proc)
        offset = 0
        while proc.poll() is None:
            offset = _follow_events(events, offset, progress, task)
            if stop is not None:
                stop.tick()
            time.sleep(0.2)
        _follow_events(events, offset, progress, task)
    seconds = time.time() - started_at
    code = proc.returncode
    skipped = events.exists() and any('"type": "skipped"' in ln for ln in events.read_text().splitlines())
    status = "ok" if code == 0 else "failed"
    if stop is not None and stop.requested and code != 0:
        status = "stopped"
    if code == 0:
        total = progress.tasks[task].total or 1
        progress.update(task, total=total, completed=total, info="already complete" if skipped else "done")
    elif status == "stopped":
        progress.update(task, info=f"[yellow]stopped by {stop.name if stop else 'a signal'} (exit {code})")
    else:
        progress.update(task, info=f"[red]failed (exit {code})")
    return StepResult(
        pipe.model,
        step.name,
        "done before" if skipped else status,
        code,
        seconds,
        log=log_path,
        detail="" if code == 0 else _last_error(log_path),
    )


def _last_error(log_path: Path) -> str:
    lines = [ln for ln in log_path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    return errors[-1] if errors else (lines[-1] if lines else "")


def summary_table(results: list[StepResult], root: Path) -> Table:
    table = Table(title=f"korean-llm run {root.name}")
    for col in ("model", "step", "status", "exit", "seconds", "final loss", "detail"):
        table.add_column(col)
    for r in results:
        loss = ""
        manifest = _manifest_of(root, r)
        if manifest and manifest.get("metrics", {}).get("final_loss") is not None:
            loss = f"{manifest['metrics']['final_loss']:.4f}"
        color = {"ok": "green", "failed": "red", "skipped": "yellow", "stopped": "yellow"}.get(r.status, "cyan")
        table.add_row(
            r.model,
            r.step,
            f"[{color}]{r.status}",
            "" if r.exit_code is None else str(r.exit_code),
            f"{r.seconds:.1f}",
            loss,
            escape(r.detail[:120]),  # a gate line names checks like min_accuracy[task]: not rich markup
        )
    return table


def _manifest_of(root: Path, r: StepResult) -> dict[str, Any] | None:
    matches = list((root / "output" / r.model).glob(f"*/{r.step}/manifest.json"))
    return json.loads(matches[0].read_text()) if matches else None


def _chart_and_values(args: Any) -> tuple[Path, list[str]]:
    if not args.values:
        raise ConfigError("no values file: pass -f values/<file>.yaml (or --manifests for run)")
    chart = Path(args.chart) if args.chart else REPO_ROOT / "charts"
    if not (chart / "Chart.yaml").is_file():
        raise ConfigError(f"{chart}: not a Helm chart (no Chart.yaml)")
    return chart, list(args.values)


def render_command(args: Any) -> int:
    """`korean-llm render`: print the DAG of every model as the runner would run it (`-o`: save the manifests)."""
    chart, values = _chart_and_values(args)
    sets = list(args.helm_set) + ([f"runId={args.run_id}"] if args.run_id else [])
    text = render_text(chart, values, sets, set_json=args.helm_set_json)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        console.print(f"rendered manifests written to {args.output} (run them with `korean-llm run --manifests`)")
    docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    for pipe in parse_pipelines(docs):
        console.print(f"[bold]{pipe.template}[/] (model {pipe.model}, run {pipe.parameters.get('run-id')})")
        for s in pipe.steps:
            after = f" after {', '.join(s.depends)}" if s.depends else ""
            what = f"skipped: {s.skip_reason}" if s.skip_reason else " ".join(s.command)
            console.print(f"  {s.name}{after}: {what}")
    return 0


def run_command(args: Any) -> int:
    """`korean-llm run`: render, then run every model's DAG in order; exit code of the first failed step."""
    from korean_llm.local.report import write_report

    pipelines = parse_pipelines(load_objects(args))
    run_id = args.run_id or pipelines[0].parameters.get("run-id") or "local"
    root = Path(args.runs_dir).resolve() / run_id
    root.mkdir(parents=True, exist_ok=True)
    console.print(f"run [bold]{run_id}[/]: {len(pipelines)} pipeline(s), outputs in {root}")
    state = RunState.begin(
        root, run_id, [(p.model, s.name, s.skip_reason) for p in pipelines for s in p.steps], DEFAULT_GRACE_SECONDS
    )
    console.print(
        f"paths: /data -> {root / 'data'}, /output -> {root / 'output'}; any other path in the configs is read "
        f"where it is (relative ones from {Path.cwd()})"
    )
    results: list[StepResult] = []
    exit_code = 0
    columns = (
        TextColumn("{task.description:<22}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
    )
    with stop_on_signals() as stop:  # held until the report is written: a second signal cannot cut it short
        with Progress(*columns, console=console) as progress:
            for pipe in pipelines:
                failed = False
                for step in pipe.steps:
                    if args.only and step.name not in args.only:
                        state.step_finished(pipe.model, step.name, "not run", None, None, "not selected by --only")
                        continue
                    if stop.requested:
                        results.append(StepResult(pipe.model, step.name, "not run", detail=f"stopped by {stop.name}"))
                        state.step_finished(pipe.model, step.name, "not run", None, None, f"stopped by {stop.name}")
                        continue
                    if failed:
                        results.append(StepResult(pipe.model, step.name, "not run", detail="an earlier step failed"))
                        state.step_finished(pipe.model, step.name, "not run", None, None, "an earlier step failed")
                        continue
                    state.step_started(pipe.model, step.name)
                    record = functools.partial(state.step_process, pipe.model, step.name)
                    result = run_step(step, pipe, root, progress, stop, record)
                    results.append(result)
                    state.step_finished(
                        pipe.model, step.name, result.status, result.exit_code, result.log, result.detail
                    )
                    if result.status == "failed":
                        failed = True
                        exit_code = exit_code or (result.exit_code or 1)
        if stop.requested:
            exit_code = stop.exit_code
        console.print(summary_table(results, root))
        report = write_report(root, [(r.model, r.step, r.status) for r in results])
        console.print(f"report: {report}")
    if (root / "mlruns" / "mlflow.db").is_file():
        console.print(f"tracked runs: mlflow ui --backend-store-uri sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    for r in results:
        if r.status == "failed":
            console.print(f"[red]{r.model}/{r.step} failed (exit {r.exit_code}):[/] {escape(r.detail)}\n  log: {r.log}")
        elif r.status == "stopped":
            console.print(f"[yellow]{r.model}/{r.step} stopped (exit {r.exit_code}); run the same command to resume")
    state.finish(exit_code)
    return exit_code


def _add_arguments(name: str) -> Callable[[argparse.ArgumentParser], None]:
    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument("-f", "--values", action="append", default=[], help="values file (repeatable)")
        p.add_argument(
            "--set",
            dest="helm_set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="helm --set override (repeatable; a float such as 1.5 stays a string there, use --set-json)",
        )
        p.add_argument(
            "--set-json",
            dest="helm_set_json",
            action="append",
            default=[],
            metavar="KEY=JSON",
            help="helm --set-json override, JSON-typed (repeatable): --set-json 'a.b=1.5'",
        )
        p.add_argument("--chart", default=None, help="chart folder (default: the repository's charts/)")
        p.add_argument("--runs-dir", default="runs", help="where runs/<run-id>/ is created")
        p.add_argument("--run-id", default=None, help="run id (default: the values' runId)")
        if name == "run":
            p.add_argument("--only", action="append", default=[], help="run only these steps (repeatable)")
            p.add_argument("--manifests", default=None, help="run manifests rendered elsewhere (no helm needed)")
        else:
            p.add_argument("-o", "--output", default=None, help="also write the rendered manifests to this file")

    return add


def commands() -> list[Command]:
    """`korean-llm run` and `korean-llm render`."""
    return [
        Command("run", "render the chart and run the pipeline DAG locally", _add_arguments("run"), run_command),
        Command("render", "render the chart with helm and list the DAG", _add_arguments("render"), render_command),
    ]
