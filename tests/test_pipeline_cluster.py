"""`korean-llm pipeline --backend cluster` against a Kubernetes API double on 127.0.0.1 (tests/fake_kube.py).

The objects the double serves are built in the shapes Argo Workflows v4.1.2, the training operator v1.9.4
and Trainer v2.3.0 write (tests/k8s_shapes.py says where each comes from); the WorkflowTemplate is the one
this chart renders for values/7b.yaml. No real cluster is involved.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from korean_llm.cli import main
from korean_llm.config import load_config
from korean_llm.local.runner import REPO_ROOT, render
from korean_llm.observe.metrics import StageMetrics
from korean_llm.pipeline_manager import cluster_backend

from . import k8s_shapes as shapes
from .fake_kube import FakeKube, self_signed_cert

TEMPLATE = "korean-llm-qwen7b"
WF = f"{TEMPLATE}-r7"
STAGES = ["preprocess", "cpt", "sft", "rlhf", "evaluate", "deploy"]


@pytest.fixture(scope="module")
def template_7b() -> dict[str, Any]:
    docs = render(REPO_ROOT / "charts", [str(REPO_ROOT / "values" / "7b.yaml")], [])
    return next(d for d in docs if d["kind"] == "WorkflowTemplate" and d["metadata"]["name"] == TEMPLATE)


@pytest.fixture
def kube(tmp_path: Path, template_7b: dict[str, Any]) -> Iterator[FakeKube]:
    with FakeKube() as fake:
        fake.add("workflowtemplates", template_7b)
        fake.kubeconfig(tmp_path / "kubeconfig")
        yield fake


@pytest.fixture
def pipeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    def run(*args: str) -> tuple[int, str, str]:
        code = main(
            [
                *(["-v"] if args[:1] == ("-v",) else []),
                "pipeline",
                "--backend",
                "cluster",
                "--kubeconfig",
                str(tmp_path / "kubeconfig"),
                *[a for a in args if a != "-v"],
            ]
        )
        out, err = capsys.readouterr()
        return code, out, err

    return run


def running_workflow(uid: str = "wf-uid-r7") -> dict[str, Any]:
    """preprocess done, cpt running as a PyTorchJob; the remaining DAG tasks not started."""
    nodes = [
        shapes.node(WF, "preprocess", "Succeeded", "2026-11-20T09:00:05Z", "2026-11-20T09:04:35Z"),
        shapes.node(WF, "cpt", "Running", "2026-11-20T09:04:40Z"),
    ]
    return shapes.workflow(WF, "r7", TEMPLATE, "Running", nodes, started="2026-11-20T09:00:00Z", tasks=STAGES, uid=uid)


def stage_metrics_text(write_config: Callable[..., Path]) -> str:
    """What a CPT stage serves on /metrics: the runtime's own gauges, recorded the way a training step records them."""
    metrics = StageMetrics(load_config(write_config("cpt", {"run": {"model_name": "qwen7b", "run_id": "r7"}})))
    metrics.record(120, 600, {"loss": 2.3456, "learning_rate": 1e-4}, tokens_per_s=5120.0, eta=3600.0)
    return generate_latest(metrics.registry).decode()


def test_submit_creates_a_workflow_from_the_installed_template(kube: FakeKube, pipeline: Any) -> None:
    code, out, _ = pipeline("submit", "--template", TEMPLATE, "-p", "run-id=r7")
    assert code == 0 and out.strip() == WF
    post = next(r for r in kube.requests if r["method"] == "POST")
    assert post["path"] == "/apis/argoproj.io/v1alpha1/namespaces/ml/workflows"  # the kubeconfig context's namespace
    assert post["auth"] == "Bearer test-token"
    body = post["body"]
    assert body["spec"] == {
        "workflowTemplateRef": {"name": TEMPLATE},
        "arguments": {"parameters": [{"name": "run-id", "value": "r7"}]},
    }
    assert body["metadata"]["labels"]["korean-llm/run"] == "r7"
    assert body["metadata"]["labels"]["workflows.argoproj.io/workflow-template"] == TEMPLATE

    # The same run id again: the Workflow exists (409 AlreadyExists) -> exit 2, named.
    code, _, err = pipeline("submit", "--template", TEMPLATE, "--run-id", "r7")
    assert code == 2 and f"Workflow {WF} already exists" in err


def test_namespace_option_overrides_the_contexts_namespace(kube: FakeKube, pipeline: Any) -> None:
    code, out, err = pipeline("--namespace", "other", "submit", "--template", TEMPLATE, "--run-id", "r9")
    assert code == 0, err
    assert out.strip() == f"{TEMPLATE}-r9"
    paths = [r["path"] for r in kube.requests]
    assert paths == [
        f"/apis/argoproj.io/v1alpha1/namespaces/other/workflowtemplates/{TEMPLATE}",
        "/apis/argoproj.io/v1alpha1/namespaces/other/workflows",
    ]
    assert kube.requests[-1]["body"]["metadata"]["namespace"] == "other"
    kube.requests.clear()
    code, _, err = pipeline("-n", "other", "list")
    assert code == 0, err
    assert [r["path"] for r in kube.requests] == ["/apis/argoproj.io/v1alpha1/namespaces/other/workflows"]


def test_in_cluster_service_account_reaches_the_api_with_its_token_and_namespace(
    tmp_path: Path, template_7b: dict[str, Any], monkeypatch: Any, capsys: Any
) -> None:
    """No kubeconfig: the pod's service account, read the way kubernetes 35.0.0's
    `kubernetes/config/incluster_config.py` reads it (`InClusterConfigLoader`: https://$KUBERNETES_SERVICE_HOST:
    $KUBERNETES_SERVICE_PORT, `bearer <token file>`, the CA file as the only trusted CA) from a service account
    folder laid out like the mounted one (token, ca.crt, namespace)."""
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    cert, key = self_signed_cert(sa)
    (sa / "token").write_text("sa-token")
    (sa / "namespace").write_text("training\n")
    monkeypatch.setattr(cluster_backend, "SERVICE_ACCOUNT_DIR", sa)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    with FakeKube(namespace="training", tls=(cert, key)) as fake:
        fake.add("workflowtemplates", template_7b)
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(fake.server.server_address[1]))
        assert main(["pipeline", "--backend", "cluster", "submit", "--template", TEMPLATE, "--run-id", "r5"]) == 0
        assert capsys.readouterr().out.strip() == f"{TEMPLATE}-r5"
        assert [(r["method"], r["path"], r["auth"]) for r in fake.requests] == [
            ("GET", f"/apis/argoproj.io/v1alpha1/namespaces/training/workflowtemplates/{TEMPLATE}", "bearer sa-token"),
            ("POST", "/apis/argoproj.io/v1alpha1/namespaces/training/workflows", "bearer sa-token"),
        ]
        # The CA file is what the client trusts: another CA's certificate is refused (exit 129, named).
        other, _ = self_signed_cert(tmp_path)
        (sa / "ca.crt").write_bytes(other.read_bytes())
        assert main(["pipeline", "--backend", "cluster", "list"]) == 129
        assert f"cannot reach the Kubernetes API at {fake.url}" in capsys.readouterr().err
    # Outside a pod (no KUBERNETES_SERVICE_HOST): exit 129 naming both ways that were tried.
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    assert main(["pipeline", "--backend", "cluster", "list"]) == 129
    err = capsys.readouterr().err
    assert f"no usable kubeconfig {tmp_path / 'no-kubeconfig'}" in err and "Service host/port is not set" in err


def test_submit_from_values_renders_the_template_name(kube: FakeKube, pipeline: Any) -> None:
    code, out, _ = pipeline("submit", "-f", str(REPO_ROOT / "values" / "7b.yaml"), "--run-id", "r8")
    assert code == 0 and out.strip() == f"{TEMPLATE}-r8"


def test_submit_rejects_unknown_template_and_parameter(kube: FakeKube, pipeline: Any) -> None:
    code, _, err = pipeline("submit", "--template", "korean-llm-qwen9b")
    assert code == 2
    assert "no WorkflowTemplate of that name in namespace ml (installed: korean-llm-qwen7b" in err
    code, _, err = pipeline("submit", "--template", TEMPLATE, "-p", "learning-rate=1e-4")
    assert code == 2
    assert "declares no parameter 'learning-rate' (it declares: run-id)" in err
    code, _, err = pipeline("submit", "--template", TEMPLATE, "-p", "run-id")
    assert code == 2 and "expected NAME=VALUE" in err
    code, _, err = pipeline("submit", "--template", TEMPLATE, "--run-id", "Run_7")
    assert code == 2 and "run id 'Run_7'" in err
    assert not [r for r in kube.requests if r["method"] == "POST"]  # nothing half-created


def test_no_permission_is_exit_5_naming_the_verb_and_the_role(kube: FakeKube, pipeline: Any) -> None:
    kube.forbid.add(("create", "workflows"))
    code, _, err = pipeline("submit", "--template", TEMPLATE, "--run-id", "r9")
    assert code == 5
    assert 'cannot create resource "workflows" in API group "argoproj.io" in the namespace "ml"' in err
    assert "pipelineManager.rbac" in err


def test_unreachable_cluster_and_missing_kubeconfig_are_exit_129(tmp_path: Path, monkeypatch: Any, capsys: Any) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / "dead-kubeconfig"
    cfg.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: dead\n"
        f"clusters: [{{name: dead, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: dead, context: {cluster: dead, user: u}}]\n"
    )
    assert main(["pipeline", "--backend", "cluster", "--kubeconfig", str(cfg), "list"]) == 129
    assert f"cannot reach the Kubernetes API at http://127.0.0.1:{port}" in capsys.readouterr().err

    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert main(["pipeline", "--backend", "cluster", "list"]) == 129
    assert "no cluster configured" in capsys.readouterr().err
    assert main(["pipeline", "--backend", "cluster", "--kubeconfig", str(cfg), "--context", "nope", "list"]) == 129
    assert "context nope" in capsys.readouterr().err


def test_status_shows_node_phases_pending_tasks_and_live_metrics(
    kube: FakeKube, pipeline: Any, write_config: Callable[..., Path]
) -> None:
    wf = running_workflow()
    kube.add("workflows", wf)
    job = shapes.pytorchjob("korean-llm-qwen7b-cpt-x7k2p", "cpt", "r7", wf, "Running", "2026-11-20T09:04:41Z")
    kube.add("pytorchjobs", job)
    kube.add("pods", shapes.master_pod(job["metadata"]["name"], "Running"))
    kube.proxy[f"{job['metadata']['name']}-master-0:9400/metrics"] = stage_metrics_text(write_config)

    code, _, err = pipeline("status", "r7")  # the run id finds the Workflow by its korean-llm/run label
    assert code == 0, err
    rows = {line.split("│")[1].strip(): line for line in err.splitlines() if line.count("│") > 5}
    assert "Succeeded" in rows["preprocess"] and "4m30s" in rows["preprocess"]
    cpt = rows["cpt"]
    assert "Running" in cpt and "120/600" in cpt and "2.3456" in cpt and "5120" in cpt and "1h00m" in cpt
    for later in ("sft", "rlhf", "evaluate", "deploy"):
        assert "Pending" in rows[later]
    proxied = [r for r in kube.requests if "proxy" in r["path"]]
    assert proxied[0]["path"] == f"/api/v1/namespaces/ml/pods/{job['metadata']['name']}-master-0:9400/proxy/metrics"


def test_list_shows_every_run(kube: FakeKube, pipeline: Any) -> None:
    kube.add("workflows", running_workflow())
    done = shapes.workflow(
        f"{TEMPLATE}-r6", "r6", TEMPLATE, "Succeeded",
        [shapes.node(f"{TEMPLATE}-r6", s, "Succeeded", "2026-11-19T09:00:00Z", "2026-11-19T10:00:00Z") for s in STAGES],
        started="2026-11-19T09:00:00Z", finished="2026-11-19T15:00:00Z", tasks=STAGES, uid="uid-r6",
    )  # fmt: skip
    kube.add("workflows", done)
    code, _, err = pipeline("list")
    assert code == 0
    assert f"{TEMPLATE}-r6" in err and "Succeeded" in err and "6h00m" in err
    assert WF in err and "Running" in err and "cpt" in err
    assert kube.requests[-1]["query"]["labelSelector"] == "korean-llm/run"


def failed_at_evaluate(message: str) -> dict[str, Any]:
    nodes = [
        shapes.node(WF, s, "Succeeded", f"2026-11-20T0{i}:00:00Z", f"2026-11-20T0{i}:50:00Z")
        for i, s in enumerate(STAGES[:4])
    ]
    nodes.append(shapes.node(WF, "evaluate", "Failed", "2026-11-20T05:00:00Z", "2026-11-20T05:20:00Z", message=message))
    return shapes.workflow(
        WF, "r7", TEMPLATE, "Failed", nodes, started="2026-11-20T00:00:00Z", finished="2026-11-20T05:20:01Z",
        message="child 'korean-llm-qwen7b-r7-1536052181' failed", tasks=STAGES, uid="wf-uid-r7",
    )  # fmt: skip


@pytest.mark.parametrize(("exit_code", "expected"), [(3, 3), (1, 1)])
def test_wait_watches_until_the_end_and_maps_the_outcome(
    kube: FakeKube, pipeline: Any, exit_code: int, expected: int
) -> None:
    wf = running_workflow()
    kube.add("workflows", wf)
    final = failed_at_evaluate(
        "failure condition 'status.completionTime, !status.replicaStatuses.Master.succeeded' evaluated true"
    )
    job = shapes.pytorchjob(
        "korean-llm-qwen7b-evaluate-q2w9d",
        "evaluate",
        "r7",
        wf,
        "Failed",
        "2026-11-20T05:00:02Z",
        "2026-11-20T05:19:50Z",
    )
    kube.add("pytorchjobs", job)
    kube.add("pods", shapes.master_pod(job["metadata"]["name"], "Failed", exit_code=exit_code))
    still = running_workflow()
    still["metadata"]["resourceVersion"] = "15772211"
    kube.watch_events = [{"type": "MODIFIED", "object": still}, {"type": "MODIFIED", "object": final}]
    code, out, _ = pipeline("wait", WF, "--timeout", "30")
    assert code == expected
    assert out.strip() == ("GateFailed" if expected == 3 else "Failed")
    watch = next(r for r in kube.requests if r["query"].get("watch") == "True")
    assert watch["query"]["fieldSelector"] == f"metadata.name={WF}"
    assert watch["query"]["resourceVersion"] == "15772210"


def test_wait_gate_from_a_container_step_message(kube: FakeKube, pipeline: Any) -> None:
    kube.add("workflows", failed_at_evaluate("main: Error (exit code 3)"))
    code, out, _ = pipeline("wait", WF)
    assert code == 3 and out.strip() == "GateFailed"


def test_wait_success_and_timeout(kube: FakeKube, pipeline: Any) -> None:
    kube.add("workflows", running_workflow())
    code, _, err = pipeline("wait", WF, "--timeout", "1")
    assert code == 124 and "still running after 1s" in err
    done = running_workflow()
    done["status"].update(phase="Succeeded", finishedAt="2026-11-20T12:00:00Z")
    kube.watch_events = [{"type": "MODIFIED", "object": done}]
    code, out, _ = pipeline("wait", WF, "--timeout", "30")
    assert code == 0 and out.strip() == "Succeeded"


def test_logs_of_a_job_stage_and_of_a_container_stage(kube: FakeKube, pipeline: Any) -> None:
    wf = running_workflow()
    kube.add("workflows", wf)
    job = shapes.pytorchjob("korean-llm-qwen7b-cpt-x7k2p", "cpt", "r7", wf, "Running", "2026-11-20T09:04:41Z")
    kube.add("pytorchjobs", job)
    pod = shapes.master_pod(job["metadata"]["name"], "Running")
    kube.add("pods", pod)
    kube.logs[(pod["metadata"]["name"], "pytorch")] = (
        "2026-11-20 09:06:01,201 INFO korean_llm: cpt step 5/600 loss 3.1021\n"
        "2026-11-20 09:06:31,877 INFO korean_llm: cpt step 10/600 loss 2.9874\n"
    )
    argo = shapes.argo_pod(WF, "preprocess", "preprocess")
    kube.add("pods", argo)
    kube.logs[(argo["metadata"]["name"], "main")] = (
        "2026-11-20 09:01:00,000 INFO korean_llm: preprocess: kept 9 of 11 documents\n"
    )

    code, out, _ = pipeline("logs", WF, "--stage", "cpt")
    assert code == 0 and out.splitlines() == [
        "2026-11-20 09:06:01,201 INFO korean_llm: cpt step 5/600 loss 3.1021",
        "2026-11-20 09:06:31,877 INFO korean_llm: cpt step 10/600 loss 2.9874",
    ]
    code, out, _ = pipeline("logs", WF)
    assert (
        out.splitlines()[0] == "preprocess: 2026-11-20 09:01:00,000 INFO korean_llm: preprocess: kept 9 of 11 documents"
    )
    assert out.splitlines()[-1].startswith("cpt: ")
    code, out, _ = pipeline("logs", WF, "--stage", "cpt", "--follow")
    assert code == 0 and out.endswith("cpt step 10/600 loss 2.9874\n")
    followed = [r for r in kube.requests if r["path"].endswith("/log")][-1]
    assert followed["query"] == {"container": "pytorch", "follow": "True"}
    code, _, err = pipeline("logs", WF, "--stage", "deploy")
    assert code == 2 and "no such started step" in err


def test_stop_shuts_the_workflow_down_and_deletes_its_running_training_jobs(kube: FakeKube, pipeline: Any) -> None:
    wf = running_workflow()
    kube.add("workflows", wf)
    kube.objects["trainjobs"] = {}
    running = shapes.pytorchjob("korean-llm-qwen7b-cpt-x7k2p", "cpt", "r7", wf, "Running", "2026-11-20T09:04:41Z")
    finished = shapes.pytorchjob(
        "korean-llm-qwen7b-cpt-a1b2c", "cpt", "r7", wf, "Succeeded", "2026-11-20T08:00:00Z", "2026-11-20T08:30:00Z"
    )
    other = shapes.pytorchjob(
        "korean-llm-qwen7b-cpt-zzzzz",
        "cpt",
        "r5",
        shapes.workflow("other", "r5", TEMPLATE, None, [], uid="uid-other"),
        "Running",
        "2026-11-20T09:00:00Z",
    )
    for job in (running, finished, other):
        kube.add("pytorchjobs", job)
    kube.add("trainjobs", shapes.trainjob("korean-llm-qwen7b-sft-t9", wf, "sft", complete=False))
    code, _, err = pipeline("stop", "r7")
    assert code == 0, err
    patch = next(r for r in kube.requests if r["method"] == "PATCH")
    assert patch["path"] == f"/apis/argoproj.io/v1alpha1/namespaces/ml/workflows/{WF}"
    assert patch["body"] == {"spec": {"shutdown": "Stop"}}
    assert patch["content_type"] == "application/merge-patch+json"
    deleted = sorted(
        r["path"].rsplit("/", 2)[-2] + "/" + r["path"].rsplit("/", 1)[-1]
        for r in kube.requests
        if r["method"] == "DELETE"
    )
    assert deleted == ["pytorchjobs/korean-llm-qwen7b-cpt-x7k2p", "trainjobs/korean-llm-qwen7b-sft-t9"]
    assert set(kube.objects["pytorchjobs"]) == {"korean-llm-qwen7b-cpt-a1b2c", "korean-llm-qwen7b-cpt-zzzzz"}
    assert "deleted PyTorchJob korean-llm-qwen7b-cpt-x7k2p" in err
    listed = [r for r in kube.requests if r["method"] == "GET" and r["path"].endswith(("/pytorchjobs", "/trainjobs"))]
    assert {r["query"]["labelSelector"] for r in listed} == {"korean-llm/run=r7"}

    stopped = kube.get("workflows", WF)
    assert stopped is not None
    stopped["status"].update(phase="Failed", message="Stopped with strategy 'Stop'", finishedAt="2026-11-20T10:00:00Z")
    code, _, err = pipeline("status", WF)
    assert "Stopped" in err.splitlines()[0] + err.splitlines()[1]
    assert pipeline("wait", WF)[0] == 1


def test_cleanup_deletes_only_old_finished_runs_outside_the_helm_release(kube: FakeKube, pipeline: Any) -> None:
    def finished(name: str, run: str, end: str, **kw: Any) -> dict[str, Any]:
        return shapes.workflow(name, run, TEMPLATE, "Succeeded", [], started=end, finished=end, uid=f"uid-{run}", **kw)

    kube.add("workflows", finished("korean-llm-qwen7b-old", "old", "2026-10-01T00:00:00Z"))
    kube.add("workflows", finished("korean-llm-qwen7b-new", "new", "2099-01-01T00:00:00Z"))
    kube.add(
        "workflows",
        finished(
            "korean-llm-qwen7b-r1",
            "r1",
            "2026-10-01T00:00:00Z",
            labels={"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/instance": "korean-llm"},
        ),
    )
    old_running = running_workflow()
    old_running["status"]["startedAt"] = "2026-10-01T00:00:00Z"
    kube.add("workflows", old_running)

    code, out, _ = pipeline("cleanup", "--older", "7d", "--dry-run")
    assert code == 0
    lines = sorted(out.splitlines())
    assert lines[:2] == ["kept: korean-llm-qwen7b-r1 (part of the Helm release korean-llm)", f"kept: {WF} (running)"]
    assert len(lines) == 3 and lines[2].startswith("would delete: korean-llm-qwen7b-old (Succeeded, ended ")
    assert not [r for r in kube.requests if r["method"] == "DELETE"]
    code, out, _ = pipeline("cleanup", "--older", "7d")
    deletes = [r for r in kube.requests if r["method"] == "DELETE"]
    assert [r["path"].rsplit("/", 1)[-1] for r in deletes] == ["korean-llm-qwen7b-old"]
    assert (
        deletes[0]["body"] == {"propagationPolicy": "Background"}
        or deletes[0]["query"].get("propagationPolicy") == "Background"
    )
    assert set(kube.objects["workflows"]) == {"korean-llm-qwen7b-new", "korean-llm-qwen7b-r1", WF}
    code, _, err = pipeline("cleanup", "--older", "a week")
    assert code == 2 and "--older 'a week'" in err


def role_allows(role: dict[str, Any], verb: str, group: str, resource: str) -> bool:
    return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in role["rules"])


def test_the_charts_role_allows_every_call_the_commands_make(
    kube: FakeKube, pipeline: Any, write_config: Callable[..., Path]
) -> None:
    """Every request of submit, list, status (with live metrics), wait, logs, stop and cleanup is allowed by
    the Role `pipelineManager.rbac` renders, and the Role grants nothing beyond them."""
    wf = running_workflow()
    kube.add("workflows", wf)
    kube.objects["trainjobs"] = {}
    job = shapes.pytorchjob("korean-llm-qwen7b-cpt-x7k2p", "cpt", "r7", wf, "Running", "2026-11-20T09:04:41Z")
    kube.add("pytorchjobs", job)
    pod = shapes.master_pod(job["metadata"]["name"], "Running")
    kube.add("pods", pod)
    kube.logs[(pod["metadata"]["name"], "pytorch")] = "cpt step 5/600 loss 3.1021\n"
    kube.proxy[f"{pod['metadata']['name']}:9400/metrics"] = stage_metrics_text(write_config)
    kube.add("pods", shapes.argo_pod(WF, "preprocess", "preprocess"))
    kube.logs[(f"{WF}-preprocess-{shapes.zlib.crc32(b'preprocess') % 10**10}", "main")] = "preprocess done\n"
    kube.add("trainjobs", shapes.trainjob("korean-llm-qwen7b-sft-t9", wf, "sft", complete=False))
    old = shapes.workflow(f"{TEMPLATE}-r1", "r1", TEMPLATE, "Failed", [], started="2026-10-01T00:00:00Z",
                          finished="2026-10-01T01:00:00Z", uid="uid-r1")  # fmt: skip
    kube.add("workflows", old)
    done = running_workflow()
    done["status"].update(phase="Succeeded", finishedAt="2026-11-20T12:00:00Z")
    assert pipeline("submit", "--template", "korean-llm-nope")[0] == 2  # lists the installed templates
    for args in (
        ("submit", "--template", TEMPLATE, "--run-id", "r8"),
        ("list",),
        ("status", WF),
        ("logs", WF),
        ("stop", WF),
        ("cleanup", "--older", "1s"),
    ):
        assert pipeline(*args)[0] == 0, args
    kube.watch_events = [{"type": "MODIFIED", "object": done}]
    assert pipeline("wait", "r7", "--timeout", "30")[0] == 0
    calls = {r["rbac"] for r in kube.requests}

    docs = render(REPO_ROOT / "charts", [], ["pipelineManager.rbac.create=true"])
    role = next(d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == "korean-llm-pipeline-manager")
    assert not [d for d in docs if d["kind"] == "RoleBinding" and d["metadata"]["name"] == role["metadata"]["name"]]
    for verb, group, resource in sorted(calls):
        assert role_allows(role, verb, group, resource), f"the Role does not allow {verb} {group}/{resource}"
    granted = {(v, g, res) for r in role["rules"] for g in r["apiGroups"] for res in r["resources"] for v in r["verbs"]}
    assert granted - calls == set()  # least privilege: each granted verb is one a command uses
    for r in role["rules"]:
        assert "*" not in r["verbs"] + r["resources"] + r["apiGroups"] and "secrets" not in r["resources"]

    bound = render(
        REPO_ROOT / "charts",
        [],
        [
            "pipelineManager.rbac.create=true",
            "pipelineManager.rbac.subjects[0].kind=Group",
            "pipelineManager.rbac.subjects[0].name=ml-team",
            "pipelineManager.rbac.subjects[1].kind=ServiceAccount",
            "pipelineManager.rbac.subjects[1].name=ci",
        ],
    )
    binding = next(d for d in bound if d["kind"] == "RoleBinding" and d["metadata"]["name"] == role["metadata"]["name"])
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "Group", "name": "ml-team", "apiGroup": "rbac.authorization.k8s.io"},
        {"kind": "ServiceAccount", "name": "ci", "namespace": "default"},
    ]
    assert not [d for d in render(REPO_ROOT / "charts", [], []) if "pipeline-manager" in d["metadata"]["name"]]


def test_the_schema_refuses_a_bad_rbac_subject() -> None:
    from korean_llm.errors import ConfigError

    with pytest.raises(ConfigError, match="pipelineManager"):
        render(
            REPO_ROOT / "charts",
            [],
            ["pipelineManager.rbac.create=true", "pipelineManager.rbac.subjects[0].kind=Robot"],
        )
