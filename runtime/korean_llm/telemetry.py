"""Telemetry of a stage process: Prometheus `/metrics` and a progress event stream.

Metrics are prefixed `korean_llm_` and labelled `model`, `stage`, `run` (DESIGN.md). Each stage
process owns a private registry, so tests can run several stages in one interpreter.
Experiment trackers (MLflow, W&B) are in tracking.py.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from korean_llm.config import StageConfig

log = logging.getLogger("korean_llm")
EVENTS_ENV = "KOREAN_LLM_EVENTS"
LABELS = ("model", "stage", "run")


class StageMetrics:
    """Gauges for one stage; `serve()` exposes them on `metrics.host:metrics.port`."""

    def __init__(self, cfg: StageConfig) -> None:
        self.registry = CollectorRegistry()
        self.labels = {"model": cfg.run.model_name, "stage": cfg.stage, "run": cfg.run.run_id}
        self.port: int | None = None
        self._server: Any = None
        self._cfg = cfg

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(f"korean_llm_{name}", doc, LABELS, registry=self.registry)

        self.loss = gauge("loss", "Training loss at the last logging step")
        self.learning_rate = gauge("learning_rate", "Learning rate at the last logging step")
        self.tokens_per_second = gauge("tokens_per_second", "Training throughput in input tokens per second")
        self.step = gauge("step", "Optimizer steps completed")
        self.total_steps = gauge("total_steps", "Optimizer steps planned for the stage")
        self.eta_seconds = gauge("eta_seconds", "Estimated seconds until the stage's training finishes")
        self.gpu_memory_bytes = gauge("gpu_memory_bytes", "Peak GPU memory allocated by this process")
        self.last_progress = gauge("last_progress_timestamp_seconds", "Unix time of the last completed step")
        self.up = gauge("stage_running", "1 while the stage process runs, 0 once it has ended")
        self.failures = Counter(
            "korean_llm_stage_failures", "Stage runs that ended with an error", LABELS, registry=self.registry
        )

    def serve(self) -> None:
        if not self._cfg.metrics.enabled:
            return
        server, _thread = start_http_server(self._cfg.metrics.port, self._cfg.metrics.host, registry=self.registry)
        self._server = server
        self.port = server.server_address[1]
        log.info("metrics on http://%s:%d/metrics", self._cfg.metrics.host, self.port)
        self.up.labels(**self.labels).set(1)

    def close(self, failed: bool = False) -> None:
        if failed:
            self.failures.labels(**self.labels).inc()
        self.up.labels(**self.labels).set(0)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def record(
        self, step: int, total: int, logs: dict[str, float], tokens_per_s: float | None, eta: float | None
    ) -> None:
        lab = self.labels
        self.step.labels(**lab).set(step)
        self.total_steps.labels(**lab).set(total)
        self.last_progress.labels(**lab).set(time.time())
        if "loss" in logs:
            self.loss.labels(**lab).set(logs["loss"])
        if "learning_rate" in logs:
            self.learning_rate.labels(**lab).set(logs["learning_rate"])
        if tokens_per_s is not None:
            self.tokens_per_second.labels(**lab).set(tokens_per_s)
        if eta is not None:
            self.eta_seconds.labels(**lab).set(eta)
        mem = gpu_peak_memory()
        if mem is not None:
            self.gpu_memory_bytes.labels(**lab).set(mem)


def gpu_peak_memory() -> int | None:
    import torch

    return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None


def emit_event(event: dict[str, Any]) -> None:
    """Append one JSON line to `$KOREAN_LLM_EVENTS` (the local runner's progress feed), if set."""
    path = os.environ.get(EVENTS_ENV)
    if not path:
        return
    with open(Path(path), "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"time": time.time(), **event}, ensure_ascii=False) + "\n")
