"""`promtool test rules` on the chart's alerts (tests/chart/alerts/alerts-test.yaml): every alert fires on
real-shaped series and stays quiet where it must. promtool comes from Debian's `prometheus` package
(ci/install-promtool.sh puts it in .venv/bin); the test fails when it is missing."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .chart.rendered import REPO, helm_template, load_all

ALERTS = Path(__file__).parent / "chart" / "alerts" / "alerts-test.yaml"


def promtool() -> str:
    found = shutil.which("promtool", path=f"{REPO / '.venv' / 'bin'}:/usr/bin:/usr/local/bin")
    assert found, "promtool not found: run ci/install-promtool.sh .venv/bin (Debian package prometheus)"
    return found


def test_every_alert_has_a_promtool_unit_test(tmp_path: Path) -> None:
    docs = load_all(helm_template([REPO / "values" / "7b.yaml"]))
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}), encoding="utf-8")
    shutil.copy(ALERTS, tmp_path / "alerts-test.yaml")
    out = subprocess.run(
        [promtool(), "test", "rules", "alerts-test.yaml"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    tested = {t["alertname"] for case in yaml.safe_load(ALERTS.read_text())["tests"] for t in case["alert_rule_test"]}
    fired = {
        t["alertname"]
        for case in yaml.safe_load(ALERTS.read_text())["tests"]
        for t in case["alert_rule_test"]
        if t["exp_alerts"]
    }
    assert alerts == tested == fired


UID = "0c3a4f1e-7d1b-4b0e-9a7e-2f8f9c1d5e6a"  # a workflow.uid as Kubernetes writes it
GPU_TRAINING_STAGES = ("cpt", "sft", "rlhf")


def training_pod_regex(docs: list[dict[str, Any]]) -> str:
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    expr = next(
        r["expr"] for g in rule["spec"]["groups"] for r in g["rules"] if r["alert"] == "KoreanLLMGPUUtilisationLow"
    )
    found = re.search(r'pod=~"([^"]+)"', expr)
    assert found, expr
    return found.group(1)


def pod_names(job: dict[str, Any]) -> list[str]:
    """The names of the pods the training backend starts for `job`: training-operator v1.9 names PyTorchJob pods
    <job>-master-0 / <job>-worker-<i>; a TrainJob's pods are its JobSet's Job <job>-node-0 (jobset v0.12.0
    GenJobName) with the Indexed-Job pod names <job>-node-0-<index>-<5 random> (Kubernetes
    podGenerateNameWithIndex; the apiserver's suffix alphabet is bcdfghjklmnpqrstvwxz2456789)."""
    name = job["metadata"]["name"].replace("{{workflow.uid}}", UID)
    if job["kind"] == "PyTorchJob":
        workers = job["spec"]["pytorchReplicaSpecs"].get("Worker", {}).get("replicas", 0)
        return [f"{name}-master-0", *(f"{name}-worker-{i}" for i in range(workers))]
    return [f"{name}-node-0-{i}-x7k2p" for i in range(job["spec"]["trainer"]["numNodes"])]


@pytest.mark.parametrize("backend", ["trainjob", "pytorchjob"])
@pytest.mark.parametrize("values", ["7b.yaml", "72b.yaml"])
def test_the_utilisation_alert_watches_the_training_pods_of_either_backend(values: str, backend: str) -> None:
    """Prometheus anchors `=~` at both ends (a full match). The GPU training stages' pods match, whichever backend
    starts them; the inference server's pods and the Argo step pods do not."""
    docs = load_all(helm_template([REPO / "values" / values], sets=[f"training.backend={backend}"]))
    regex = re.compile(training_pod_regex(docs))
    kind = {"trainjob": "TrainJob", "pytorchjob": "PyTorchJob"}[backend]
    jobs = [
        yaml.safe_load(t["resource"]["manifest"])
        for d in docs
        if d["kind"] == "WorkflowTemplate"
        for t in d["spec"]["templates"]
        if t["name"] in GPU_TRAINING_STAGES and "resource" in t
    ]
    assert len(jobs) == len(GPU_TRAINING_STAGES) and {j["kind"] for j in jobs} == {kind}
    names = [n for j in jobs for n in pod_names(j)]
    assert not [n for n in names if not regex.fullmatch(n)], regex.pattern
    if values == "72b.yaml":
        assert len(names) > len(jobs)  # the second node's pods are watched too
    # The vLLM Deployment's pods (<deployment>-<pod-template-hash>-<5 random>) and Argo's step pods
    # (<workflow>-<template>-<hash>) idle or hold no GPU.
    deployment = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("inference"))
    quiet = [
        f"{deployment['metadata']['name']}-7c9d5b6f4-x2k8q",
        "korean-llm-qwen7b-7b-r1-cpt-3456789012",
        f"evaluate-{UID}-master-0",
        f"evaluate-{UID}-node-0-0-x7k2p",
    ]
    assert not [n for n in quiet if regex.fullmatch(n)], regex.pattern
