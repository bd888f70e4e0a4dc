"""Experiment tracking (MLflow, W&B) and the Prometheus exporter of a stage process."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from korean_llm.config.base import Strict


class TrackingConfig(Strict):
    """Experiment trackers (korean_llm/tracking.py): MLflow and W&B, each optional, both usable at once.

    Credentials never live here: W&B reads `WANDB_API_KEY`, MLflow `MLFLOW_TRACKING_TOKEN` or
    `MLFLOW_TRACKING_USERNAME`/`MLFLOW_TRACKING_PASSWORD` from the environment (the chart fills them from Secrets).
    A backend that is down costs one warning and is then off for the rest of the stage; training goes on.
    """

    # W&B is used only when WANDB_API_KEY is set (mode auto) or the mode says online/offline.
    wandb_project: str | None = None  # None: "korean-llm"
    wandb_entity: str | None = None
    wandb_mode: Literal["auto", "online", "offline", "disabled"] = "auto"
    # None: $MLFLOW_TRACKING_URI (the local runner sets a sqlite store under runs/<run-id>/mlruns); neither: MLflow off.
    mlflow_tracking_uri: str | None = None
    mlflow_experiment: str = Field("korean-llm", min_length=1)
    # Model registry name for the deploy stage's release; None: run.model_name.
    registered_model_name: str | None = Field(None, min_length=1)
    # First contact (experiment lookup, run creation): short, no retries, so an unreachable server costs seconds.
    connect_timeout_seconds: float = Field(5.0, gt=0)
    # Every later request (metrics, artifacts) runs in a background thread and never blocks a training step.
    request_timeout_seconds: float = Field(10.0, gt=0)
    request_max_retries: int = Field(1, ge=0)
    # End of the stage: how long to wait for queued metrics and artifact uploads before dropping them.
    flush_timeout_seconds: float = Field(60.0, gt=0)
    # Top-level files of the finished stage folder (manifest, log history, reports) up to this size become artifacts.
    artifact_max_mb: float = Field(20.0, ge=0)


class MetricsConfig(Strict):
    """Prometheus exporter of the stage process (`/metrics`)."""

    enabled: bool = True
    port: int = Field(9400, ge=0, le=65535)  # 0: any free port (tests, several stages on one host)
    host: str = "0.0.0.0"
    # Seconds a failed stage keeps a fixed-port exporter up so that one scrape sees the incremented failure counter
    # (the chart's PodMonitor scrapes every 30s). The local runner sets 0 where a stage config leaves it out:
    # nothing scrapes a stage process there, and a failed step would only hold the run up.
    failure_linger_seconds: float = Field(45.0, ge=0)
