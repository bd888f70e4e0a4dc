"""Command line: one command per stage, plus the local pipeline runner.

    korean-llm run -f values/local.yaml            # render the chart, run the DAG locally
    korean-llm render -f values/local.yaml         # print what `helm template` renders
    korean-llm <stage> --config FILE [--set k=v]   # preprocess | cpt | sft | rlhf | evaluate | deploy
    korean-llm stage --config FILE                 # the stage named by $STAGE (or the config's `stage`)
    korean-llm bench --model qwen2.5-7b --compare unsloth,hf   # training throughput (bench/throughput.py)
    korean-llm pipeline submit|list|status|wait|logs|stop|cleanup   # manage runs (pipeline_manager/)
    korean-llm data inspect NAME|PATH [-f values.yaml]         # a data set as the stages would read it

Exit codes: korean_llm/errors.py and the README's table.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from korean_llm.command import Command
from korean_llm.console import setup_logging
from korean_llm.errors import EXIT_BUG, EXIT_RETRYABLE, KoreanLLMError, transient
from korean_llm.pipeline.diskspace import disk_full

log = logging.getLogger("korean_llm")

# Each module has `commands() -> list[Command]`; none of them imports this one.
COMMAND_MODULES = (
    "korean_llm.stages",
    "korean_llm.local.runner",
    "korean_llm.bench.throughput",
    "korean_llm.pipeline_manager.commands",
    "korean_llm.data.inspect",
)


def get_commands() -> list[Command]:
    """Every sub-command, in help order: the stages, the local runner, bench, pipeline, data."""
    commands: list[Command] = []
    for name in COMMAND_MODULES:
        commands.extend(importlib.import_module(name).commands())
    return commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="korean-llm", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in get_commands():
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        return int(args.run(args))
    except KoreanLLMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        full = disk_full(exc, [Path.cwd()])  # stages name their own folders (stages.run_stage); this is the rest
        if full is not None:
            print(f"error: {full}", file=sys.stderr)
            return full.exit_code
        if transient(exc):  # e.g. EIO / ESTALE on the output volume: the operator restarts the pod
            print(f"error: transient failure, exit {EXIT_RETRYABLE} to be restarted: {exc!r}", file=sys.stderr)
            return EXIT_RETRYABLE
        log.exception("unexpected error (exit %d): please report it with the traceback above", EXIT_BUG)
        return EXIT_BUG


def entrypoint() -> None:
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
