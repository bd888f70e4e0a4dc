"""The local runner: render the chart, run the DAG as processes, write the report; parsing of rendered DAGs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from korean_llm.errors import ConfigError
from korean_llm.local import PathMap, Step, _topological, parse_pipelines

from .conftest import REPO, run_cli


def test_runner_completes_cpt_then_sft_and_writes_the_report(tmp_path: Path) -> None:
    result = run_cli(
        "run",
        "-f",
        str(REPO / "values" / "local.yaml"),
        "--runs-dir",
        str(tmp_path),
        "--run-id",
        "ci",
        "--set",
        "stageDefaults.cpt.config.training.max_steps=8",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    root = tmp_path / "ci"
    cpt = json.loads((root / "output" / "tiny-ko" / "ci" / "cpt" / "manifest.json").read_text())
    sft = json.loads((root / "output" / "tiny-ko" / "ci" / "sft" / "manifest.json").read_text())
    assert cpt["run_id"] == sft["run_id"] == "ci"  # the workflow parameter reached the runtime
    assert sft["init_from"] == str(root / "output" / "tiny-ko" / "ci" / "cpt")  # /output mapped into runs/<id>
    report = (root / "report.html").read_text()
    assert 'src="tiny-ko-cpt-loss.png"' in report and 'src="tiny-ko-sft-loss.png"' in report
    assert (root / "tiny-ko-cpt-loss.png").stat().st_size > 1000
    config = yaml.safe_load((root / "config" / "korean-llm-tiny-ko" / "cpt.yaml").read_text())
    assert config["run"]["output_root"] == str(root / "output")
    assert "korean-llm run ci" in result.stderr and "ok" in result.stderr

    again = run_cli(
        "run",
        "-f",
        str(REPO / "values" / "local.yaml"),
        "--runs-dir",
        str(tmp_path),
        "--run-id",
        "ci",
        "--set",
        "stageDefaults.cpt.config.training.max_steps=8",
    )
    assert again.returncode == 0
    assert again.stderr.count("done before") == 2  # finished stages are not trained again


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


def test_path_map_rewrites_mounts_and_set_values(tmp_path: Path) -> None:
    pm = PathMap({"/data": tmp_path / "d", "/output": tmp_path / "o", "/etc/korean-llm": tmp_path / "c"})
    assert pm("/data/x/y") == f"{tmp_path}/d/x/y"
    assert pm("/output") == f"{tmp_path}/o"
    assert pm("/dataset") == "/dataset"
    assert pm("run.output_root=/output/m") == f"run.output_root={tmp_path}/o/m"
    assert pm.walk({"a": ["/etc/korean-llm/cpt.yaml", 3]}) == {"a": [f"{tmp_path}/c/cpt.yaml", 3]}
