"""Kubernetes, Argo Workflows and training-operator objects in the shapes those projects produce.

Where each shape comes from (field names and values, not code, are taken):

- Workflow `status`: Argo Workflows v4.1.2 `pkg/apis/workflow/v1alpha1/workflow_types.go` (WorkflowStatus:
  phase, startedAt, finishedAt, progress, message, nodes, storedWorkflowTemplateSpec; NodeStatus: id, name,
  displayName, type, templateName, phase, boundaryID, children, message, startedAt, finishedAt) and its
  controller test data: `workflow/controller/testdata/dag_retry_succeeded.yaml` (a `Retry` node whose children
  are the attempts `step1(0)`, `step1(1)`, named `<workflow>.<task>(n)`), `dag-disable-fail-fast.yaml` (node ids
  `<workflow>-<number>`, the DAG root node named after the workflow), `operator_workflow_template_ref_test.go`
  (a workflowTemplateRef Workflow's `storedWorkflowTemplateSpec` and `progress: 0/0`).
- Messages: `workflow/controller/operator.go` v4.1.2: a failed main container gives
  `main: Error (exit code N)`, a stopped workflow `Stopped with strategy 'Stop'`; a stopped node
  `workflow shutdown with strategy: Stop` (operator_workflow_template_ref_test.go asserts both words);
  a resource step whose failureCondition matched: `failure condition '…' evaluated true`
  (`workflow/executor/resource.go`).
- Labels Argo sets: `workflows.argoproj.io/completed`, `workflows.argoproj.io/phase` (testdata above),
  `workflows.argoproj.io/workflow` on pods and the `workflows.argoproj.io/node-name` annotation
  (`workflow/common/common.go`).
- PyTorchJob status: training-operator v1.9.4 `pkg/apis/kubeflow.org/v1/common_types.go` (JobStatus:
  conditions, replicaStatuses {active, succeeded, failed, selector}, startTime, completionTime) and
  `pkg/controller.v1/pytorch/pytorchjob_controller.go` (reasons `PyTorchJobCreated` / `Running` / `Failed`,
  messages `PyTorchJob <name> is created.`, `… is running.`, `… is failed because 1 Master replica(s) failed.`);
  pod labels `training.kubeflow.org/job-name`, `training.kubeflow.org/replica-type` (lower-cased `master`),
  `training.kubeflow.org/replica-index` (common_types.go; util.go lower-cases the type).
- TrainJob status: Trainer v2.3.0 `pkg/apis/trainer/v1alpha1/trainjob_types.go` (conditions `Complete`,
  `Failed`, `Suspended`).
- List and watch bodies, errors: Kubernetes API conventions as the apiserver writes them: a list is
  `{apiVersion, kind: <Kind>List, metadata: {resourceVersion}, items}`, a watch stream is one JSON
  `{"type": ADDED|MODIFIED|DELETED|ERROR, "object": …}` per line (metav1.WatchEvent; the `kubernetes` client's
  `watch.py` parses exactly these), an error is a `Status` object (`kind: Status, status: Failure, reason,
  message, code, details`) whose RBAC message reads `<resource>.<group> is forbidden: User "…" cannot
  <verb> resource "<resource>" in API group "<group>" in the namespace "<ns>"`.
"""

from __future__ import annotations

import zlib
from typing import Any

RUN_LABEL = "korean-llm/run"


def node_id(workflow: str, name: str) -> str:
    return f"{workflow}-{zlib.crc32(name.encode())}"


def node(
    workflow: str,
    task: str,
    phase: str,
    started: str | None,
    finished: str | None = None,
    *,
    type: str = "Pod",
    template: str | None = None,
    message: str | None = None,
    children: list[str] | None = None,
) -> tuple[str, dict[str, Any]]:
    """One entry of `status.nodes`: (id, NodeStatus)."""
    name = f"{workflow}.{task}"
    n: dict[str, Any] = {
        "boundaryID": workflow,
        "displayName": task.rsplit(".", 1)[-1],
        "id": node_id(workflow, name),
        "name": name,
        "phase": phase,
        "templateName": template or task.split("(")[0].rsplit(".", 1)[-1],
        "type": type,
    }
    if started:
        n["startedAt"] = started
    if finished:
        n["finishedAt"] = finished
    if message:
        n["message"] = message
    if children:
        n["children"] = children
    if type == "Retry":
        n.pop("templateName")
    return n["id"], n


def workflow(
    name: str,
    run_id: str,
    template: str,
    phase: str | None,
    nodes: list[tuple[str, dict[str, Any]]],
    *,
    started: str | None = None,
    finished: str | None = None,
    message: str | None = None,
    tasks: list[str] | None = None,
    uid: str = "734516b5-97f2-11e9-9fea-00163e00cf4e",
    shutdown: str | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Workflow submitted with workflowTemplateRef, as the controller has updated it."""
    _, root = node(workflow=name, task="x", phase=phase or "Running", started=started, finished=finished)
    root.update(id=name, name=name, displayName=name, templateName="pipeline", type="DAG")
    root.pop("boundaryID")
    root["children"] = [nid for nid, n in nodes if n.get("boundaryID") == name][:1]
    all_nodes = {name: root, **dict(nodes)} if phase else {}
    meta_labels = {RUN_LABEL: run_id, "workflows.argoproj.io/workflow-template": template, **(labels or {})}
    if phase:
        meta_labels["workflows.argoproj.io/phase"] = phase
    if phase in ("Succeeded", "Failed", "Error"):
        meta_labels["workflows.argoproj.io/completed"] = "true"
    order = tasks or []
    done = sum(1 for _, n in nodes if n["type"] == "Pod" and n["phase"] == "Succeeded")
    pods = sum(1 for _, n in nodes if n["type"] == "Pod")
    wf: dict[str, Any] = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {
            "creationTimestamp": started or "2026-11-20T09:00:00Z",
            "generation": 3,
            "labels": meta_labels,
            "name": name,
            "namespace": "ml",
            "resourceVersion": "15772210",
            "uid": uid,
        },
        "spec": {
            "arguments": {"parameters": [{"name": "run-id", "value": run_id}]},
            "workflowTemplateRef": {"name": template},
        },
        "status": {},
    }
    if shutdown:
        wf["spec"]["shutdown"] = shutdown
    if phase:
        wf["status"] = {
            "phase": phase,
            "startedAt": started,
            "finishedAt": finished,
            "progress": f"{done}/{pods}",
            "nodes": all_nodes,
            "storedWorkflowTemplateSpec": {
                "entrypoint": "pipeline",
                "arguments": {"parameters": [{"name": "run-id", "value": run_id}]},
                "templates": [
                    {
                        "name": "pipeline",
                        "dag": {
                            "tasks": [
                                {"name": t, "template": t, **({"dependencies": [order[i - 1]]} if i else {})}
                                for i, t in enumerate(order)
                            ]
                        },
                    }
                ],
                "workflowTemplateRef": {"name": template},
            },
        }
        if message:
            wf["status"]["message"] = message
    return wf


def pytorchjob(
    name: str, stage: str, run_id: str, owner: dict[str, Any], state: str, started: str, finished: str | None = None
) -> dict[str, Any]:
    """A PyTorchJob the chart's resource step created (generateName, labels, ownerReference to the Workflow)."""
    conditions: list[dict[str, Any]] = [
        {
            "lastTransitionTime": started,
            "lastUpdateTime": started,
            "message": f"PyTorchJob {name} is created.",
            "reason": "PyTorchJobCreated",
            "status": "True",
            "type": "Created",
        },
        {
            "lastTransitionTime": started,
            "lastUpdateTime": started,
            "message": f"PyTorchJob {name} is running.",
            "reason": "PyTorchJobRunning",
            "status": "False" if state != "Running" else "True",
            "type": "Running",
        },
    ]
    master: dict[str, Any] = {
        "selector": f"training.kubeflow.org/job-name={name},"
        "training.kubeflow.org/operator-name=pytorchjob-controller,training.kubeflow.org/replica-type=master"
    }
    status: dict[str, Any] = {"conditions": conditions, "startTime": started, "replicaStatuses": {"Master": master}}
    if state == "Running":
        master["active"] = 1
    elif state == "Failed":
        master["failed"] = 1
        conditions.append(
            {
                "lastTransitionTime": finished,
                "lastUpdateTime": finished,
                "message": f"PyTorchJob {name} is failed because 1 Master replica(s) failed.",
                "reason": "PyTorchJobFailed",
                "status": "True",
                "type": "Failed",
            }
        )
        status["completionTime"] = finished
    elif state == "Succeeded":
        master["succeeded"] = 1
        conditions.append(
            {
                "lastTransitionTime": finished,
                "lastUpdateTime": finished,
                "message": f"PyTorchJob {name} is successfully completed.",
                "reason": "PyTorchJobSucceeded",
                "status": "True",
                "type": "Succeeded",
            }
        )
        status["completionTime"] = finished
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {
            "name": name,
            "generateName": name.rsplit("-", 1)[0] + "-",
            "namespace": "ml",
            "uid": f"uid-{name}",
            "labels": {
                "app.kubernetes.io/component": stage,
                "app.kubernetes.io/instance": "korean-llm",
                "app.kubernetes.io/managed-by": "Helm",
                "korean-llm/model": "qwen7b",
                RUN_LABEL: run_id,
                "korean-llm/workflow-uid": owner["metadata"]["uid"],
            },
            "ownerReferences": [
                {
                    "apiVersion": "argoproj.io/v1alpha1",
                    "blockOwnerDeletion": True,
                    "kind": "Workflow",
                    "name": owner["metadata"]["name"],
                    "uid": owner["metadata"]["uid"],
                }
            ],
        },
        "spec": {"runPolicy": {"cleanPodPolicy": "Running"}, "pytorchReplicaSpecs": {"Master": {"replicas": 1}}},
        "status": status,
    }


def trainjob(name: str, owner: dict[str, Any], stage: str, complete: bool) -> dict[str, Any]:
    cond = [{"type": "Complete", "status": "True", "reason": "JobsCompleted", "message": "TrainJob is completed"}]
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {
            "name": name,
            "namespace": "ml",
            "uid": f"uid-{name}",
            "labels": {"app.kubernetes.io/component": stage, RUN_LABEL: owner["metadata"]["labels"][RUN_LABEL]},
            "ownerReferences": [
                {
                    "apiVersion": "argoproj.io/v1alpha1",
                    "kind": "Workflow",
                    "name": owner["metadata"]["name"],
                    "uid": owner["metadata"]["uid"],
                }
            ],
        },
        "spec": {"runtimeRef": {"name": "torch-distributed"}},
        "status": {"conditions": cond if complete else []},
    }


def master_pod(job: str, phase: str, exit_code: int | None = None, port: int = 9400) -> dict[str, Any]:
    """The Master pod of a PyTorchJob (`<job>-master-0`, the operator's naming in common/util.go)."""
    state: dict[str, Any] = {"running": {"startedAt": "2026-11-20T09:05:00Z"}}
    if exit_code is not None:
        state = {
            "terminated": {
                "exitCode": exit_code,
                "reason": "Error" if exit_code else "Completed",
                "startedAt": "2026-11-20T09:05:00Z",
                "finishedAt": "2026-11-20T09:40:00Z",
                "containerID": "containerd://4f1c",
            }
        }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{job}-master-0",
            "namespace": "ml",
            "labels": {
                "training.kubeflow.org/job-name": job,
                "training.kubeflow.org/operator-name": "pytorchjob-controller",
                "training.kubeflow.org/replica-index": "0",
                "training.kubeflow.org/replica-type": "master",
                "training.kubeflow.org/job-role": "master",
            },
        },
        "spec": {
            "containers": [
                {
                    "name": "pytorch",
                    "image": "ghcr.io/korean-llm/runtime:0.1.0",
                    "ports": [{"name": "metrics", "containerPort": port, "protocol": "TCP"}],
                }
            ]
        },
        "status": {
            "phase": phase,
            "containerStatuses": [
                {
                    "name": "pytorch",
                    "ready": phase == "Running",
                    "restartCount": 0,
                    "image": "ghcr.io/korean-llm/runtime:0.1.0",
                    "imageID": "",
                    "state": state,
                }
            ],
        },
    }


def argo_pod(workflow: str, task: str, template: str) -> dict[str, Any]:
    """An Argo step pod (`<workflow>-<template>-<hash>`, POD_NAMES=v2) with its node-name annotation."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{workflow}-{template}-{zlib.crc32(task.encode()) % 10**10}",
            "namespace": "ml",
            "labels": {"workflows.argoproj.io/workflow": workflow, "workflows.argoproj.io/completed": "true"},
            "annotations": {
                "workflows.argoproj.io/node-name": f"{workflow}.{task}",
                "workflows.argoproj.io/node-id": node_id(workflow, f"{workflow}.{task}"),
            },
        },
        "spec": {
            "containers": [
                {"name": "wait", "image": "quay.io/argoproj/argoexec:v4.1.2"},
                {"name": "main", "image": "ghcr.io/korean-llm/runtime:0.1.0"},
            ]
        },
        "status": {"phase": "Succeeded"},
    }


def k8s_list(api_version: str, kind: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": f"{kind}List",
        "metadata": {"resourceVersion": "15772300"},
        "items": items,
    }


def status_error(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details or {},
        "code": code,
    }


def forbidden(verb: str, resource: str, group: str, namespace: str, user: str) -> dict[str, Any]:
    res = f"{resource}.{group}" if group else resource
    return status_error(
        403,
        "Forbidden",
        f'{res} is forbidden: User "{user}" cannot {verb} resource "{resource}" in API group "{group}" '
        f'in the namespace "{namespace}"',
        {"group": group, "kind": resource},
    )


def not_found(resource: str, group: str, name: str) -> dict[str, Any]:
    res = f"{resource}.{group}" if group else resource
    return status_error(404, "NotFound", f'{res} "{name}" not found', {"name": name, "group": group, "kind": resource})
