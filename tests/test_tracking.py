"""Experiment tracking against a real MLflow server (sqlite, loopback) and W&B in offline mode.

One server for the module: it is started before the first test and boots while the tests that need no
server run. The tiny-model CPT -> SFT pipeline is tracked by MLflow and W&B at once, then read back.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from korean_llm.cli import main
from korean_llm.config import build_config, load_config
from korean_llm.errors import ConfigError, Terminated
from korean_llm.observe.tracking import (
    ExperimentTracker,
    MlflowBackend,
    configured_backends,
    flatten,
    mlflow_uri,
    register_release,
    reject_trainer_trackers,
)
from korean_llm.pipeline.artifacts import Manifest

TRAIN = {"per_device_train_batch_size": 4, "logging_steps": 2, "save_steps": 100, "learning_rate": 5e-3}
CPT = {
    "lora": {"r": 8, "alpha": 16},
    "data": {"sources": [{"path": "builtin:korean-corpus", "max_rows": 200}]},
    "training": {**TRAIN, "max_steps": 6},
}
SFT = {
    "run": {"previous_stage": "cpt"},
    "lora": {"r": 8, "alpha": 16},
    "data": {"sources": [{"path": "builtin:sft-ko", "max_rows": 24}]},
    "training": {**TRAIN, "max_steps": 4},
}
ENV_TOUCHED = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT",
    "WANDB_API_KEY",
    "WANDB_MODE",
    "WANDB_DIR",
    "WANDB_SILENT",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module", autouse=True)
def server_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """`mlflow server` on a loopback port with a sqlite store, started now and stopped after the module."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log_file = open(root / "server.log", "wb")  # noqa: SIM115 - open for the server's whole life
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        cwd=root,
        # The job executor (GenAI scorers) boots extra worker processes that the tests do not use.
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    yield proc, f"http://127.0.0.1:{port}", root
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log_file.close()


@pytest.fixture(scope="module")
def mlflow_server(server_process: tuple[subprocess.Popen[bytes], str, Path]) -> str:
    """The server's URI once it answers /health."""
    proc, uri, root = server_process
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mlflow server exited with {proc.returncode}:\n{(root / 'server.log').read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
                if resp.status == 200:
                    return uri
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"mlflow server did not answer within 180 s:\n{(root / 'server.log').read_text()[-3000:]}")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """The trackers set MLflow/W&B variables in os.environ (stage processes own theirs): restore them."""
    saved = {k: os.environ.get(k) for k in ENV_TOUCHED}
    for key in ENV_TOUCHED:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def tracking_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.getMessage().startswith("tracking")
    ]


# ---- W&B offline run files --------------------------------------------------------------------------------


def wandb_records(run_dir: Path) -> list[Any]:
    """The records of an offline run's `.wandb` file (LevelDB log framing: 32 KiB blocks, 7-byte headers)."""
    from wandb.proto import wandb_internal_pb2 as pb

    raw = next(run_dir.glob("*.wandb")).read_bytes()
    assert raw[:4] == b":W&B"
    block, pos, chunk, records = 32768, 7, b"", []
    while pos + 7 <= len(raw):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", raw[pos : pos + 7])
        pos += 7
        if kind == 0 and length == 0:
            pos += left - 7
            continue
        chunk += raw[pos : pos + length]
        pos += length
        if kind in (1, 4):  # FULL or LAST
            rec = pb.Record()
            rec.ParseFromString(chunk)
            records.append(rec)
            chunk = b""
    return records


def wandb_history(records: list[Any]) -> list[dict[str, Any]]:
    rows = []
    for rec in records:
        if rec.WhichOneof("record_type") == "history":
            rows.append(
                {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in rec.history.item}
            )
    return rows


# ---- an unreachable backend never fails or stalls a stage ---------------------------------------------------


@pytest.mark.slow
def test_a_closed_port_leaves_the_stage_successful_with_one_warning(write_config, tmp_path: Path, caplog) -> None:
    from korean_llm.stages import cpt

    port = free_port()  # nothing listens there any more
    path = write_config("cpt", {**CPT, "training": {**CPT["training"], "max_steps": 4}})
    cfg = load_config(path, [f"tracking.mlflow_tracking_uri=http://127.0.0.1:{port}"])
    caplog.set_level(logging.INFO, logger="korean_llm")
    started = time.time()
    manifest = cpt.main(cfg)
    assert manifest.metrics["global_step"] == 4
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1  # from any logger
    (warning,) = tracking_warnings(caplog)
    assert f"MLflow at http://127.0.0.1:{port} failed" in warning and "off for the rest of this cpt stage" in warning
    assert time.time() - started < 120
    assert (tmp_path / "output" / "tiny-ko" / "t" / "cpt" / "manifest.json").is_file()


def test_a_server_that_never_answers_costs_only_the_connect_timeout(tmp_path: Path, caplog) -> None:
    with socket.socket() as sink:  # accepts connections (kernel backlog) and never replies
        sink.bind(("127.0.0.1", 0))
        sink.listen(16)
        uri = f"http://127.0.0.1:{sink.getsockname()[1]}"
        cfg = stage_cfg(tmp_path, "sft", "slow", mlflow_tracking_uri=uri, connect_timeout_seconds=1)
        importlib.import_module("mlflow.tracking")  # the import is not what is timed
        started = time.time()
        tracker = ExperimentTracker(cfg).start()
        elapsed = time.time() - started
    assert tracker.backends == [] and elapsed < 6, elapsed
    assert len(tracking_warnings(caplog)) == 1
    tracker.log_metrics(1, {"loss": 1.0})  # a tracker with nothing on is a no-op
    tracker.finish(error=None)


def test_a_backend_failing_mid_stage_warns_once_and_is_dropped(tmp_path: Path, caplog) -> None:
    class Flaky:
        name = "MLflow"
        calls = 0

        def describe(self) -> str:
            return "MLflow at test"

        def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
            Flaky.calls += 1
            raise ConnectionError("server went away")

        def finish(self, *args: Any) -> None:
            raise AssertionError("a dropped backend is not finished")

    tracker = ExperimentTracker(stage_cfg(tmp_path, "sft", "flaky"))
    tracker.backends = [Flaky()]  # type: ignore[list-item]
    tracker._thread = threading.Thread(target=tracker._work, daemon=True)
    tracker._thread.start()
    for step in range(1, 51):
        tracker.log_metrics(step, {"loss": 1.0 / step})
    tracker.finish(error=None)
    assert Flaky.calls == 1 and tracker.backends == []
    (warning,) = tracking_warnings(caplog)
    assert "server went away" in warning


def test_only_the_main_process_of_a_distributed_job_tracks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    monkeypatch.setenv("RANK", "3")
    tracker = ExperimentTracker(stage_cfg(tmp_path, "sft", "ddp", mlflow_tracking_uri="http://127.0.0.1:9")).start()
    assert tracker.backends == [] and tracking_warnings(caplog) == []  # rank 3 never even tried to connect


def test_a_stage_without_tracking_imports_neither_mlflow_nor_wandb(tmp_path: Path) -> None:
    code = (
        "import sys; from korean_llm.pipeline import stage; from korean_llm.train import loop; "
        "from korean_llm.config import build_config; "
        "from korean_llm.observe.tracking import ExperimentTracker; "
        "t = ExperimentTracker(build_config({'stage': 'sft'}, env={})).start(); t.log_metrics(1, {'loss': 1.0}); "
        "t.finish(); print(sorted(m for m in ('mlflow', 'wandb') if m in sys.modules))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "WANDB_API_KEY")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**env, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "runtime")},
    )
    assert out.stdout.strip() == "[]"


# ---- configuration ------------------------------------------------------------------------------------------


def test_backends_follow_config_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = stage_cfg(tmp_path, "sft", "x", wandb_mode="auto", wandb_project="p")
    assert configured_backends(cfg) == [] and os.environ["WANDB_MODE"] == "disabled"  # no key: W&B never prompts
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///from-env.db")
    assert mlflow_uri(cfg) == "sqlite:///from-env.db"
    cfg = stage_cfg(tmp_path, "sft", "x", mlflow_tracking_uri="http://mlflow:5000", wandb_mode="offline")
    assert [type(b).__name__ for b in configured_backends(cfg)] == ["MlflowBackend", "WandbBackend"]
    assert mlflow_uri(cfg) == "http://mlflow:5000"
    with pytest.raises(ConfigError, match=r"unknown key 'tracking\.mlflow_token'"):
        build_config({"stage": "sft", "tracking": {"mlflow_token": "secret"}}, env={})


def test_trainer_report_to_cannot_log_a_second_time(tmp_path: Path) -> None:
    cfg = build_config({"stage": "sft", "training": {"report_to": ["tensorboard", "wandb"]}}, env={})
    with pytest.raises(ConfigError, match=r"training\.report_to' names wandb"):
        reject_trainer_trackers(cfg)
    reject_trainer_trackers(build_config({"stage": "sft", "training": {"report_to": "none"}}, env={}))


def test_params_are_the_flattened_resolved_config() -> None:
    cfg = build_config({"stage": "sft", "training": {"max_steps": 5}, "lora": {"r": 4}}, env={})
    params = flatten(cfg.model_dump(mode="json"))
    assert params["training.max_steps"] == "5" and params["lora.r"] == "4"
    assert params["lora.target_modules"] == json.dumps(cfg.lora.target_modules)
    assert params["tracking.mlflow_tracking_uri"] == "null"
    assert len(flatten({"long": "x" * 10_000})["long"]) == 6000


def test_local_runner_points_stages_at_a_sqlite_store_under_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.progress import Progress

    from korean_llm.local.runner import Pipeline, Step, run_step

    step = Step("show", [], [sys.executable, "-c", "import os; print('URI=' + os.environ['MLFLOW_TRACKING_URI'])"])
    pipe = Pipeline("tiny-ko", "t", {}, [step], {})
    with Progress() as progress:
        result = run_step(step, pipe, tmp_path, progress)
    assert result.status == "ok"
    assert f"URI=sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}" in result.log.read_text()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")  # the user's choice wins
    with Progress() as progress:
        result = run_step(step, pipe, tmp_path, progress)
    assert "URI=http://mlflow.example:5000" in result.log.read_text()


def test_values_config_with_tracking_parses(tmp_path: Path) -> None:
    path = tmp_path / "sft.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "stage": "sft",
                "tracking": {
                    "mlflow_tracking_uri": "http://mlflow.mlflow.svc:5000",
                    "mlflow_experiment": "korean-llm",
                    "registered_model_name": "korean-7b-chat",
                    "wandb_project": "korean-llm",
                    "wandb_mode": "auto",
                },
            }
        )
    )
    cfg = load_config(path)
    assert cfg.tracking.registered_model_name == "korean-7b-chat" and cfg.tracking.request_max_retries == 1


# ---- the pipeline, tracked ----------------------------------------------------------------------------------


def losses_by_step(stage_dir: Path) -> dict[int, float]:
    hist = json.loads((stage_dir / "log_history.json").read_text())
    return {h["step"]: h["loss"] for h in hist if "loss" in h}


@pytest.mark.slow
def test_pipeline_is_tracked_in_mlflow_and_wandb_at_once(mlflow_server: str, write_config, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    tracking = {"mlflow_tracking_uri": mlflow_server, "mlflow_experiment": "pipeline", "wandb_mode": "offline"}
    deploy = {"run": {"previous_stage": "sft"}}
    for stage, over in (("cpt", CPT), ("sft", SFT), ("deploy", deploy)):
        assert main([stage, "--config", str(write_config(stage, {**over, "tracking": tracking}))]) == 0

    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("pipeline")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("korean_llm.kind") == "pipeline"]
    assert len(parents) == 1 and parents[0].info.run_name == "tiny-ko/t"
    assert parents[0].data.tags["korean_llm.model"] == "tiny-ko" and parents[0].data.tags["korean_llm.run"] == "t"
    children = {r.data.tags["korean_llm.stage"]: r for r in runs if r.data.tags.get("korean_llm.kind") == "stage"}
    assert sorted(children) == ["cpt", "deploy", "sft"]
    out = tmp_path / "output" / "tiny-ko" / "t"
    # The deploy stage registered its release in the model registry (version = the run id).
    deployed = json.loads((out / "deploy" / "manifest.json").read_text())
    (version,) = client.search_model_versions("name='tiny-ko'")
    assert version.tags["korean_llm.release"] == "t" == deployed["extra"]["release_version"]
    assert deployed["extra"]["mlflow_model_version"] == version.version
    assert children.pop("deploy").data.tags["mlflow.parentRunId"] == parents[0].info.run_id
    for stage, run in children.items():
        manifest = json.loads((out / stage / "manifest.json").read_text())
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert run.data.tags["korean_llm.config_hash"] == manifest["config_hash"]
        assert run.info.status == "FINISHED"
        expected = losses_by_step(out / stage)
        history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "loss")}
        assert history == pytest.approx(expected) and sorted(history) == [2, 4, 6][: len(expected)]
        assert run.data.params["training.max_steps"] == str({"cpt": 6, "sft": 4}[stage])
        assert run.data.params["lora.r"] == "8" and run.data.params["stage"] == stage
        assert run.data.metrics["final_loss"] == pytest.approx(manifest["metrics"]["final_loss"])
        names = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"manifest.json", "log_history.json", "config.resolved.json"} <= names
        local = client.download_artifacts(run.info.run_id, "manifest.json", str(tmp_path / f"dl-{stage}"))
        assert json.loads(Path(local).read_text()) == manifest
    assert "adapter" not in {a.path for a in client.list_artifacts(children["cpt"].info.run_id)}  # weights stay out

    # W&B, offline: one run per stage in the pipeline's group, the same loss at the same steps.
    for stage in ("cpt", "sft"):
        (run_dir,) = (tmp_path / "wandb-dir" / "wandb").glob(f"offline-run-*-tiny-ko-t-{stage}")
        records = wandb_records(run_dir)
        (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
        assert (run.run_id, run.run_group, run.job_type) == (f"tiny-ko-t-{stage}", "tiny-ko-t", stage)
        assert f"stage:{stage}" in run.tags
        logged = {row["global_step"]: row["loss"] for row in wandb_history(records) if "loss" in row}
        assert logged == pytest.approx(losses_by_step(out / stage))
        (artifact,) = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
        assert "manifest.json" in {c.path for c in artifact.manifest.contents}
        (exit_rec,) = [r.exit for r in records if r.WhichOneof("record_type") == "exit"]
        assert exit_rec.exit_code == 0


def stage_cfg(tmp_path: Path, stage: str, run_id: str, **tracking: Any) -> Any:
    return build_config(
        {
            "stage": stage,
            "run": {"run_id": run_id, "data_root": str(tmp_path / "data"), "output_root": str(tmp_path / "output")},
            "tracking": {"wandb_mode": "disabled", **tracking},
        },
        env={},
    )


def test_a_restarted_stage_goes_on_in_its_own_child_run(mlflow_server: str, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    cfg = stage_cfg(tmp_path, "rlhf", "resume", mlflow_tracking_uri=mlflow_server, mlflow_experiment="resume")
    client = MlflowClient(mlflow_server)
    first = ExperimentTracker(cfg).start()
    first.log_metrics(1, {"loss": 2.0})
    first.finish(error=Terminated("preempted"))
    run_id = first.backends[0].run_id
    assert client.get_run(run_id).info.status == "KILLED"

    second = ExperimentTracker(cfg).start()  # the restarted pod
    assert second.backends[0].run_id == run_id
    second.log_metrics(2, {"loss": 1.0})
    stage_dir = tmp_path / "rlhf"
    stage_dir.mkdir()
    (stage_dir / "manifest.json").write_text("{}")
    (stage_dir / "report.html").write_text("<p>report</p>")
    manifest = Manifest(stage="rlhf", model_name="tiny-ko", run_id="resume", base_model="b", config_hash="h")
    second.finish(stage_dir=stage_dir, manifest=manifest)

    exp = client.get_experiment_by_name("resume")
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.data.tags["korean_llm.kind"] for r in runs) == ["pipeline", "stage"]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "loss")] == [(1, 2.0), (2, 1.0)]
    assert client.get_run(run_id).info.status == "FINISHED"
    assert {a.path for a in client.list_artifacts(run_id)} == {"manifest.json", "report.html"}


def test_duplicate_parent_runs_resolve_to_the_oldest(mlflow_server: str, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server)
    exp_id = client.create_experiment("race")
    tags = {"korean_llm.kind": "pipeline", "korean_llm.model": "tiny-ko", "korean_llm.run": "race"}
    oldest = client.create_run(exp_id, tags=tags, start_time=1_000).info.run_id
    client.create_run(exp_id, tags=tags, start_time=2_000)  # what a second pod created at the same moment
    cfg = stage_cfg(tmp_path, "sft", "race", mlflow_tracking_uri=mlflow_server, mlflow_experiment="race")
    backend = MlflowBackend(cfg, mlflow_server)
    backend.connect({})
    assert backend.parent_id == oldest


def test_register_release_creates_one_model_version_per_release(mlflow_server: str, tmp_path: Path, tiny_model) -> None:
    from mlflow.tracking import MlflowClient

    cfg = stage_cfg(
        tmp_path,
        "deploy",
        "rel",
        mlflow_tracking_uri=mlflow_server,
        mlflow_experiment="releases",
        registered_model_name="tiny-ko-chat",
    )
    assert register_release(cfg, tiny_model, "2026.11.1") == "1"
    assert register_release(cfg, tiny_model, "2026.11.1") == "1"  # a rerun of deploy registers nothing new
    assert register_release(cfg, tiny_model, "2026.11.2") == "2"

    client = MlflowClient(mlflow_server)
    versions = client.search_model_versions("name = 'tiny-ko-chat'")
    assert sorted((v.version, v.tags["korean_llm.release"]) for v in versions) == [
        ("1", "2026.11.1"),
        ("2", "2026.11.2"),
    ]
    mv = client.get_model_version("tiny-ko-chat", "1")
    run = client.get_run(mv.run_id)
    assert run.data.tags["korean_llm.stage"] == "deploy" and run.info.status == "FINISHED"
    uploaded = {a.path for a in client.list_artifacts(mv.run_id, "model")}
    assert {f"model/{p.name}" for p in tiny_model.iterdir() if p.is_file()} <= uploaded


def test_register_release_is_off_without_mlflow_and_refuses_a_missing_folder(tmp_path: Path) -> None:
    assert register_release(stage_cfg(tmp_path, "deploy", "x"), tmp_path, "v1") is None
    cfg = stage_cfg(tmp_path, "deploy", "x", mlflow_tracking_uri="http://127.0.0.1:9")
    with pytest.raises(ConfigError, match="does not exist"):
        register_release(cfg, tmp_path / "nope", "v1")
