"""Experiment tracking of a stage: MLflow and W&B together, from the `tracking:` config section.

    tracker = ExperimentTracker(cfg).start()        # stage.execute(), before the stage's work
    log_step(step, {"loss": 1.2, ...})              # the Trainer callback, every logging step
    tracker.finish(stage_dir=final, manifest=m)     # or tracker.finish(error=exc)
    register_release(cfg, model_dir, "v3")          # the deploy stage: a version in the MLflow model registry

MLflow, in the experiment `tracking.mlflow_experiment`:
- one parent run `<model>/<run id>` per pipeline run, tagged korean_llm.kind=pipeline, korean_llm.model,
  korean_llm.run. Every stage process (its own pod) finds it by those tags or creates it; when two create
  it at once, the oldest wins and the other deletes its own, so one remains.
- one child run `<model>/<run id>/<stage>` per stage (tag mlflow.parentRunId), tagged also with the stage,
  config hash and git commit; params = the resolved stage config flattened (`training.max_steps`, ...);
  metrics at every logging step; artifacts = the top-level files of the finished stage folder (manifest.json,
  log_history.json, config.resolved.json, reports). A restarted stage finds its child run by tags and goes on
  in it instead of starting a second one.
W&B: run id `<model>-<run id>-<stage>` (resumed on restart), group `<model>-<run id>`, job type = the stage,
config = the same flattened params, the same metrics against `global_step`, the same files as an artifact.

Failure policy: the first contact has a short timeout and no retries; later requests run in a background
thread, so a training step never waits on the network. The first error of a backend logs one warning and
switches that backend off for the rest of the stage. Only the main process of a distributed job (RANK 0)
tracks. mlflow and wandb are imported only when their backend is on.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import math
import os
import queue
import re
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from korean_llm import dist
from korean_llm.config import StageConfig
from korean_llm.errors import ConfigError, Terminated

log = logging.getLogger("korean_llm")

TAG = "korean_llm."
PARENT_TAG = "mlflow.parentRunId"
MAX_PARAM_VALUE = 6000  # MLflow rejects longer parameter values
PARAMS_PER_BATCH = 100  # MLflow's limit of params in one log_batch
RELEASE_TAG = TAG + "release"


class HasMetrics(Protocol):
    """What `finish` reads of a stage's manifest (`pipeline.artifacts.Manifest`): its metrics, as the run summary."""

    @property
    def metrics(self) -> Mapping[str, float | int | None]: ...


_active: ExperimentTracker | None = None


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{"a": {"b": 1}, "c": [1]} -> {"a.b": "1", "c": "[1]"}, values cut to MLflow's length limit."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name + "."))
            continue
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        out[name] = text if len(text) <= MAX_PARAM_VALUE else text[: MAX_PARAM_VALUE - 3] + "..."
    return out


@functools.cache
def git_commit() -> str | None:
    """`$KOREAN_LLM_GIT_SHA` (set in the image), else HEAD of the checkout this package runs from."""
    sha = os.environ.get("KOREAN_LLM_GIT_SHA", "").strip()
    if sha:
        return sha
    try:
        out = subprocess.run(
            ["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def stage_tags(cfg: StageConfig) -> dict[str, str]:
    tags = {
        TAG + "model": cfg.run.model_name,
        TAG + "run": cfg.run.run_id,
        TAG + "stage": cfg.stage,
        TAG + "config_hash": cfg.fingerprint(),
    }
    sha = git_commit()
    if sha:
        tags[TAG + "git_commit"] = sha
        tags["mlflow.source.git.commit"] = sha
    return tags


def mlflow_uri(cfg: StageConfig) -> str | None:
    """`tracking.mlflow_tracking_uri`, else `$MLFLOW_TRACKING_URI`; None: MLflow is off."""
    return cfg.tracking.mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None


def wandb_mode(cfg: StageConfig) -> str | None:
    """ "online" / "offline" when W&B can run without prompting, else None (and W&B is disabled outright)."""
    mode: str = cfg.tracking.wandb_mode
    if mode == "auto":
        mode = "online" if os.environ.get("WANDB_API_KEY") else "disabled"
    return None if mode == "disabled" else mode


def reject_trainer_trackers(cfg: StageConfig) -> None:
    """The Trainer's own W&B/MLflow callbacks would log every step a second time: tracking: owns both."""
    wanted = cfg.training.get("report_to")
    names = {wanted} if isinstance(wanted, str) else set(wanted or ())
    doubled = sorted(names & {"wandb", "mlflow", "all"})
    if doubled:
        raise ConfigError(
            f"{cfg.source}: key 'training.report_to' names {', '.join(doubled)}: W&B and MLflow are set up under "
            "'tracking:' (wandb_mode, mlflow_tracking_uri); remove them from training.report_to"
        )


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def _redact(uri: str) -> str:
    return re.sub(r"//[^/@]*@", "//***@", uri)


def _http_limits(timeout: float, retries: int) -> None:
    # MLflow reads these at every request; the defaults (120 s, 7 retries with backoff) would stall a stage.
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(max(1, math.ceil(timeout)))
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(retries)
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = "1"
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"  # stdout carries the stage's JSON summary


def _local_artifact_root(uri: str) -> str | None:
    """A sqlite store keeps artifacts beside its database file (MLflow's default would be ./mlruns of the cwd)."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri[len("sqlite:///") :]).resolve().parent / "artifacts").as_uri()


class MlflowBackend:
    """The stage's child run under the pipeline's parent run, through `MlflowClient` (no global fluent state)."""

    name = "MLflow"

    def __init__(self, cfg: StageConfig, uri: str) -> None:
        self.cfg = cfg
        self.uri = uri
        self.client: Any = None
        self.run_id = ""
        self.parent_id = ""
        self.created = False

    def describe(self) -> str:
        return f"MLflow at {_redact(self.uri)}"

    def connect(self, tags: Mapping[str, str]) -> None:
        """Experiment, parent run and child run (found by tags or created); short timeout, no retries."""
        from mlflow.tracking import MlflowClient

        tr = self.cfg.tracking
        _http_limits(tr.connect_timeout_seconds, 0)
        if self.uri.startswith("sqlite:///"):
            Path(self.uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        exp_id = self._experiment_id()
        self.parent_id = self._pipeline_run(exp_id)
        self.run_id, self.created = self._stage_run(exp_id, tags)
        _http_limits(tr.request_timeout_seconds, tr.request_max_retries)

    def start(self, params: Mapping[str, str], tags: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        self.connect(tags)
        self.client.update_run(self.run_id, status="RUNNING")
        self.client.update_run(self.parent_id, status="RUNNING")
        logged = {} if self.created else self.client.get_run(self.run_id).data.params
        changed = sorted(k for k, v in params.items() if k in logged and logged[k] != v)
        if changed:
            log.info("tracking: resumed MLflow run %s keeps its first values of %s", self.run_id, ", ".join(changed))
        todo = [Param(k, v) for k, v in params.items() if k not in logged]
        for i in range(0, len(todo), PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=todo[i : i + PARAMS_PER_BATCH])
        log.info(
            "tracking: MLflow run %s (%s) under pipeline run %s at %s",
            self.run_id,
            "created" if self.created else "resumed",
            self.parent_id,
            _redact(self.uri),
        )

    def _experiment_id(self) -> str:
        from mlflow.exceptions import MlflowException

        name = self.cfg.tracking.mlflow_experiment
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            return str(exp.experiment_id)
        try:
            return str(self.client.create_experiment(name, artifact_location=_local_artifact_root(self.uri)))
        except MlflowException as exc:  # another stage process created it in between
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return str(self.client.get_experiment_by_name(name).experiment_id)

    def _search(self, exp_id: str, **tags: str) -> list[Any]:
        where = " and ".join(f"tags.`{TAG}{k}` = '{v}'" for k, v in tags.items())
        runs = self.client.search_runs([exp_id], filter_string=where, max_results=50)
        return sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))

    def _pipeline_run(self, exp_id: str) -> str:
        run = self.cfg.run
        key = {"kind": "pipeline", "model": run.model_name, "run": run.run_id}
        found = self._search(exp_id, **key)
        if found:
            return str(found[0].info.run_id)
        mine = self.client.create_run(
            exp_id, run_name=f"{run.model_name}/{run.run_id}", tags={TAG + k: v for k, v in key.items()}
        ).info.run_id
        # Two stage processes may have created one each: the oldest wins everywhere, the others go.
        winner = str(self._search(exp_id, **key)[0].info.run_id)
        if winner != mine:
            self.client.delete_run(mine)
        return winner

    def _stage_run(self, exp_id: str, tags: Mapping[str, str]) -> tuple[str, bool]:
        run = self.cfg.run
        key = {"kind": "stage", "model": run.model_name, "run": run.run_id, "stage": self.cfg.stage}
        found = self._search(exp_id, **key)
        all_tags = {**tags, **{TAG + k: v for k, v in key.items()}, PARENT_TAG: self.parent_id}
        if found:  # a restarted stage: same run, tags of this attempt (config hash, commit, parent)
            from mlflow.entities import RunTag

            run_id = str(found[0].info.run_id)
            self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in all_tags.items()])
            return run_id, False
        created = self.client.create_run(
            exp_id, run_name=f"{run.model_name}/{run.run_id}/{self.cfg.stage}", tags=all_tags
        )
        return str(created.info.run_id), True

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(_metric_name(k), float(v), now, step) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def finish(self, status: str, files: list[Path], summary: Mapping[str, float], step: int) -> None:
        if summary:
            self.log_metrics(step, summary)
        for path in files:
            self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, status)
        self.client.set_terminated(self.parent_id, status)


class WandbBackend:
    """One W&B run per stage, grouped by pipeline run; `global_step` is the x axis so a resume can go back."""

    name = "W&B"

    def __init__(self, cfg: StageConfig, mode: str) -> None:
        self.cfg = cfg
        self.mode = mode
        self.run: Any = None

    def describe(self) -> str:
        return f"W&B ({self.mode})"

    def start(self, params: Mapping[str, str], tags: Mapping[str, str]) -> None:
        import wandb

        cfg, tr = self.cfg, self.cfg.tracking
        os.environ["WANDB_MODE"] = self.mode
        os.environ.setdefault("WANDB_SILENT", "true")
        folder = Path(os.environ.get("WANDB_DIR") or cfg.run.output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        run_name = f"{cfg.run.model_name}-{cfg.run.run_id}-{cfg.stage}"
        self.run = wandb.init(
            project=tr.wandb_project or "korean-llm",
            entity=tr.wandb_entity,
            id=re.sub(r"[^A-Za-z0-9_-]", "-", run_name)[:64],
            name=run_name,
            group=f"{cfg.run.model_name}-{cfg.run.run_id}",
            job_type=cfg.stage,
            tags=[f"{k.removeprefix(TAG)}:{v}"[:64] for k, v in tags.items() if k.startswith(TAG)],
            config={**params, **tags},
            dir=str(folder),
            mode=self.mode,  # type: ignore[arg-type]
            resume="allow",
            reinit="create_new",
            settings=wandb.Settings(
                init_timeout=tr.connect_timeout_seconds * 6,  # wandb-core's own start-up is part of it
                finish_timeout=tr.flush_timeout_seconds,
                console="off",
                silent=True,
            ),
        )
        self.run.define_metric("global_step")
        self.run.define_metric("*", step_metric="global_step")
        log.info("tracking: W&B run %s (%s) in %s", self.run.id, self.mode, folder)

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        self.run.log({"global_step": step, **metrics})

    def finish(self, status: str, files: list[Path], summary: Mapping[str, float], step: int) -> None:
        import wandb

        self.run.summary.update(dict(summary))
        if files:
            art = wandb.Artifact(re.sub(r"[^A-Za-z0-9_.-]", "-", f"{self.run.id}-stage"), type="stage-output")
            for path in files:
                art.add_file(str(path))
            self.run.log_artifact(art)
        self.run.finish(exit_code=0 if status == "FINISHED" else 1)


def _metric_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", key)


def _installed(module: str, backend: str, why: str) -> bool:
    if importlib.util.find_spec(module) is not None:
        return True
    log.warning(
        "tracking: %s is configured (%s) but %s is not installed (pip install 'korean-llm[tracking]')",
        backend,
        why,
        module,
    )
    return False


def configured_backends(cfg: StageConfig) -> list[MlflowBackend | WandbBackend]:
    backends: list[MlflowBackend | WandbBackend] = []
    uri = mlflow_uri(cfg)
    if uri and _installed("mlflow", "MLflow", f"tracking URI {_redact(uri)}"):
        backends.append(MlflowBackend(cfg, uri))
    mode = wandb_mode(cfg)
    if mode is None:
        os.environ["WANDB_MODE"] = "disabled"  # nothing else in the process may start a W&B run and prompt
    elif _installed("wandb", "W&B", f"tracking.wandb_mode {cfg.tracking.wandb_mode}"):
        backends.append(WandbBackend(cfg, mode))
    return backends


class ExperimentTracker:
    """All trackers of one stage process; every backend call is guarded, none can fail or stall the stage."""

    def __init__(self, cfg: StageConfig) -> None:
        self.cfg = cfg
        self.backends: list[MlflowBackend | WandbBackend] = []
        self.last_step = 0
        self._queue: queue.Queue[tuple[str, tuple[Any, ...]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> ExperimentTracker:
        """Contact every configured backend; one that fails is warned about once and left out."""
        global _active
        if not dist.is_main():
            return self
        candidates = configured_backends(self.cfg)
        if not candidates:
            return self
        params = flatten(self.cfg.model_dump(mode="json"))
        tags = stage_tags(self.cfg)
        for backend in candidates:
            try:
                backend.start(params, tags)
            except Exception as exc:  # any failure of a tracker must leave the stage running
                self._disable(backend, exc)
                continue
            self.backends.append(backend)
        if self.backends:
            self._thread = threading.Thread(target=self._work, name="korean-llm-tracking", daemon=True)
            self._thread.start()
            _active = self
        return self

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        """Queue one logging step's metrics; returns at once."""
        if self._thread is not None and metrics:
            self.last_step = max(self.last_step, step)
            self._queue.put(("log_metrics", (step, dict(metrics))))

    def finish(
        self, *, stage_dir: Path | None = None, manifest: HasMetrics | None = None, error: BaseException | None = None
    ) -> None:
        """Artifacts and summary of a finished stage (or the failed/killed status), then wait for the queue."""
        global _active
        if _active is self:
            _active = None
        if self._thread is None:
            return
        status = (
            "FINISHED" if error is None else "KILLED" if isinstance(error, Terminated | KeyboardInterrupt) else "FAILED"
        )
        files = self._artifact_files(stage_dir) if stage_dir is not None else []
        summary = {
            k: float(v)
            for k, v in (manifest.metrics if manifest else {}).items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        self._queue.put(("finish", (status, files, summary, self.last_step)))
        self._queue.put(None)
        self._thread.join(self.cfg.tracking.flush_timeout_seconds)
        if self._thread.is_alive():
            log.warning(
                "tracking: gave up waiting for %s after %.0f s (tracking.flush_timeout_seconds); "
                "the rest of this stage's tracking data is dropped",
                ", ".join(b.describe() for b in self.backends),
                self.cfg.tracking.flush_timeout_seconds,
            )
        self._thread = None

    def _artifact_files(self, stage_dir: Path) -> list[Path]:
        limit = self.cfg.tracking.artifact_max_mb * 1024 * 1024
        return sorted(p for p in stage_dir.iterdir() if p.is_file() and p.stat().st_size <= limit)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            method, args = item
            for backend in list(self.backends):
                try:
                    getattr(backend, method)(*args)
                except Exception as exc:  # a tracker error must never reach training
                    self.backends.remove(backend)
                    self._disable(backend, exc)

    def _disable(self, backend: MlflowBackend | WandbBackend, exc: BaseException) -> None:
        log.warning(
            "tracking: %s failed (%s); %s tracking is off for the rest of this %s stage",
            backend.describe(),
            _short(exc),
            backend.name,
            self.cfg.stage,
        )


def log_step(step: int, metrics: Mapping[str, float]) -> None:
    """Metrics of one Trainer logging step to the running stage's trackers (nothing when none is on)."""
    if _active is not None:
        _active.log_metrics(step, metrics)


def register_release(cfg: StageConfig, path: Path, version: str) -> str | None:
    """Register the model folder `path` as release `version` in the MLflow model registry.

    The registered model is `tracking.registered_model_name` (default: the model name); the folder is
    uploaded as the artifact `model/` of this stage's MLflow run (the deploy child run), and the new model
    version carries the tag korean_llm.release=<version>. Registering the same release again returns the
    existing version. Returns the MLflow version number, or None when MLflow is off, not installed or
    unreachable (one warning: a registry outage does not fail a release).
    """
    uri = mlflow_uri(cfg)
    if uri is None or not _installed("mlflow", "MLflow", f"tracking URI {_redact(uri)}"):
        return None
    if not version.strip():
        raise ConfigError(f"{cfg.source}: the release version to register for {path} is empty")
    if not path.is_dir():
        raise ConfigError(f"{path}: the model folder to register as release {version} does not exist")
    backend = MlflowBackend(cfg, uri)
    name = cfg.tracking.registered_model_name or cfg.run.model_name
    try:
        return _register(backend, name, path, version)
    except Exception as exc:  # the registry is a tracker too: its outage must not fail the deploy
        log.warning(
            "tracking: registering %s release %s in %s failed (%s); the release itself is unaffected",
            name,
            version,
            backend.describe(),
            _short(exc),
        )
        return None


def _register(backend: MlflowBackend, name: str, path: Path, version: str) -> str:
    from mlflow.exceptions import MlflowException

    cfg = backend.cfg
    backend.connect(stage_tags(cfg))
    client = backend.client
    existing = client.search_model_versions(f"name = '{name}' and tags.`{RELEASE_TAG}` = '{version}'")
    if existing:
        log.info("tracking: %s release %s is already version %s in the registry", name, version, existing[0].version)
        return str(existing[0].version)
    client.log_artifacts(backend.run_id, str(path), artifact_path="model")
    try:
        client.create_registered_model(name, tags={TAG + "model": cfg.run.model_name})
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    tags = {RELEASE_TAG: version, TAG + "run": cfg.run.run_id, TAG + "config_hash": cfg.fingerprint()}
    mv = client.create_model_version(
        name,
        f"{client.get_run(backend.run_id).info.artifact_uri}/model",
        run_id=backend.run_id,
        tags=tags,
        description=f"{cfg.run.model_name} release {version} (run {cfg.run.run_id})",
        await_creation_for=math.ceil(cfg.tracking.flush_timeout_seconds),
    )
    if backend.created:  # a run opened only to hold the release: close it
        client.set_terminated(backend.run_id, "FINISHED")
    log.info("tracking: registered %s version %s (release %s)", name, mv.version, version)
    return str(mv.version)
