"""The progress feed of a stage process for the local runner: one JSON line per event in `$KOREAN_LLM_EVENTS`.

Events: `start` (step, max_steps), `log` (step, loss, tokens_per_second, eta_seconds, ...), `done` (metrics) and
`skipped` (reason), each with the stage and the time; `local.runner` follows the file to draw its progress bars.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from korean_llm import dist

EVENTS_ENV = "KOREAN_LLM_EVENTS"


def emit_event(event: dict[str, Any]) -> None:
    """Append one JSON line to `$KOREAN_LLM_EVENTS` (the local runner's progress feed), if set."""
    path = os.environ.get(EVENTS_ENV)
    if not path or not dist.is_main():
        return
    with open(Path(path), "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"time": time.time(), **event}, ensure_ascii=False) + "\n")
