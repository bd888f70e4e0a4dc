"""`korean-llm pipeline …`: the command group's options and dispatch.

    korean-llm pipeline submit -f values/local.yaml [-p key=value …] [--run-id ID]
    korean-llm pipeline list
    korean-llm pipeline status RUN
    korean-llm pipeline wait RUN [--timeout 3600]
    korean-llm pipeline logs RUN [--stage cpt] [--follow]
    korean-llm pipeline stop RUN
    korean-llm pipeline cleanup --older 7d [--dry-run]

Add `--backend cluster [--namespace NS] [--context CTX]` for Argo Workflows on a cluster.
"""

from __future__ import annotations

import argparse
import sys
from typing import Protocol, TextIO

from korean_llm.command import Command
from korean_llm.console import stderr_console
from korean_llm.errors import EXIT_TIMEOUT
from korean_llm.pipeline_manager.common import (
    RunStatus,
    list_table,
    parse_age,
    parse_params,
    status_table,
)

console = stderr_console()


class Backend(Protocol):
    def submit(
        self, values: list[str], template: str | None, params: dict[str, str], run_id: str | None, helm_set: list[str]
    ) -> str: ...
    def runs(self) -> list[RunStatus]: ...
    def status(self, run: str) -> RunStatus: ...
    def wait(self, run: str, timeout: float | None) -> RunStatus | None: ...
    def logs(self, run: str, stage: str | None, follow: bool, out: TextIO) -> None: ...
    def stop(self, run: str, grace: float | None = ...) -> list[str]: ...
    def cleanup(self, older_seconds: float, dry_run: bool) -> list[tuple[str, str, str]]: ...


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `pipeline` and its sub-commands."""
    p.add_argument(
        "--backend",
        choices=("local", "cluster"),
        default="local",
        help="local: runs of `korean-llm run` under --runs-dir; cluster: Argo Workflows (default: local)",
    )
    p.add_argument("--runs-dir", default="runs", help="local backend: where runs/<run-id>/ live (default: runs)")
    p.add_argument("--namespace", "-n", default=None, help="cluster: namespace (default: the context's, or in-cluster)")
    p.add_argument("--context", default=None, help="cluster: kubeconfig context (default: the current one)")
    p.add_argument(
        "--kubeconfig", default=None, help="cluster: kubeconfig file (default: $KUBECONFIG or ~/.kube/config)"
    )
    p.add_argument("--chart", default=None, help="chart folder for -f rendering (default: the repository's charts/)")
    p.add_argument("--release", default="korean-llm", help="Helm release name the chart was installed as")
    cmds = p.add_subparsers(dest="pipeline_command", required=True)

    s = cmds.add_parser("submit", help="start a run (a Workflow from the installed WorkflowTemplate, or locally)")
    s.add_argument("-f", "--values", action="append", default=[], help="values file (repeatable)")
    s.add_argument("--template", default=None, help="WorkflowTemplate name (e.g. korean-llm-qwen7b)")
    s.add_argument("-p", "--parameter", action="append", default=[], metavar="NAME=VALUE", help="workflow parameter")
    s.add_argument("--run-id", default=None, help="run id (default: r<UTC date>-<time>)")
    s.add_argument("--set", dest="helm_set", action="append", default=[], metavar="KEY=VALUE", help="helm --set")

    cmds.add_parser("list", help="runs with their phase")
    st = cmds.add_parser("status", help="each stage's phase, duration, step, loss, tokens/s, ETA")
    st.add_argument("run_name", metavar="RUN", help="run id or Workflow name")
    w = cmds.add_parser("wait", help="wait for a run: exit 0 success, 3 gate failed, 1 failure, 124 timeout")
    w.add_argument("run_name", metavar="RUN", help="run id or Workflow name")
    w.add_argument("--timeout", type=float, default=None, help="seconds (default: no limit)")
    lg = cmds.add_parser("logs", help="a run's logs (every stage, or --stage)")
    lg.add_argument("run_name", metavar="RUN", help="run id or Workflow name")
    lg.add_argument("--stage", default=None, help="only this stage (e.g. cpt)")
    lg.add_argument("--follow", "-f", action="store_true", help="keep printing until the run ends")
    sp = cmds.add_parser("stop", help="stop a run and the training jobs it started")
    sp.add_argument("run_name", metavar="RUN", help="run id or Workflow name")
    sp.add_argument(
        "--grace",
        type=float,
        default=None,
        help="local: seconds before SIGKILL (default: the runner's wait for its stage, 600, plus 60 for the report)",
    )
    c = cmds.add_parser("cleanup", help="delete finished runs older than --older (never running runs or releases)")
    c.add_argument("--older", required=True, help="age, e.g. 7d, 12h, 30m")
    c.add_argument("--dry-run", action="store_true", help="only list what would be deleted")


def make_backend(args: argparse.Namespace) -> Backend:
    if args.backend == "cluster":
        from korean_llm.pipeline_manager.cluster_backend import ClusterBackend

        return ClusterBackend(args.namespace, args.context, args.kubeconfig, args.chart, args.release)
    from korean_llm.pipeline_manager.local_backend import LocalBackend

    return LocalBackend(args.runs_dir, args.chart)


def commands() -> list[Command]:
    """`korean-llm pipeline`."""
    return [
        Command(
            "pipeline",
            "submit, list, watch, read logs of, stop and clean up pipeline runs (local or on a cluster)",
            add_arguments,
            run_command,
        )
    ]


def run_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Dispatch `korean-llm pipeline <command>`; the exit code is the command's (see the package docstring)."""
    out = out or sys.stdout
    cmd = args.pipeline_command
    age = parse_age(args.older) if cmd == "cleanup" else 0.0  # bad input fails before any cluster call
    params = parse_params(args.parameter) if cmd == "submit" else {}
    backend = make_backend(args)
    if cmd == "submit":
        name = backend.submit(args.values, args.template, params, args.run_id, args.helm_set)
        print(name, file=out)
        return 0
    if cmd == "list":
        console.print(list_table(backend.runs()))
        return 0
    if cmd == "status":
        console.print(status_table(backend.status(args.run_name)))
        return 0
    if cmd == "wait":
        result = backend.wait(args.run_name, args.timeout)
        if result is None:
            console.print(f"{args.run_name}: still running after {args.timeout:g}s")
            return EXIT_TIMEOUT
        console.print(status_table(result))
        print(result.phase if not result.gate_failed else "GateFailed", file=out)
        return result.wait_exit_code()
    if cmd == "logs":
        backend.logs(args.run_name, args.stage, args.follow, out)
        return 0
    if cmd == "stop":
        for line in backend.stop(args.run_name, args.grace):
            console.print(line)
        return 0
    for run, action, reason in backend.cleanup(age, args.dry_run):
        print(f"{action}: {run} ({reason})", file=out)
    return 0
