"""Cluster backend: Argo Workflows from the chart's WorkflowTemplates, through the official `kubernetes` client.

Thin over the client library: every call is one `CustomObjectsApi` / `CoreV1Api` request, and every
field read is one that Argo Workflows (v4.1.2, `pkg/apis/workflow/v1alpha1/workflow_types.go`), the
training operator (PyTorchJob `kubeflow.org/v1`, v1.9.4) or Trainer v2 (TrainJob
`trainer.kubeflow.org/v1alpha1`, v2.3.0) writes:

- `submit`: GET the WorkflowTemplate (its `spec.arguments.parameters` declare what `-p` may set), then
  POST a Workflow with `spec.workflowTemplateRef` (what `argo submit --from workflowtemplate/NAME` creates).
- `status` / `list` / `wait`: the Workflow's `status.phase`, `status.nodes` (phase, startedAt, finishedAt,
  templateName, displayName, type, message) and, while a training stage runs, its Master pod's
  Prometheus metrics read through the API server's pod proxy (`pods/<pod>:<port>/proxy/metrics`).
- `stop`: a merge patch `{"spec": {"shutdown": "Stop"}}` (Argo's `util.StopWorkflow`), then DELETE of every
  PyTorchJob / TrainJob the Workflow owns: Argo's resource steps create them with an ownerReference to the
  Workflow, which is only collected when the Workflow itself is deleted, so without this a stopped run
  would keep its GPUs.
- `cleanup`: DELETE of finished Workflows older than the limit (the owned jobs go with them); never a
  running one, never one the Helm release owns (`app.kubernetes.io/managed-by: Helm`), and never data on
  the volumes, so releases under `/output/<model>/releases/` stay.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO, TypeVar

from korean_llm.errors import ConfigError, PermissionDenied
from korean_llm.pipeline_manager.common import (
    ClusterUnreachable,
    RunStatus,
    StageStatus,
    check_params,
    check_run_id,
    new_run_id,
    parse_time,
)

log = logging.getLogger("korean_llm")
T = TypeVar("T")

ARGO = ("argoproj.io", "v1alpha1")
TRAINING_JOBS = (  # (group, version, plural, kind): the jobs a pipeline's resource steps create
    ("kubeflow.org", "v1", "pytorchjobs", "PyTorchJob"),
    ("trainer.kubeflow.org", "v1alpha1", "trainjobs", "TrainJob"),
)
RUN_LABEL = "korean-llm/run"
WORKFLOW_UID_LABEL = "korean-llm/workflow-uid"  # the chart's job labels (charts/templates/_steps.tpl)
# Argo's label keys (workflow/common/common.go, v4.1.2).
WORKFLOW_LABEL = "workflows.argoproj.io/workflow"
TEMPLATE_LABEL = "workflows.argoproj.io/workflow-template"
NODE_NAME_ANNOTATION = "workflows.argoproj.io/node-name"
# Training operator v1.9.4 pod labels (pkg/apis/kubeflow.org/v1/common_types.go); replica type lower-cased.
JOB_NAME_LABEL = "training.kubeflow.org/job-name"
REPLICA_TYPE_LABEL = "training.kubeflow.org/replica-type"
# JobSet's pod label (the TrainJob's JobSet has the TrainJob's name).
JOBSET_LABEL = "jobset.sigs.k8s.io/jobset-name"
STAGE_NODE_TYPES = ("Pod", "Retry", "Skipped", "Suspend", "HTTP", "Container")
EXIT_CODE = re.compile(r"\(exit code (\d+)\)")
METRICS_PORT = 9400
TIMEOUT = 30  # seconds per request (connect and read)
# Where Kubernetes mounts a pod's service account (token, ca.crt, namespace).
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class ClusterBackend:
    """The `pipeline` commands against one namespace of a cluster."""

    def __init__(
        self,
        namespace: str | None,
        context: str | None,
        kubeconfig: str | None,
        chart: str | None = None,
        release: str = "korean-llm",
    ) -> None:
        from kubernetes import client

        self.api_client, default_ns, self.where = _connect(context, kubeconfig)
        self.namespace = namespace or default_ns
        self.custom = client.CustomObjectsApi(self.api_client)
        self.core = client.CoreV1Api(self.api_client)
        self.chart = chart
        self.release = release

    # ---- one place that turns client errors into the command's messages and exit codes ------------
    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        if getattr(fn, "__self__", None) is not None:  # an API method: bounded connect and read time
            kwargs.setdefault("_request_timeout", TIMEOUT)
        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            if exc.status in (401, 403):
                raise PermissionDenied(
                    f"{what} in namespace {self.namespace}: {exc.status} {_reason(exc)} "
                    "(the Role rendered by the chart's pipelineManager.rbac grants what korean-llm pipeline needs)"
                ) from None
            raise
        except HTTPError as exc:
            raise ClusterUnreachable(f"{what}: cannot reach the Kubernetes API at {self.where}: {exc}") from None

    def _get(self, plural: str, name: str, what: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            obj: dict[str, Any] = self.call(
                f"get {plural}/{name}", self.custom.get_namespaced_custom_object, *ARGO, self.namespace, plural, name
            )
            return obj
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise ConfigError(f"{what}: {exc.status} {_reason(exc)}") from None

    def _list(self, group: str, version: str, plural: str, **kw: Any) -> list[dict[str, Any]]:
        from kubernetes.client.exceptions import ApiException

        try:
            out = self.call(
                f"list {plural}",
                self.custom.list_namespaced_custom_object,
                group,
                version,
                self.namespace,
                plural,
                **kw,
            )
        except ApiException as exc:
            if exc.status == 404:  # the CRD is not installed (e.g. no Trainer v2): nothing of that kind
                return []
            raise ConfigError(f"list {plural}: {exc.status} {_reason(exc)}") from None
        return list(out.get("items", []))

    # ---- submit -------------------------------------------------------------------------------------
    def submit(
        self,
        values: list[str],
        template: str | None,
        params: dict[str, str],
        run_id: str | None,
        helm_set: list[str],
    ) -> str:
        if template is None:
            template = self._template_from_values(values, helm_set)
        tpl = self._get("workflowtemplates", template, f"WorkflowTemplate {template}")
        if tpl is None:
            installed = [t["metadata"]["name"] for t in self._list(*ARGO, "workflowtemplates")]
            raise ConfigError(
                f"--template {template}: no WorkflowTemplate of that name in namespace {self.namespace} "
                f"(installed: {', '.join(installed) or 'none'}; `helm install` the chart first)"
            )
        declared = [p["name"] for p in tpl.get("spec", {}).get("arguments", {}).get("parameters", [])]
        check_params(params, declared, template)
        if run_id and params.get("run-id") and params["run-id"] != run_id:
            raise ConfigError(f"--run-id {run_id} and -p run-id={params['run-id']} disagree: give one of them")
        run_id = check_run_id(run_id or params.get("run-id") or new_run_id())
        arguments = dict(params)
        if "run-id" in declared:
            arguments["run-id"] = run_id
        name = f"{template}-{run_id}"[:63].rstrip("-")  # the chart's own run Workflow is named the same way
        body = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Workflow",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": {RUN_LABEL: run_id, TEMPLATE_LABEL: template, "app.kubernetes.io/part-of": "korean-llm"},
            },
            "spec": {
                "workflowTemplateRef": {"name": template},
                "arguments": {"parameters": [{"name": k, "value": v} for k, v in arguments.items()]},
            },
        }
        from kubernetes.client.exceptions import ApiException

        try:
            created = self.call(
                f"create workflows/{name}",
                self.custom.create_namespaced_custom_object,
                *ARGO,
                self.namespace,
                "workflows",
                body,
            )
        except ApiException as exc:
            if exc.status == 409:
                raise ConfigError(f"run {run_id}: Workflow {name} already exists; choose another --run-id") from None
            raise ConfigError(f"create Workflow {name}: {exc.status} {_reason(exc)}") from None
        return str(created["metadata"]["name"])

    def _template_from_values(self, values: list[str], helm_set: list[str]) -> str:
        """The entry WorkflowTemplate the chart renders with these values (helm template, here)."""
        from korean_llm.local import runner as local

        if not values:
            raise ConfigError("submit: pass --template NAME (an installed WorkflowTemplate) or -f VALUES")
        chart = Path(self.chart) if self.chart else local.REPO_ROOT / "charts"
        docs = local.render(chart, values, helm_set, release=self.release)
        names = [d["metadata"]["name"] for d in docs if d.get("kind") == "WorkflowTemplate"]
        parents = [
            d["metadata"]["name"]
            for d in docs
            if d.get("kind") == "WorkflowTemplate" and d["spec"].get("entrypoint") == "all-models"
        ]
        if parents:
            return str(parents[0])
        if len(names) == 1:
            return str(names[0])
        raise ConfigError(
            f"{', '.join(values)} render several WorkflowTemplates ({', '.join(names) or 'none'}): pass --template NAME"
        )

    # ---- reading ------------------------------------------------------------------------------------
    def _workflow(self, run: str) -> dict[str, Any]:
        wf = self._get("workflows", run, f"Workflow {run}")
        if wf is not None:
            return wf
        by_run = self._list(*ARGO, "workflows", label_selector=f"{RUN_LABEL}={run}") if _label_value(run) else []
        if len(by_run) == 1:
            return by_run[0]
        if len(by_run) > 1:
            names = ", ".join(w["metadata"]["name"] for w in by_run)
            raise ConfigError(f"run '{run}': several Workflows carry it ({names}); name one")
        raise ConfigError(f"run '{run}': no Workflow of that name or run id in namespace {self.namespace}")

    def runs(self) -> list[RunStatus]:
        wfs = self._list(*ARGO, "workflows", label_selector=RUN_LABEL)
        runs = [self._summary(wf) for wf in wfs]
        return sorted(runs, key=lambda r: r.started_at or 0.0)

    def status(self, run: str) -> RunStatus:
        wf = self._workflow(run)
        status = self._summary(wf)
        self._add_live_metrics(wf, status)
        if status.phase in ("Failed", "Error"):
            status.gate_failed = self._gate_failed(wf, status)
        return status

    def _summary(self, wf: dict[str, Any]) -> RunStatus:
        meta, st = wf["metadata"], wf.get("status", {}) or {}
        phase = st.get("phase") or "Pending"
        shutdown = (wf.get("spec", {}) or {}).get("shutdown")
        if shutdown and phase in ("Failed", "Error"):
            phase = "Stopped"  # Argo fails a workflow stopped with spec.shutdown; say what happened
        ref = (wf.get("spec", {}) or {}).get("workflowTemplateRef", {}) or {}
        run_id = meta.get("labels", {}).get(RUN_LABEL) or _param(wf, "run-id") or meta["name"]
        return RunStatus(
            meta["name"],
            run_id,
            phase,
            template=ref.get("name", ""),
            started_at=parse_time(st.get("startedAt")),
            finished_at=parse_time(st.get("finishedAt")),
            message=st.get("message", "") or "",
            stages=stage_nodes(wf),
        )

    def wait(self, run: str, timeout: float | None) -> RunStatus | None:
        """Watch the Workflow until its phase is final; None when `timeout` seconds pass first."""
        from kubernetes import watch

        wf = self._workflow(run)
        name = wf["metadata"]["name"]
        deadline = None if timeout is None else time.monotonic() + timeout
        while not _finished(wf):
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            seconds = max(1, int(min(left, 300))) if left is not None else 300
            stream = watch.Watch().stream(
                self.custom.list_namespaced_custom_object,
                *ARGO,
                self.namespace,
                "workflows",
                field_selector=f"metadata.name={name}",
                resource_version=wf["metadata"].get("resourceVersion"),
                timeout_seconds=seconds,
                _request_timeout=seconds + TIMEOUT,
            )
            for event in self.call(f"watch workflows/{name}", _drain, stream, name):
                if event["type"] == "DELETED":
                    raise ConfigError(f"run {run}: Workflow {name} was deleted while waiting")
                if event["type"] == "ERROR":  # e.g. 410 Gone: resourceVersion too old; read it again
                    wf = self._workflow(name)
                    break
                wf = event["object"]
                if _finished(wf):
                    break
        return self.status(name)

    # ---- the run's training jobs and pods ----------------------------------------------------------
    def jobs(self, wf: dict[str, Any]) -> list[tuple[tuple[str, str, str, str], dict[str, Any]]]:
        """PyTorchJobs and TrainJobs of this Workflow: listed by the chart's `korean-llm/run` label, kept when
        their ownerReference (Argo's `setOwnerReference`) or `korean-llm/workflow-uid` label names its uid."""
        uid = wf["metadata"].get("uid")
        run_id = self._summary(wf).run_id
        selector = f"{RUN_LABEL}={run_id}" if _label_value(run_id) else None
        found = []
        for kind in TRAINING_JOBS:
            for job in self._list(kind[0], kind[1], kind[2], **({"label_selector": selector} if selector else {})):
                meta = job.get("metadata", {})
                owners = meta.get("ownerReferences", []) or []
                labelled = (meta.get("labels", {}) or {}).get(WORKFLOW_UID_LABEL) == uid
                if labelled or any(o.get("uid") == uid for o in owners):
                    found.append((kind, job))
        return found

    def _job_pods(self, kind: str, job: dict[str, Any]) -> list[dict[str, Any]]:
        name = job["metadata"]["name"]
        selector = (
            f"{JOB_NAME_LABEL}={name},{REPLICA_TYPE_LABEL}=master" if kind == "PyTorchJob" else f"{JOBSET_LABEL}={name}"
        )
        pods = self.call(
            f"list pods -l {selector}", self.core.list_namespaced_pod, self.namespace, label_selector=selector
        )
        return [self.api_client.sanitize_for_serialization(p) for p in pods.items]

    def _stage_of(self, job: dict[str, Any]) -> str:
        return str(job.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/component", ""))

    def _add_live_metrics(self, wf: dict[str, Any], status: RunStatus) -> None:
        """Step, loss, tokens/s and ETA of running training stages from their Master pod's /metrics."""
        running = {s.name.rsplit(".", 1)[-1]: s for s in status.stages if s.phase == "Running"}
        if not running:
            return
        from prometheus_client.parser import text_string_to_metric_families

        for (_g, _v, _p, kind), job in self.jobs(wf):
            stage = running.get(self._stage_of(job))
            if stage is None:
                continue
            for pod in self._job_pods(kind, job):
                if pod.get("status", {}).get("phase") != "Running":
                    continue
                port = _metrics_port(pod)
                try:
                    # Unparsed: the client's "str" deserialisation would return the repr of the bytes.
                    resp = self.call(
                        "get pods/proxy",
                        self.core.connect_get_namespaced_pod_proxy_with_path,
                        f"{pod['metadata']['name']}:{port}",
                        self.namespace,
                        "metrics",
                        _preload_content=False,
                    )
                    text = resp.data.decode("utf-8")
                except Exception as exc:  # the exporter may not be up yet: status still shows the phase
                    log.debug("metrics of %s: %s", pod["metadata"]["name"], exc)
                    continue
                samples = {
                    s.name: s.value
                    for fam in text_string_to_metric_families(text)
                    for s in fam.samples
                    if s.labels.get("rank", "0") == "0"
                }
                stage.step = _int(samples.get("korean_llm_step"))
                stage.total_steps = _int(samples.get("korean_llm_total_steps"))
                stage.loss = samples.get("korean_llm_loss")
                stage.tokens_per_second = samples.get("korean_llm_tokens_per_second")
                stage.eta_seconds = samples.get("korean_llm_eta_seconds")
                break

    def _gate_failed(self, wf: dict[str, Any], status: RunStatus) -> bool:
        """True when a failed stage exited 3 (a quality gate): from the node message for a container step,
        else from the terminated state of its training job's pod (kept: the chart's cleanPodPolicy is Running)."""
        failed = {s.name.rsplit(".", 1)[-1] for s in status.stages if s.phase in ("Failed", "Error")}
        for s in status.stages:
            m = EXIT_CODE.search(s.message)
            if s.phase in ("Failed", "Error") and m and int(m.group(1)) == 3:
                return True
        for (_g, _v, _p, kind), job in self.jobs(wf):
            if self._stage_of(job) not in failed:
                continue
            for pod in self._job_pods(kind, job):
                for cs in pod.get("status", {}).get("containerStatuses", []) or []:
                    if ((cs.get("state") or {}).get("terminated") or {}).get("exitCode") == 3:
                        return True
        return False

    # ---- logs ---------------------------------------------------------------------------------------
    def logs(self, run: str, stage: str | None, follow: bool, out: TextIO) -> None:
        wf = self._workflow(run)
        stages = [s for s in stage_nodes(wf) if s.phase != "Pending"]
        if stage is not None:
            stages = [s for s in stages if stage in (s.name, s.name.rsplit(".", 1)[-1])]
            if not stages:
                names = ", ".join(s.name for s in stage_nodes(wf)) or "none yet"
                raise ConfigError(
                    f"--stage {stage}: Workflow {wf['metadata']['name']} has no such started step ({names})"
                )
        jobs = self.jobs(wf)
        argo_pods = None
        for s in stages:
            short = s.name.rsplit(".", 1)[-1]
            targets: list[tuple[str, str]] = []
            for (_g, _v, _p, kind), job in jobs:
                if self._stage_of(job) == short:
                    targets += [(p["metadata"]["name"], _main_container(p, kind)) for p in self._job_pods(kind, job)]
            if not targets:
                if argo_pods is None:
                    selector = f"{WORKFLOW_LABEL}={wf['metadata']['name']}"
                    listed = self.call(
                        "list pods", self.core.list_namespaced_pod, self.namespace, label_selector=selector
                    )
                    argo_pods = [self.api_client.sanitize_for_serialization(p) for p in listed.items]
                node_name = f"{wf['metadata']['name']}.{s.name}"
                targets = [
                    (p["metadata"]["name"], "main")
                    for p in argo_pods
                    if (p["metadata"].get("annotations") or {}).get(NODE_NAME_ANNOTATION, "").startswith(node_name)
                ]
            for pod, container in targets[-1:]:  # the newest attempt
                self._pod_log(pod, container, s.name if stage is None else None, follow, out)

    def _pod_log(self, pod: str, container: str, prefix: str | None, follow: bool, out: TextIO) -> None:
        resp = self.call(
            f"get pods/{pod}/log",
            self.core.read_namespaced_pod_log,
            pod,
            self.namespace,
            container=container,
            follow=follow,
            _preload_content=False,
            _request_timeout=None if follow else TIMEOUT,
        )
        pending = b""
        for chunk in resp.stream(4096):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                text = line.decode("utf-8", errors="replace")
                out.write(f"{prefix}: {text}\n" if prefix else text + "\n")
            out.flush()
        if pending:
            text = pending.decode("utf-8", errors="replace")
            out.write(f"{prefix}: {text}\n" if prefix else text + "\n")
        resp.release_conn()

    # ---- stop and cleanup ---------------------------------------------------------------------------
    def stop(self, run: str, grace: float | None = None) -> list[str]:
        wf = self._workflow(run)
        name = wf["metadata"]["name"]
        said = []
        if _finished(wf):
            said.append(f"{name} already finished ({wf['status']['phase']})")
        else:
            self.call(
                f"patch workflows/{name}",
                self.custom.patch_namespaced_custom_object,
                *ARGO,
                self.namespace,
                "workflows",
                name,
                {"spec": {"shutdown": "Stop"}},
            )
            said.append(f"{name}: spec.shutdown=Stop (running steps are stopped, the exit handler runs)")
        for (group, version, plural, kind), job in self.jobs(wf):
            if _job_finished(job):
                continue
            job_name = job["metadata"]["name"]
            self.call(
                f"delete {plural}/{job_name}",
                self.custom.delete_namespaced_custom_object,
                group,
                version,
                self.namespace,
                plural,
                job_name,
                propagation_policy="Background",
            )
            said.append(f"deleted {kind} {job_name} (its pods get SIGTERM: checkpoint, then the GPUs are free)")
        return said

    def cleanup(self, older_seconds: float, dry_run: bool) -> list[tuple[str, str, str]]:
        now = time.time()
        report = []
        for wf in self._list(*ARGO, "workflows", label_selector=RUN_LABEL):
            run = self._summary(wf)
            labels = wf["metadata"].get("labels", {}) or {}
            if not _finished(wf):
                if now - (run.started_at or now) >= older_seconds:
                    report.append((run.name, "kept", run.phase.lower()))
                continue
            ended = run.finished_at or parse_time(wf["metadata"].get("creationTimestamp")) or now
            if now - ended < older_seconds:
                continue
            if labels.get("app.kubernetes.io/managed-by") == "Helm":
                instance = labels.get("app.kubernetes.io/instance", "?")
                report.append((run.name, "kept", f"part of the Helm release {instance}"))
                continue
            age = f"{run.phase}, ended {_hours(now - ended)} ago"
            if dry_run:
                report.append((run.name, "would delete", age))
                continue
            self.call(
                f"delete workflows/{run.name}",
                self.custom.delete_namespaced_custom_object,
                *ARGO,
                self.namespace,
                "workflows",
                run.name,
                propagation_policy="Background",
            )
            report.append((run.name, "deleted", age))
        return report


def stage_nodes(wf: dict[str, Any]) -> list[StageStatus]:
    """The Workflow's steps from `status.nodes`, plus DAG tasks not started yet (`Pending`).

    Node fields as Argo writes them (NodeStatus in workflow_types.go): `name` is `<workflow>.<task>`
    (`<workflow>.<model>.<task>` under the all-models template, `<workflow>.<task>(1)` for a retry's
    attempts, whose parent is a `Retry` node), `type`, `phase`, `startedAt`, `finishedAt`, `message`.
    """
    name = wf["metadata"]["name"]
    nodes = (wf.get("status", {}) or {}).get("nodes", {}) or {}
    attempts = {c for n in nodes.values() if n.get("type") == "Retry" for c in n.get("children", []) or []}
    out = []
    for node_id, node in nodes.items():
        if node.get("type") not in STAGE_NODE_TYPES or node_id in attempts:
            continue
        label = node.get("name", "")
        label = label[len(name) + 1 :] if label.startswith(name + ".") else node.get("displayName", label)
        out.append(
            StageStatus(
                label,
                node.get("phase", "Pending"),
                parse_time(node.get("startedAt")),
                parse_time(node.get("finishedAt")),
                message=node.get("message", "") or "",
            )
        )
    out.sort(key=lambda s: (s.started_at or float("inf"), s.name))
    seen = {s.name for s in out}
    if not _finished(wf):
        for task in _dag_tasks(wf):
            if task not in seen:
                out.append(StageStatus(task, "Pending"))
    return out


def _dag_tasks(wf: dict[str, Any]) -> list[str]:
    """Task names of the entrypoint DAG, from the template copy Argo stores in the Workflow's status."""
    spec = (wf.get("status", {}) or {}).get("storedWorkflowTemplateSpec") or {}
    templates = {t.get("name"): t for t in spec.get("templates", []) or []}
    entry = templates.get(spec.get("entrypoint"), {})
    return [t["name"] for t in (entry.get("dag", {}) or {}).get("tasks", []) or [] if "templateRef" not in t]


def _finished(wf: dict[str, Any]) -> bool:
    return (wf.get("status", {}) or {}).get("phase") in ("Succeeded", "Failed", "Error")


def _job_finished(job: dict[str, Any]) -> bool:
    """A PyTorchJob / TrainJob with a true Succeeded, Failed or Complete condition holds no GPU any more."""
    conditions = (job.get("status", {}) or {}).get("conditions", []) or []
    return any(c.get("type") in ("Succeeded", "Failed", "Complete") and c.get("status") == "True" for c in conditions)


def _param(wf: dict[str, Any], key: str) -> str | None:
    for p in ((wf.get("spec", {}) or {}).get("arguments", {}) or {}).get("parameters", []) or []:
        if p.get("name") == key:
            return str(p.get("value"))
    return None


def _metrics_port(pod: dict[str, Any]) -> int:
    for c in pod.get("spec", {}).get("containers", []) or []:
        for port in c.get("ports", []) or []:
            if port.get("name") == "metrics":
                return int(port["containerPort"])
    return METRICS_PORT


def _main_container(pod: dict[str, Any], kind: str) -> str:
    names = [c["name"] for c in pod.get("spec", {}).get("containers", []) or []]
    wanted = "pytorch" if kind == "PyTorchJob" else "node"  # operator v1 / Trainer v2 runtime container names
    return wanted if wanted in names or not names else names[0]


def _drain(stream: Iterator[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """Collect events up to the first final phase (so errors surface inside `call`)."""
    events = []
    for event in stream:
        events.append(event)
        if event.get("type") in ("DELETED", "ERROR") or _finished(event.get("object", {})):
            break
    return events


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def _label_value(text: str) -> bool:
    return bool(re.match(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$", text)) and len(text) <= 63


def _reason(exc: Any) -> str:
    try:
        return str(json.loads(exc.body).get("message") or exc.reason)
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason)


def _hours(seconds: float) -> str:
    from korean_llm.pipeline_manager.common import fmt_seconds

    return fmt_seconds(seconds)


def _connect(context: str | None, kubeconfig: str | None) -> tuple[Any, str, str]:
    """An ApiClient from the kubeconfig (file, context) or, inside a pod, the service account; its namespace.

    The kubeconfig is `--kubeconfig`, else `$KUBECONFIG` read now (the client reads it once, when
    `kubernetes.config.kube_config` is imported: `KUBE_CONFIG_DEFAULT_LOCATION`, kubernetes 35.0.0), else
    `~/.kube/config`. Without a usable one (and no --kubeconfig / --context), the pod's service account:
    `KUBERNETES_SERVICE_HOST` / `KUBERNETES_SERVICE_PORT` and the token, ca.crt and namespace files under
    `SERVICE_ACCOUNT_DIR`, read by the client's `InClusterConfigLoader` (kubernetes 35.0.0,
    `kubernetes/config/incluster_config.py`: what `load_incluster_config()` does with those fixed paths).
    """
    import os

    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException
    from kubernetes.config.incluster_config import InClusterConfigLoader

    explicit = kubeconfig
    kubeconfig = kubeconfig or os.environ.get("KUBECONFIG") or None
    cfg = client.Configuration()
    try:
        config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg)
        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
        if context:
            active = next((c for c in contexts if c["name"] == context), active)
        namespace = (active or {}).get("context", {}).get("namespace") or "default"
    except (ConfigException, OSError) as exc:
        if explicit or context:
            raise ClusterUnreachable(
                f"kubeconfig {kubeconfig or '(default)'}, context {context or '(current)'}: {exc}"
            ) from None
        try:
            cfg = client.Configuration()
            InClusterConfigLoader(
                token_filename=str(SERVICE_ACCOUNT_DIR / "token"), cert_filename=str(SERVICE_ACCOUNT_DIR / "ca.crt")
            ).load_and_set(cfg)
        except ConfigException as exc2:
            raise ClusterUnreachable(
                f"no cluster configured: no usable kubeconfig {kubeconfig or '(default)'} ({exc}) and not inside a "
                f"pod ({exc2}); pass --kubeconfig / --context or set KUBECONFIG"
            ) from None
        ns_file = SERVICE_ACCOUNT_DIR / "namespace"
        namespace = ns_file.read_text().strip() if ns_file.is_file() else "default"
    cfg.retries = 1  # an unreachable server fails in seconds, not after urllib3's default retries
    return client.ApiClient(cfg), namespace, str(cfg.host)
