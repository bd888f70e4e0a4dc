"""The stage failure counter as Prometheus sees it: exported as 0 while the stage runs, and still served for one
scrape after the failure, so the chart's `increase(korean_llm_stage_failures_total[15m]) > 0` alert can fire."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request

import pytest

from korean_llm.config import StageConfig, build_config
from korean_llm.observe.metrics import StageMetrics

LABELS = 'model="m1",rank="0",run="r1",stage="cpt"'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def _config(**metrics: object) -> StageConfig:
    return build_config(
        {"stage": "cpt", "run": {"model_name": "m1", "run_id": "r1"}, "metrics": {"host": "127.0.0.1", **metrics}},
        env={},
    )


def test_failure_counter_is_zero_while_running_and_scraped_after_a_failure() -> None:
    port = _free_port()
    cfg = _config(port=port, failure_linger_seconds=1.5)
    metrics = StageMetrics(cfg)
    metrics.serve()
    assert f"korean_llm_stage_failures_total{{{LABELS}}} 0.0" in _scrape(metrics.port or port)
    closer = threading.Thread(target=metrics.close, kwargs={"failed": True})
    closer.start()
    time.sleep(0.5)  # inside the linger: the exporter still answers, with the incremented counter
    body = _scrape(port)
    closer.join()
    assert f"korean_llm_stage_failures_total{{{LABELS}}} 1.0" in body
    with pytest.raises(OSError):
        _scrape(port)  # then it is gone


def test_no_linger_without_a_fixed_port_on_success_or_when_set_to_zero() -> None:
    default = _config(port=0)
    assert default.metrics.failure_linger_seconds == 45.0  # a scrape interval and a half of the chart's PodMonitor
    cases = [(default, True), (default, False), (_config(port=_free_port(), failure_linger_seconds=0), True)]
    for cfg, failed in cases:
        metrics = StageMetrics(cfg)
        metrics.serve()
        start = time.monotonic()
        metrics.close(failed=failed)
        assert time.monotonic() - start < 4.5
