"""Prometheus `/metrics` of a stage process.

Metrics are prefixed `korean_llm_` and labelled `model`, `stage`, `run`, `rank`. Each stage
process owns a private registry, so tests can run several stages in one interpreter.
The local runner's event feed is in events.py, experiment trackers (MLflow, W&B) in tracking.py.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from korean_llm import dist
from korean_llm.config import StageConfig

log = logging.getLogger("korean_llm")
LABELS = ("model", "stage", "run", "rank")


# Log keys of TRL's preference and RL trainers (DPO, ORPO, KTO and GRPO share them) -> gauge names.
PREFERENCE_LOG_KEYS = {
    "rewards/margins": ("reward_margin", "Mean implicit reward of chosen minus rejected answers"),
    "rewards/chosen": ("reward_chosen", "Mean implicit reward of chosen (desirable) answers"),
    "rewards/rejected": ("reward_rejected", "Mean implicit reward of rejected (undesirable) answers"),
    "rewards/accuracies": ("reward_accuracy", "Share of pairs whose chosen answer out-scores the rejected one"),
    "kl": ("kl", "KL divergence of the policy from the reference model"),
    "reward": ("reward_mean", "Mean weighted total reward of the sampled completions (GRPO)"),
}
# GRPO logs every reward function as `rewards/<function>/mean`.
REWARD_FUNCTION_KEY = re.compile(r"^rewards/(?P<function>[^/]+)/mean$")


class StageMetrics:
    """Gauges for one stage; `serve()` exposes them on `metrics.host:metrics.port`."""

    def __init__(self, cfg: StageConfig) -> None:
        self.registry = CollectorRegistry()
        self.labels = {"model": cfg.run.model_name, "stage": cfg.stage, "run": cfg.run.run_id, "rank": str(dist.rank())}
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
        self.preference = {key: gauge(name, doc) for key, (name, doc) in PREFERENCE_LOG_KEYS.items()}
        self.reward_function = Gauge(
            "korean_llm_reward_function_mean",
            "Mean reward of one GRPO reward function at the last logging step",
            (*LABELS, "function"),
            registry=self.registry,
        )
        self.failures = Counter(
            "korean_llm_stage_failures", "Stage runs that ended with an error", LABELS, registry=self.registry
        )

    def serve(self) -> None:
        if not self._cfg.metrics.enabled:
            return
        port = self._cfg.metrics.port
        if port:  # one exporter per process: GPU processes of one pod take consecutive ports
            port += dist.local_rank()
        server, _thread = start_http_server(port, self._cfg.metrics.host, registry=self.registry)
        self._server = server
        self.port = server.server_address[1]
        log.info("metrics on http://%s:%d/metrics", self._cfg.metrics.host, self.port)
        self.up.labels(**self.labels).set(1)
        self.failures.labels(**self.labels)  # exported as 0 from the start: increase() needs the 0 -> 1 step

    def close(self, failed: bool = False) -> None:
        if failed:
            self.failures.labels(**self.labels).inc()
            linger = self._cfg.metrics.failure_linger_seconds
            if self._server is not None and self._cfg.metrics.port and linger:  # a scraped exporter: one scrape sees it
                time.sleep(linger)
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
        for key, value in logs.items():
            if key in self.preference:
                self.preference[key].labels(**lab).set(value)
            elif match := REWARD_FUNCTION_KEY.match(key):
                self.reward_function.labels(**lab, function=match["function"]).set(value)
        mem = gpu_peak_memory()
        if mem is not None:
            self.gpu_memory_bytes.labels(**lab).set(mem)


def gpu_peak_memory() -> int | None:
    import torch

    return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None
