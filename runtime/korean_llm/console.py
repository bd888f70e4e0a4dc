"""The rich console every command prints its progress and tables to (stderr: stdout stays for data), and logging."""

from __future__ import annotations

import logging
import os
import sys

from rich.console import Console

from korean_llm import dist

# Off a terminal (pod logs, CI, files) rich would wrap at 80 columns and cut table headers.
LOG_WIDTH = 160


def stderr_console() -> Console:
    return Console(stderr=True, width=None if sys.stderr.isatty() else LOG_WIDTH)


def setup_logging(verbose: bool = False) -> None:
    """Rich output on a terminal; plain one-line records otherwise (pod logs, files, the local runner)."""
    level = logging.DEBUG if verbose else logging.INFO
    if not dist.is_main():
        level = logging.WARNING  # one process speaks for the job; the others only warn
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(show_path=False, rich_tracebacks=False, markup=False)
        logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)
    else:
        logging.basicConfig(
            level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True
        )
    for noisy in ("httpx", "urllib3", "datasets", "filelock", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
