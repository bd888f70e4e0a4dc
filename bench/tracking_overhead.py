"""What experiment tracking costs a stage: start-up, per logged step, and end of stage.

    python bench/tracking_overhead.py [--steps 200] [--out tracking.json]

Starts a real `mlflow server` (sqlite store, loopback, one worker) and measures, for MLflow over HTTP,
MLflow on a sqlite file (the local runner's default) and W&B offline:
- start: `ExperimentTracker.start()` (experiment lookup, parent and child runs, ~50 params);
- enqueue: what `log_step()` costs the training loop per logged step (the network call is in a thread);
- drain: wall time per logged step for the background thread to deliver it (the backend's real cost);
- finish: artifacts (manifest, log history) + status, waiting for the queue.
Also the import time of mlflow and wandb (paid only by stages that track) and the server's boot time.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))

from korean_llm.config import build_config
from korean_llm.observe.tracking import ExperimentTracker
from korean_llm.pipeline.artifacts import Manifest


def import_seconds(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def start_server(root: Path) -> tuple[subprocess.Popen[bytes], str, float]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}"),
            *("--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port)),
            *("--workers", "1"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                return proc, uri, time.perf_counter() - started
        except OSError:
            if proc.poll() is not None or time.perf_counter() - started > 300:
                raise RuntimeError("mlflow server did not start") from None
            time.sleep(0.2)


def measure(name: str, tracking: dict[str, Any], root: Path, steps: int) -> dict[str, Any]:
    cfg = build_config(
        {
            "stage": "sft",
            "run": {"run_id": name, "data_root": str(root / "data"), "output_root": str(root / "output")},
            "tracking": {"wandb_mode": "disabled", **tracking},
        },
        env={},
    )
    t0 = time.perf_counter()
    tracker = ExperimentTracker(cfg).start()
    t1 = time.perf_counter()
    assert tracker.backends, f"{name}: no backend came up"
    metrics = {"loss": 2.5, "learning_rate": 1e-4, "grad_norm": 0.7, "epoch": 0.1, "tokens_per_second": 1234.0}
    enqueue = []
    for step in range(1, steps + 1):
        s = time.perf_counter()
        tracker.log_metrics(step, {**metrics, "loss": 2.5 / step})
        enqueue.append(time.perf_counter() - s)
    while not tracker._queue.empty():  # the background thread delivers what the loop queued
        time.sleep(0.005)
    t2 = time.perf_counter()
    stage_dir = root / "stage" / name
    stage_dir.mkdir(parents=True)
    (stage_dir / "manifest.json").write_text(json.dumps({"stage": "sft"}))
    (stage_dir / "log_history.json").write_text(json.dumps([{"step": i, "loss": 1.0} for i in range(steps)]))
    manifest = Manifest(stage="sft", model_name="tiny-ko", run_id=name, base_model="b", config_hash="h")
    tracker.finish(stage_dir=stage_dir, manifest=manifest)
    t3 = time.perf_counter()
    return {
        "backend": name,
        "start_s": round(t1 - t0, 3),
        "enqueue_us_per_step": round(sum(enqueue) / len(enqueue) * 1e6, 1),
        "delivery_ms_per_step": round((t2 - t1) / steps * 1000, 2),
        "finish_s": round(t3 - t2, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    results: dict[str, Any] = {
        "import_mlflow_s": round(import_seconds("mlflow"), 2),
        "import_wandb_s": round(import_seconds("wandb"), 2),
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        proc, uri, boot = start_server(root / "server")
        results["server_boot_s"] = round(boot, 1)
        os.environ["WANDB_DIR"] = str(root / "wandb")
        try:
            sqlite = f"sqlite:///{root / 'db' / 'mlflow.db'}"
            results["runs"] = [
                measure("mlflow-http", {"mlflow_tracking_uri": uri}, root, args.steps),
                measure("mlflow-sqlite", {"mlflow_tracking_uri": sqlite}, root, args.steps),
                measure("wandb-offline", {"wandb_mode": "offline"}, root, args.steps),
            ]
        finally:
            proc.terminate()
            proc.wait(30)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
