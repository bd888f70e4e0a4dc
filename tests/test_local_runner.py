"""The local runner: render the chart, run the DAG as processes, write the report; parsing of rendered DAGs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from korean_llm.errors import ConfigError
from korean_llm.local.runner import PathMap, Pipeline, Step, _topological, parse_pipelines, prepare_step

from .conftest import REPO, run_cli

FAST = [
    "--set",
    "models[0].stages.cpt.config.training.max_steps=8",
    "--set",
    "models[0].stages.sft.config.training.num_train_epochs=1",
    "--set",
    "models[0].stages.evaluate.config.evaluate.max_new_tokens=4",
    "--set",
    "models[0].stages.evaluate.config.evaluate.gate.max_perplexity=100000",
]


@pytest.mark.slow
def test_runner_runs_the_local_dag_and_writes_the_report(tmp_path: Path) -> None:
    result = run_cli(
        "run", "-f", str(REPO / "values" / "local.yaml"), "--runs-dir", str(tmp_path), "--run-id", "ci", *FAST
    )
    assert result.returncode == 0, result.stderr[-3000:]
    root = tmp_path / "ci"
    out = root / "output" / "tiny-ko" / "ci"
    manifests = {
        s: json.loads((out / s / "manifest.json").read_text())
        for s in ("preprocess", "cpt", "sft", "evaluate", "deploy")
    }
    assert {m["run_id"] for m in manifests.values()} == {"ci"}  # the workflow parameter reached the runtime
    assert manifests["sft"]["init_from"] == str(out / "cpt")  # /output mapped into runs/<id>
    assert manifests["evaluate"]["extra"]["candidate_stage"] == "rlhf"
    assert manifests["cpt"]["metrics"]["documents"] == 9  # read from preprocess's shards (2 near-duplicates gone)
    assert (root / "output" / "tiny-ko" / "releases" / "current").resolve().name == "ci"
    report = (root / "report.html").read_text()
    assert 'src="tiny-ko-cpt-loss.png"' in report and 'src="tiny-ko-sft-loss.png"' in report
    assert 'href="output/tiny-ko/ci/evaluate/eval.html"' in report
    assert (root / "tiny-ko-cpt-loss.png").stat().st_size > 1000
    config = yaml.safe_load((root / "config" / "korean-llm-tiny-ko" / "cpt.yaml").read_text())
    assert config["run"]["output_root"] == str(root / "output")

    # The same run from manifests rendered elsewhere (a GPU host without helm): finished stages are skipped.
    rendered = tmp_path / "rendered.yaml"
    assert (
        run_cli(
            "render", "-f", str(REPO / "values" / "local.yaml"), "--run-id", "ci", *FAST, "-o", str(rendered)
        ).returncode
        == 0
    )
    again = run_cli("run", "--manifests", str(rendered), "--runs-dir", str(tmp_path), "--run-id", "ci")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("done before") == 6


def test_failed_step_stops_the_pipeline_with_its_exit_code(tmp_path: Path) -> None:
    result = run_cli(
        "run",
        "-f",
        str(REPO / "values" / "local.yaml"),
        "--runs-dir",
        str(tmp_path),
        "--run-id",
        "bad",
        "--set",
        "models[0].stages.cpt.config.data.sources[0].path=/no/such/corpus",
    )
    assert result.returncode == 2
    assert "tiny-ko/cpt failed (exit 2)" in result.stderr and "/no/such/corpus" in result.stderr
    assert "not run" in result.stderr  # sft is reported, not silently dropped


def workflow(tasks: list[dict], templates: list[dict], on_exit: str | None = None) -> list[dict]:
    spec = {
        "entrypoint": "pipeline",
        "templates": [{"name": "pipeline", "dag": {"tasks": tasks}}, *templates],
        "arguments": {"parameters": [{"name": "run-id", "value": "r9"}]},
    }
    if on_exit:
        spec["onExit"] = on_exit
    return [{"kind": "WorkflowTemplate", "metadata": {"name": "wt", "labels": {"korean-llm/model": "m"}}, "spec": spec}]


def test_cluster_only_steps_are_reported_as_skipped() -> None:
    patch = {"name": "rollout", "resource": {"action": "patch", "manifest": "kind: Deployment\nmetadata: {name: srv}"}}
    container = {
        "name": "prep",
        "container": {
            "command": ["python", "-m", "korean_llm", "preprocess"],
            "env": [{"name": "STAGE", "value": "preprocess"}],
        },
    }
    docs = workflow(
        [{"name": "rollout", "template": "rollout", "dependencies": ["prep"]}, {"name": "prep", "template": "prep"}],
        [patch, container],
        on_exit="notify",
    )
    (pipe,) = parse_pipelines(docs)
    assert [s.name for s in pipe.steps] == ["prep", "rollout", "notify"]
    assert pipe.steps[0].env == {"STAGE": "preprocess"} and pipe.steps[0].skip_reason is None
    assert pipe.steps[1].skip_reason == "cluster only: patch Deployment/srv"
    assert pipe.steps[2].skip_reason == "cluster only: exit handler (notification)"
    assert pipe.parameters == {"run-id": "r9"}


def test_dag_errors_are_reported() -> None:
    with pytest.raises(ConfigError, match="cycle"):
        _topological([Step("a", ["b"]), Step("b", ["a"])])
    with pytest.raises(ConfigError, match="unknown task 'x'"):
        _topological([Step("a", ["x"])])
    with pytest.raises(ConfigError, match="no pipeline WorkflowTemplate"):
        parse_pipelines([{"kind": "ConfigMap", "metadata": {"name": "c"}}])


def test_stage_configs_written_locally_end_a_failed_stage_without_the_scrape_linger(tmp_path: Path) -> None:
    """The chart's stage configs (ConfigMap text as `helm template` renders it, metrics.port 9400) get
    `metrics.failure_linger_seconds: 0` where they leave it out; a config that sets it, and non-stage files, stay."""
    configmaps = {
        "cfg": {
            "cpt.yaml": "stage: cpt\nmetrics:\n  port: 9400\nrun:\n  output_root: /output\n",
            "sft.yaml": "stage: sft\nmetrics:\n  failure_linger_seconds: 5\n",
            "rlhf.yaml": "stage: rlhf\n",
            "notes.yaml": "a: 1\n",
        }
    }
    mounts = {
        "/etc/korean-llm": {"configMap": {"name": "cfg"}},
        "/output": {"persistentVolumeClaim": {"claimName": "o"}},
    }
    step = Step("cpt", [], ["python", "-m", "korean_llm", "cpt"], mounts=mounts)
    prepare_step(step, Pipeline("m", "wt", {}, [step], configmaps), tmp_path)
    written = {p.name: yaml.safe_load(p.read_text()) for p in (tmp_path / "config" / "cfg").iterdir()}
    assert written["cpt.yaml"]["metrics"] == {"failure_linger_seconds": 0, "port": 9400}
    assert written["cpt.yaml"]["run"]["output_root"] == str(tmp_path / "output")
    assert written["sft.yaml"]["metrics"] == {"failure_linger_seconds": 5}
    assert written["rlhf.yaml"]["metrics"] == {"failure_linger_seconds": 0}
    assert written["notes.yaml"] == {"a": 1}


def test_path_map_rewrites_mounts_and_set_values(tmp_path: Path) -> None:
    pm = PathMap({"/data": tmp_path / "d", "/output": tmp_path / "o", "/etc/korean-llm": tmp_path / "c"})
    assert pm("/data/x/y") == f"{tmp_path}/d/x/y"
    assert pm("/output") == f"{tmp_path}/o"
    assert pm("/dataset") == "/dataset"
    assert pm("run.output_root=/output/m") == f"run.output_root={tmp_path}/o/m"
    assert pm.walk({"a": ["/etc/korean-llm/cpt.yaml", 3]}) == {"a": [f"{tmp_path}/c/cpt.yaml", 3]}
