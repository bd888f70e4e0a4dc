"""What Kubeflow Trainer v2.3 makes of a TrainJob on the chart's runtime: the trainer container of node 0.

The local runner (`korean-llm run`) uses it to run a TrainJob-based DAG step exactly as the cluster would
start its first trainer pod: the runtime's `node` container with the TrainJob's `spec.trainer` (command, args,
env, resources) and `spec.runtimePatches` (volumes, volume mounts) applied, plus the torchrun variables the
torch plugin injects. Sources, kubeflow/trainer at tag v2.3.0:

- pkg/runtime/framework/plugins/torch/torch.go:110-204: PET_NNODES = trainer.numNodes (else the runtime's
  mlPolicy.numNodes, else 1), PET_NPROC_PER_NODE = trainer.numProcPerNode, else "auto", which becomes the CPU
  count when the node has no GPU (lines 121-135, getNumCPUPerNode: requests, else limits); PET_NODE_RANK = the
  Job completion index; PET_MASTER_ADDR = <trainjob>-node-0-0.<trainjob>; PET_MASTER_PORT = 29500
  (pkg/constants/constants.go:72). The variables go only into the `node` container of the replicated job
  labelled trainer.kubeflow.org/trainjob-ancestor-step=trainer, and only when the TrainJob has spec.trainer.
- pkg/runtime/framework/plugins/jobset/jobset.go:357-378: trainer.command and image replace the container's,
  env is upserted by name; pkg/runtime/core/trainingruntime.go:251-290: runtimePatches are strategic-merge
  patches of the JobSet spec (lists of volumes, containers and volumeMounts merge by name).

On one machine the master is this host, so PET_MASTER_ADDR is 127.0.0.1 (the cluster value needs the JobSet's
headless Service), and a TrainJob of more than one node cannot run.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from korean_llm.errors import ConfigError

GROUP = "trainer.kubeflow.org"
RUNTIME_KINDS = ("TrainingRuntime", "ClusterTrainingRuntime")
ANCESTOR_LABEL = "trainer.kubeflow.org/trainjob-ancestor-step"
NODE = "node"
MASTER_PORT = 29500
LOCAL_MASTER_ADDR = "127.0.0.1"


@dataclass
class TrainerPod:
    """The first trainer pod of a TrainJob: its `node` container and pod spec after Trainer's merging."""

    name: str
    container: dict[str, Any]
    pod_spec: dict[str, Any]
    pod_metadata: dict[str, Any]
    num_nodes: int
    num_proc_per_node: str


def _where(job: dict[str, Any]) -> str:
    meta = job.get("metadata", {})
    return f"TrainJob {meta.get('name') or meta.get('generateName', '?')}"


def find_runtime(trainjob: dict[str, Any], docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The TrainingRuntime / ClusterTrainingRuntime that `spec.runtimeRef` names, among `docs`."""
    ref = trainjob.get("spec", {}).get("runtimeRef") or {}
    # Defaults of the CRD (trainjob_types.go:165-177): apiGroup trainer.kubeflow.org, kind ClusterTrainingRuntime.
    group = ref.get("apiGroup", GROUP)
    kind = ref.get("kind", "ClusterTrainingRuntime")
    name = ref.get("name")
    if group != GROUP or kind not in RUNTIME_KINDS or not name:
        raise ConfigError(
            f"{_where(trainjob)}: spec.runtimeRef must name a {' or '.join(RUNTIME_KINDS)} of {GROUP}, found {ref}"
        )
    for doc in docs:
        api, meta = doc.get("apiVersion", ""), doc.get("metadata", {})
        if doc.get("kind") == kind and api.startswith(GROUP + "/") and meta.get("name") == name:
            return doc
    raise ConfigError(f"{_where(trainjob)}: runtime {kind}/{name} is not among the rendered objects")


def _merge_by_name(
    base: list[dict[str, Any]], patch: list[dict[str, Any]], replace: bool = False
) -> list[dict[str, Any]]:
    """Entries of `patch` merged into `base` by name (strategic merge of volumes), or replacing them (env:
    apply.UpsertEnvVars)."""
    out = [copy.deepcopy(x) for x in base]
    for item in patch:
        for i, cur in enumerate(out):
            if cur.get("name") == item.get("name"):
                out[i] = copy.deepcopy(item) if replace else {**cur, **copy.deepcopy(item)}
                break
        else:
            out.append(copy.deepcopy(item))
    return out


def _merge_by_key(base: list[dict[str, Any]], patch: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    out = [copy.deepcopy(x) for x in base]
    for item in patch:
        out = [x for x in out if x.get(key) != item.get(key)] + [copy.deepcopy(item)]
    return out


def _trainer_job(runtime: dict[str, Any]) -> dict[str, Any]:
    for rjob in runtime.get("spec", {}).get("template", {}).get("spec", {}).get("replicatedJobs", []) or []:
        if (rjob.get("template", {}).get("metadata", {}).get("labels") or {}).get(ANCESTOR_LABEL) == "trainer":
            return rjob
    name = runtime.get("metadata", {}).get("name")
    raise ConfigError(f"{runtime.get('kind')} {name}: no replicated job labelled {ANCESTOR_LABEL}: trainer")


def _cpu_count(resources: dict[str, Any]) -> int:
    """getNumCPUPerNode (torch.go:228-240): the CPU request, else the limit, as a whole number (Quantity.Value
    rounds up)."""
    raw = (resources.get("requests") or {}).get("cpu") or (resources.get("limits") or {}).get("cpu")
    if raw is None:
        return 0
    text = str(raw)
    value = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    whole = int(value)
    return whole + (1 if value > whole else 0)


def trainer_pod(trainjob: dict[str, Any], docs: list[dict[str, Any]], name: str | None = None) -> TrainerPod:
    """Node 0 of `trainjob` on its runtime from `docs`, as Trainer v2.3 builds it."""
    runtime = find_runtime(trainjob, docs)
    rjob = copy.deepcopy(_trainer_job(runtime))
    pod = rjob["template"]["spec"]["template"]
    spec: dict[str, Any] = pod.setdefault("spec", {})
    job_name = name or trainjob.get("metadata", {}).get("name") or trainjob["metadata"]["generateName"] + "local"

    for patch in trainjob.get("spec", {}).get("runtimePatches", []) or []:
        for rpatch in ((patch.get("trainingRuntimeSpec") or {}).get("template") or {}).get("spec", {}).get(
            "replicatedJobs"
        ) or []:
            if rpatch.get("name") != rjob["name"]:
                continue
            tpatch = ((rpatch.get("template") or {}).get("spec") or {}).get("template") or {}
            for key in ("labels", "annotations"):
                if (tpatch.get("metadata") or {}).get(key):
                    meta = pod.setdefault("metadata", {})
                    meta[key] = {**(meta.get(key) or {}), **tpatch["metadata"][key]}
            ppatch = tpatch.get("spec") or {}
            if "nodeSelector" in ppatch:
                spec["nodeSelector"] = {**(spec.get("nodeSelector") or {}), **ppatch["nodeSelector"]}
            for key in ("tolerations", "affinity"):  # atomic in the API: the patch replaces them
                if key in ppatch:
                    spec[key] = copy.deepcopy(ppatch[key])
            if "volumes" in ppatch:
                spec["volumes"] = _merge_by_name(spec.get("volumes", []) or [], ppatch["volumes"])
            for cpatch in ppatch.get("containers", []) or []:
                for c in spec.get("containers", []):
                    if c["name"] == cpatch["name"] and "volumeMounts" in cpatch:
                        c["volumeMounts"] = _merge_by_key(
                            c.get("volumeMounts", []) or [], cpatch["volumeMounts"], "mountPath"
                        )

    container = next((c for c in spec.get("containers", []) if c.get("name") == NODE), None)
    if container is None:
        raise ConfigError(f"{runtime['kind']} {runtime['metadata']['name']}: the trainer job has no `{NODE}` container")

    trainer = trainjob.get("spec", {}).get("trainer")
    ml_policy = runtime.get("spec", {}).get("mlPolicy") or {}
    num_nodes = int((trainer or {}).get("numNodes") or ml_policy.get("numNodes") or 1)
    resources = (trainer or {}).get("resourcesPerNode") or container.get("resources") or {}
    if (trainer or {}).get("numProcPerNode") is not None:
        nproc = str(int(trainer["numProcPerNode"]))
    elif int((resources.get("limits") or {}).get("nvidia.com/gpu", 0) or 0) > 0:
        nproc = "auto"
    else:
        nproc = str(max(1, _cpu_count(resources)))

    if trainer is not None:
        if trainer.get("image"):
            container["image"] = trainer["image"]
        if trainer.get("command"):
            container["command"] = list(trainer["command"])
        if trainer.get("args"):
            container["args"] = list(trainer["args"])
        if trainer.get("resourcesPerNode"):
            container["resources"] = copy.deepcopy(trainer["resourcesPerNode"])
        env = _merge_by_name(container.get("env", []) or [], trainer.get("env", []) or [], replace=True)
        pet = [
            {"name": "PET_NNODES", "value": str(num_nodes)},
            {"name": "PET_NPROC_PER_NODE", "value": nproc},
            {"name": "PET_NODE_RANK", "value": "0"},  # the Job completion index of node 0
            {"name": "PET_MASTER_ADDR", "value": f"{job_name}-{NODE}-0-0.{job_name}"},
            {"name": "PET_MASTER_PORT", "value": str(MASTER_PORT)},
        ]
        container["env"] = _merge_by_name(env, pet, replace=True)
        # torch.go:202-203: the port of the headless Service the nodes rendezvous through
        ports = container.get("ports", []) or []
        if not any(p.get("containerPort") == MASTER_PORT for p in ports):
            container["ports"] = [*ports, {"containerPort": MASTER_PORT}]
    return TrainerPod(job_name, container, spec, pod.get("metadata") or {}, num_nodes, nproc)


def local_trainer_pod(trainjob: dict[str, Any], docs: list[dict[str, Any]]) -> TrainerPod:
    """`trainer_pod` for this machine: the master address is this host."""
    pod = trainer_pod(trainjob, docs)
    for e in pod.container.get("env", []):
        if e["name"] == "PET_MASTER_ADDR":
            e["value"] = LOCAL_MASTER_ADDR
    return pod


def multi_node_refusal(step: str, env: dict[str, str]) -> str | None:
    """Why a step cannot run on one machine (its TrainJob has several nodes), or None."""
    nodes = env.get("PET_NNODES", "1")
    if nodes == "1":
        return None
    return (
        f"step {step}: its TrainJob asks for {nodes} nodes and the local runner runs one machine; "
        f"set the stage's `nodes: 1` in the values file"
    )
