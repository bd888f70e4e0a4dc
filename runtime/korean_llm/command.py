"""What a command module gives the command line: its sub-commands, each with its options and its runner.

`korean_llm.cli` asks every module in `cli.COMMAND_MODULES` for `commands()` and adds them to one parser
(the shape of TRL's `trl/cli/main.py`: `get_commands()`, then `command.register(subparsers)` and
`command.run(args)`), so the command modules never import the CLI and the CLI imports them only to build it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    """One sub-command: `korean-llm <name> ...`."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]

    def register(self, sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        parser = sub.add_parser(self.name, help=self.help)
        self.add_arguments(parser)
        parser.set_defaults(run=self.run)


def add_overrides(p: argparse.ArgumentParser, example: str) -> None:
    """`--set KEY=VALUE` (repeatable): stage config overrides, collected in `args.overrides`."""
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a stage config key, e.g. --set {example} (repeatable)",
    )
