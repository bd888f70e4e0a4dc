"""The rich console every command prints its progress and tables to (stderr: stdout stays for data)."""

from __future__ import annotations

import sys

from rich.console import Console

# Off a terminal (pod logs, CI, files) rich would wrap at 80 columns and cut table headers.
LOG_WIDTH = 160


def stderr_console() -> Console:
    return Console(stderr=True, width=None if sys.stderr.isatty() else LOG_WIDTH)
