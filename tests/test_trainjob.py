"""The Kubeflow Trainer v2 backend (`training.backend: trainjob`): rendering with both backends against the v2.3
CRD schemas, the TrainJob resource step's conditions driven by status snapshots shaped like Trainer v2.3's
(tests/chart/status/trainjob.yaml says where each comes from), the runtime's pods under Pod Security
"restricted", the local runner's TrainJob steps, and the two ways of starting one stage outside the DAG that
docs/cluster.md shows (kubectl and the Kubeflow Python SDK).
"""

from __future__ import annotations

import copy
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from korean_llm.cli import build_parser
from korean_llm.config import build_config
from korean_llm.errors import ConfigError
from korean_llm.local.runner import parse_pipelines
from korean_llm.local.trainjob import MASTER_PORT, local_trainer_pod, multi_node_refusal, trainer_pod

from .chart import argo_conditions, pss
from .chart.rendered import NAMESPACE, REPO, helm_template, load_all
from .test_chart import SCENARIOS, V, crd_schemas, validate_crd

BACKENDS = ("trainjob", "pytorchjob")
FIXTURES = yaml.safe_load((Path(__file__).parent / "chart" / "status" / "trainjob.yaml").read_text(encoding="utf-8"))
TRAINING_STAGES = ("cpt", "sft", "rlhf", "evaluate")
DOCS = (REPO / "docs" / "cluster.md").read_text(encoding="utf-8")


@cache
def rendered(scenario: str, backend: str, extra: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    return load_all(helm_template(SCENARIOS[scenario], sets=[f"training.backend={backend}", *extra]))


def training_steps(docs: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(workflow template, step, resource, manifest) of every training stage's resource step."""
    out = []
    for doc in docs:
        if doc["kind"] != "WorkflowTemplate":
            continue
        for tpl in doc["spec"]["templates"]:
            if tpl["name"] in TRAINING_STAGES and "resource" in tpl:
                out.append(
                    (doc["metadata"]["name"], tpl["name"], tpl["resource"], yaml.safe_load(tpl["resource"]["manifest"]))
                )
    return out


def runtimes(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in ("TrainingRuntime", "ClusterTrainingRuntime")]


# --- rendering with both backends ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_values_file_renders_and_validates_with_both_backends(scenario: str, backend: str) -> None:
    docs = rendered(scenario, backend)
    steps = training_steps(docs)
    assert steps, f"{scenario}: no training step"
    kinds = {m["kind"] for _, _, _, m in steps}
    assert kinds == {"TrainJob" if backend == "trainjob" else "PyTorchJob"}, kinds
    for _, _, _, manifest in steps:
        validate_crd(manifest)
    models = {
        d["metadata"]["labels"]["korean-llm/model"]
        for d in docs
        if d["kind"] == "WorkflowTemplate" and "korean-llm/model" in d["metadata"]["labels"]
    }
    rts = runtimes(docs)
    role = next(d for d in docs if d["kind"] == "Role" and d["metadata"]["name"].endswith("-workflow"))
    groups = {g for rule in role["rules"] for g in rule["apiGroups"]}
    if backend == "pytorchjob":
        assert rts == [] and "trainer.kubeflow.org" not in groups and "kubeflow.org" in groups
        return
    assert "trainer.kubeflow.org" in groups and "kubeflow.org" not in groups
    assert sorted(r["metadata"]["name"] for r in rts) == sorted(f"korean-llm-{m}" for m in models)
    for rt in rts:
        validate_crd(rt)
        assert rt["metadata"]["namespace"] == NAMESPACE
    for _, _, _, job in steps:
        ref = job["spec"]["runtimeRef"]
        assert ref["apiGroup"] == "trainer.kubeflow.org" and ref["kind"] == "TrainingRuntime"
        assert any(r["metadata"]["name"] == ref["name"] for r in rts)
        # torch.go:121-135: without numProcPerNode a CPU-only node would start one process per CPU
        assert job["spec"]["trainer"]["numProcPerNode"] >= 1
        # The trainjob CRD's CEL rule: metadata.name is an RFC 1035 label of at most 63 characters, and JobSet's
        # pod names (<name>-node-<job>-<pod>-<5 random>) must stay within 63 too; workflow.uid is a 36-char UUID.
        name = job["metadata"]["name"].replace("{{workflow.uid}}", "0d3c7e52-8f1a-4b6e-9c2d-5a4f3e2b1c0d")
        assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name + "-node-0-0-x7k2p") <= 63


def test_cluster_runtime_is_cluster_scoped_and_referenced_so() -> None:
    docs = rendered("7b", "trainjob", ("training.runtime.kind=ClusterTrainingRuntime",))
    (rt,) = runtimes(docs)
    assert rt["kind"] == "ClusterTrainingRuntime" and "namespace" not in rt["metadata"]
    validate_crd(rt)
    for _, _, _, job in training_steps(docs):
        assert job["spec"]["runtimeRef"] == {
            "apiGroup": "trainer.kubeflow.org",
            "kind": "ClusterTrainingRuntime",
            "name": "korean-llm-qwen7b",
        }


def test_crd_validation_sees_into_the_runtime_and_the_trainjob() -> None:
    docs = rendered("7b", "trainjob")
    rt = copy.deepcopy(runtimes(docs)[0])
    rt["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]["containers"][0][
        "volumeMount"
    ] = []
    with pytest.raises(AssertionError, match="volumeMount"):
        validate_crd(rt)
    job = copy.deepcopy(training_steps(docs)[0][3])
    job["spec"]["trainer"]["numProcsPerNode"] = 2
    with pytest.raises(AssertionError, match="numProcsPerNode"):
        validate_crd(job)


def test_7b_trainjobs_carry_only_what_differs_per_stage() -> None:
    docs = rendered("7b", "trainjob")
    (rt,) = runtimes(docs)
    rjob = rt["spec"]["template"]["spec"]["replicatedJobs"][0]
    assert rjob["name"] == "node" and rjob["template"]["metadata"]["labels"] == {
        "trainer.kubeflow.org/trainjob-ancestor-step": "trainer"
    }
    pod = rjob["template"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["name"] == "node" and "command" not in c and "resources" not in c
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/data"]]["persistentVolumeClaim"]["claimName"] == "korean-llm-data"
    assert volumes[mounts["/output"]]["persistentVolumeClaim"]["claimName"] == "korean-llm-output"
    assert volumes[mounts["/etc/korean-llm"]]["configMap"]["name"] == "korean-llm-qwen7b"
    assert volumes[mounts["/cache/huggingface"]]["persistentVolumeClaim"]["claimName"] == "korean-llm-hf-cache"
    assert volumes[mounts["/dev/shm"]]["emptyDir"] == {"medium": "Memory"}
    assert {e["name"] for e in c["env"]} == {"HF_HOME"}
    assert rt["metadata"]["labels"]["trainer.kubeflow.org/framework"] == "torch"
    # retry semantics of the PyTorchJob path's restartPolicy ExitCode: 1-127 permanent, anything else retried
    rules = rjob["template"]["spec"]["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
    assert rules[1]["action"] == "FailJob" and rules[1]["onExitCodes"] == {
        "containerName": "node",
        "operator": "In",
        "values": list(range(1, 128)),
    }
    assert rjob["template"]["spec"]["backoffLimit"] == 0 and pod["restartPolicy"] == "Never"
    fp = rt["spec"]["template"]["spec"]["failurePolicy"]
    assert fp["maxRestarts"] == 3 and fp["rules"] == [
        {"name": "permanentExitCode", "action": "FailJobSet", "onJobFailureReasons": ["PodFailurePolicy"]}
    ]
    gpus = {}
    for _, stage, res, job in training_steps(docs):
        assert res["action"] == "apply" and res["setOwnerReference"] is True
        assert res["flags"] == ["--server-side"]  # runtimePatches merge by manager, Kueue's entry stays
        tr = job["spec"]["trainer"]
        gpus[stage] = tr["resourcesPerNode"]["limits"]["nvidia.com/gpu"]
        assert tr["resourcesPerNode"]["requests"] == tr["resourcesPerNode"]["limits"]
        assert tr["numNodes"] == 1 and tr["numProcPerNode"] == gpus[stage]
        assert tr["command"][0] == ("torchrun" if gpus[stage] > 1 else "python")
        assert tr["command"][-2:] == ["--set", "run.run_id={{workflow.parameters.run-id}}"]
        env = {e["name"]: e.get("value") for e in tr["env"]}
        assert env == {"STAGE": stage, "MODEL_SIZE": "7b", "WANDB_PROJECT": "korean-llm-7b"}
        (patch,) = job["spec"]["runtimePatches"]
        assert patch["manager"] == "korean-llm.io/chart"
        (rpatch,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
        tpl = rpatch["template"]["spec"]["template"]
        assert rpatch["name"] == "node" and tpl["metadata"]["labels"]["app.kubernetes.io/component"] == stage
        assert tpl["spec"]["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        assert job["spec"]["activeDeadlineSeconds"] > 0
    assert gpus == {"cpt": 4, "sft": 2, "rlhf": 2, "evaluate": 1}


def test_the_same_pod_on_both_backends() -> None:
    """What the trainer pod runs with `trainjob` equals the PyTorchJob Master's container, plus Trainer's PET_*."""
    for scenario in ("7b", "72b+prod", "multi-model"):
        tj = rendered(scenario, "trainjob")
        pj = rendered(scenario, "pytorchjob")
        pj_jobs = {(t, s): m for t, s, _, m in training_steps(pj)}
        for tpl, stage, _, job in training_steps(tj):
            pod = trainer_pod(job, tj, name="x")
            master = pj_jobs[(tpl, stage)]["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
            (pc,) = master["containers"]
            c = pod.container
            assert c["command"] == pc["command"] and c["image"] == pc["image"], (scenario, stage)
            assert c["resources"] == pc["resources"]
            assert c["securityContext"] == pc["securityContext"]
            env = {e["name"]: e for e in c["env"]}
            assert {k: v for k, v in env.items() if not k.startswith("PET_")} == {e["name"]: e for e in pc["env"]}
            mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
            pmounts = {m["mountPath"]: m for m in pc["volumeMounts"]}
            assert {k: v for k, v in mounts.items() if k != "/dev/shm"} == {
                k: v for k, v in pmounts.items() if k != "/dev/shm"
            }
            assert pod.pod_spec["securityContext"] == master["securityContext"]
            for key in ("nodeSelector", "tolerations", "priorityClassName", "schedulerName", "imagePullSecrets"):
                assert pod.pod_spec.get(key) == master.get(key), (scenario, stage, key)
            assert (
                pod.pod_metadata
                == pj_jobs[(tpl, stage)]["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["metadata"]
            )


def test_pet_env_follows_the_torch_plugin() -> None:
    docs = rendered("72b", "trainjob")
    job = next(m for _, s, _, m in training_steps(docs) if s == "cpt")
    pod = trainer_pod(job, docs, name="korean-llm-qwen72b-cpt-ab12c")
    env = {e["name"]: e["value"] for e in pod.container["env"] if e["name"].startswith("PET_")}
    # torch.go:145-166 at v2.3.0
    assert env == {
        "PET_NNODES": "2",
        "PET_NPROC_PER_NODE": "8",
        "PET_NODE_RANK": "0",
        "PET_MASTER_ADDR": "korean-llm-qwen72b-cpt-ab12c-node-0-0.korean-llm-qwen72b-cpt-ab12c",
        "PET_MASTER_PORT": str(MASTER_PORT),
    }
    assert MASTER_PORT == 29500
    local = local_trainer_pod(job, docs)
    local_env = {e["name"]: e["value"] for e in local.container["env"] if "value" in e}
    assert local_env["PET_MASTER_ADDR"] == "127.0.0.1"
    assert multi_node_refusal("cpt", local_env) == (
        "step cpt: its TrainJob asks for 2 nodes and the local runner runs one machine; "
        "set the stage's `nodes: 1` in the values file"
    )
    assert {"containerPort": MASTER_PORT} in pod.container["ports"]
    # numProcPerNode unset: "auto" with GPUs, else the CPU request rounded up (getNumCPUPerNode, torch.go:228-240)
    auto = copy.deepcopy(job)
    del auto["spec"]["trainer"]["numProcPerNode"]
    assert trainer_pod(auto, docs).num_proc_per_node == "auto"
    cpu = copy.deepcopy(auto)
    cpu["spec"]["trainer"]["resourcesPerNode"] = {"requests": {"cpu": "2500m"}, "limits": {"cpu": "4"}}
    assert trainer_pod(cpu, docs).num_proc_per_node == "3"
    # no spec.trainer: the torch plugin injects nothing (torch.go:139-143,169)
    bare = copy.deepcopy(job)
    del bare["spec"]["trainer"]
    assert not any(e["name"].startswith("PET_") for e in trainer_pod(bare, docs).container.get("env", []))


def test_a_trainjob_naming_a_missing_runtime_is_refused_clearly() -> None:
    docs = rendered("7b", "trainjob")
    job = copy.deepcopy(training_steps(docs)[0][3])
    job["spec"]["runtimeRef"]["name"] = "korean-llm-qwen8b"
    missing = r"TrainJob cpt-0-\{\{workflow\.uid\}\}: runtime TrainingRuntime/korean-llm-qwen8b is not among"
    with pytest.raises(ConfigError, match=missing):
        trainer_pod(job, docs)


# --- Pod Security "restricted" on the trainer pods ---------------------------------------------------------------


def with_status_plugin(spec: dict[str, Any], trainjob: str) -> dict[str, Any]:
    """The pod spec as Trainer v2.3 builds it with its alpha TrainJobStatus feature gate on (off by default,
    pkg/features/features.go:48): the plugin adds a projected volume (a service account token and the status
    server's CA ConfigMap) to the pod and mounts it in every trainer container, with three env values
    (pkg/runtime/framework/plugins/trainjobstatus/trainjobstatus.go:76-99,138-173 at v2.3.0)."""
    out = copy.deepcopy(spec)
    out["volumes"] = [
        *out.get("volumes", []),
        {
            "name": "kubeflow-trainer-token",
            "projected": {
                "sources": [
                    {
                        "serviceAccountToken": {
                            # pkg/statusserver/utils.go:27-29, TokenAudience
                            "audience": f"trainer.kubeflow.org/v1alpha1/namespaces/{NAMESPACE}/trainjobs/"
                            f"{trainjob}/status",
                            "expirationSeconds": 3600,
                            "path": "token",
                        }
                    },
                    {"configMap": {"name": f"{trainjob}-tls-config", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                ]
            },
        },
    ]
    for c in out["containers"]:
        c["volumeMounts"] = [
            *c.get("volumeMounts", []),
            {"name": "kubeflow-trainer-token", "mountPath": "/var/run/secrets/kubeflow/trainer", "readOnly": True},
        ]
    return out


def trainer_pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Every pod spec the TrainJob backend can start from the rendered objects: each runtime's replicated-job pod
    template as it stands (a TrainJob without runtimePatches gets it) and, for every TrainJob of the DAG, its
    trainer pod (runtime + TrainJob, as Trainer v2.3 merges them: korean_llm.local.trainjob.trainer_pod), with
    and without what the TrainJobStatus plugin injects. The torch plugin adds only env and a container port
    (torch.go:145-204); the runtime has no initializer jobs, so nothing else is added."""
    specs = []
    for rt in runtimes(docs):
        for rjob in rt["spec"]["template"]["spec"]["replicatedJobs"]:
            specs.append((f"{rt['metadata']['name']}/{rjob['name']}", rjob["template"]["spec"]["template"]["spec"]))
    for tpl, stage, _, job in training_steps(docs):
        spec = trainer_pod(job, docs).pod_spec
        specs.append((f"{tpl}/{stage}", spec))
        specs.append((f"{tpl}/{stage} (TrainJobStatus)", with_status_plugin(spec, job["metadata"]["name"])))
    return specs


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_trainer_pod_is_pss_restricted(scenario: str) -> None:
    docs = rendered(scenario, "trainjob")
    specs = trainer_pod_specs(docs)
    assert len(runtimes(docs)) > 0 and len(specs) > 2 * len(runtimes(docs)), scenario
    problems = [f"{name}: {v}" for name, spec in specs for v in pss.violations(spec)]
    assert not problems, "\n".join(problems)


def test_the_documented_trainjobs_pod_is_pss_restricted() -> None:
    example = yaml.safe_load(docs_block("yaml", "kind: TrainJob"))
    pod = trainer_pod(example, rendered("7b", "trainjob"))
    assert pss.violations(pod.pod_spec) == []
    assert pss.violations(with_status_plugin(pod.pod_spec, example["metadata"]["name"])) == []


def test_the_pss_check_sees_the_runtimes_security_context_in_the_trainer_pod() -> None:
    """The trainer pod's security settings come from the runtime: without them the check refuses the pod."""
    docs = copy.deepcopy(rendered("7b", "trainjob"))
    (rt,) = runtimes(docs)
    pod = rt["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    del pod["containers"][0]["securityContext"]
    pod["securityContext"].pop("runAsNonRoot")
    pod["volumes"].append({"name": "host", "hostPath": {"path": "/var/lib"}})
    job = training_steps(docs)[0][3]
    assert set(pss.violations(trainer_pod(job, docs).pod_spec)) >= {
        "container node: allowPrivilegeEscalation is not false",
        "container node: capabilities.drop lacks ALL",
        "container node: runAsNonRoot not true (container or pod)",
        "pod: volume host of type ['hostPath']",
    }


# --- gang scheduling and Kueue ---------------------------------------------------------------------------------


def test_gang_scheduling_and_kueue() -> None:
    docs = rendered(
        "72b",
        "trainjob",
        ("training.gangScheduling.policy=coscheduling", "scheduling.kueueQueueName=gpu-queue"),
    )
    (rt,) = runtimes(docs)
    validate_crd(rt)
    assert rt["spec"]["podGroupPolicy"] == {"coscheduling": {"scheduleTimeoutSeconds": 300}}
    pod = rt["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    assert pod["schedulerName"] == "scheduler-plugins-scheduler"
    for _, _, _, job in training_steps(docs):
        assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    docs = rendered(
        "72b", "trainjob", ("training.gangScheduling.policy=volcano", "training.gangScheduling.volcanoQueue=llm")
    )
    (rt,) = runtimes(docs)
    validate_crd(rt)
    assert rt["spec"]["podGroupPolicy"] == {"volcano": {}}
    assert rt["spec"]["template"]["metadata"]["annotations"] == {"scheduling.volcano.sh/queue-name": "llm"}
    assert (
        rt["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]["schedulerName"]
        == "volcano"
    )
    with pytest.raises(RuntimeError, match=r"gpuScheduler\.enabled both pick"):
        helm_template(
            [V / "72b.yaml"], sets=["training.gangScheduling.policy=coscheduling", "gpuScheduler.enabled=true"]
        )


# --- status snapshots and the step's conditions ----------------------------------------------------------------


def snapshot(job: dict[str, Any], snap: dict[str, Any]) -> dict[str, Any]:
    """The TrainJob as the API server returns it at that moment (what Argo's executor reads)."""
    obj = copy.deepcopy(job)
    name = job["metadata"]["name"].replace("{{workflow.uid}}", "0d3c7e52-8f1a-4b6e-9c2d-5a4f3e2b1c0d")
    obj["metadata"] = {
        **obj["metadata"],
        "name": name,
        "namespace": NAMESPACE,
        "uid": "8d0f6c1e-1111-2222-3333-444455556666",
    }
    obj["spec"]["suspend"] = snap["suspend"]
    obj["spec"]["managedBy"] = "trainer.kubeflow.org/trainjob-controller"  # CRD default
    if snap["status"] is not None:
        obj["status"] = snap["status"]
    return obj


@pytest.mark.parametrize("snap", FIXTURES["snapshots"], ids=[s["name"] for s in FIXTURES["snapshots"]])
def test_snapshots_are_valid_trainjobs(snap: dict[str, Any]) -> None:
    docs = rendered("7b", "trainjob")
    job = training_steps(docs)[0][3]
    obj = yaml.safe_load(yaml.safe_dump(snapshot(job, snap)).replace("{{workflow.parameters.run-id}}", "r1"))
    validate_crd(obj)
    status_schema = crd_schemas()[("trainer.kubeflow.org", "v1alpha1", "TrainJob")]["properties"]["status"]
    if snap["status"] is not None:
        assert len(snap["status"]) >= status_schema["minProperties"]
        types = [c["type"] for c in snap["status"].get("conditions", [])]
        assert len(types) == len(set(types)) and set(types) <= {"Suspended", "Complete", "Failed"}


def test_the_schema_check_refuses_a_misshapen_snapshot() -> None:
    docs = rendered("7b", "trainjob")
    job = training_steps(docs)[0][3]
    bad = copy.deepcopy(FIXTURES["snapshots"][2])
    bad["status"]["jobsStatus"][0]["running"] = 1
    with pytest.raises(AssertionError, match="running"):
        validate_crd(snapshot(job, bad))


def test_snapshots_cover_every_outcome() -> None:
    assert {s["expect"] for s in FIXTURES["snapshots"]} == {"waiting", "succeeded", "failed"}
    names = {s["name"] for s in FIXTURES["snapshots"]}
    assert {"queued-in-kueue", "admitted-and-running", "restarting-after-exit-137", "complete-without-kueue"} <= names
    assert {"complete-after-kueue-admission", "failed-exit-2-bad-config", "failed-deadline-exceeded"} <= names


@pytest.mark.parametrize("snap", FIXTURES["snapshots"], ids=[s["name"] for s in FIXTURES["snapshots"]])
@pytest.mark.parametrize("scenario", ["7b", "72b+prod", "local", "ci/all-features-values.yaml"])
def test_training_step_outcome_follows_the_trainjob_status(scenario: str, snap: dict[str, Any]) -> None:
    """Queued, running, restarting and preempted TrainJobs wait, failed ones fail, complete ones succeed, with the
    step's conditions evaluated the way Argo's executor evaluates them (tests/chart/argo_conditions.py)."""
    docs = rendered(scenario, "trainjob")
    templates = {
        (wt["metadata"]["name"], t["name"]): t
        for wt in docs
        if wt["kind"] == "WorkflowTemplate"
        for t in wt["spec"]["templates"]
    }
    steps = training_steps(docs)
    assert steps
    for tpl, stage, _, job in steps:
        outcome = argo_conditions.evaluate_step(templates[(tpl, stage)], snapshot(job, snap))
        assert outcome == snap["expect"], (tpl, stage)


def test_conditions_on_the_complete_condition_alone_cannot_be_written() -> None:
    """Why success reads jobsStatus: an AND of per-index requirements on the condition types that succeeds on
    [Complete] and on [Suspended, Complete] also succeeds on [Suspended] (queued or running under Kueue)."""
    by = {s["name"]: s for s in FIXTURES["snapshots"]}
    job = training_steps(rendered("7b", "trainjob"))[0][3]
    queued = snapshot(job, by["queued-in-kueue"])
    for success in (
        "status.conditions.0.type in (Complete, Suspended)",
        "status.conditions.1.type notin (Failed)",
        "status.conditions.0.type",
    ):
        assert argo_conditions.evaluate(snapshot(job, by["complete-without-kueue"]), success) == "succeeded"
        assert argo_conditions.evaluate(snapshot(job, by["complete-after-kueue-admission"]), success) == "succeeded"
        assert argo_conditions.evaluate(queued, success) == "succeeded"  # wrong: the job has not run


# --- the local runner ------------------------------------------------------------------------------------------


def test_local_runner_runs_the_trainjob_dag_like_the_pytorchjob_one() -> None:
    (tj,) = parse_pipelines(rendered("local", "trainjob"))
    (pj,) = parse_pipelines(rendered("local", "pytorchjob"))
    assert [s.name for s in tj.steps] == [s.name for s in pj.steps]
    for a, b in zip(tj.steps, pj.steps, strict=True):
        assert a.command == b.command and a.depends == b.depends, a.name
        pet = {k: v for k, v in a.env.items() if k.startswith("PET_")}
        assert {k: v for k, v in a.env.items() if not k.startswith("PET_")} == b.env
        if a.name in TRAINING_STAGES:
            # what Trainer v2.3 injects into node 0 of a 1-node, 1-process TrainJob, the master being this host
            assert pet == {
                "PET_NNODES": "1",
                "PET_NPROC_PER_NODE": "1",
                "PET_NODE_RANK": "0",
                "PET_MASTER_ADDR": "127.0.0.1",
                "PET_MASTER_PORT": "29500",
            }
            assert {m: v for m, v in a.mounts.items() if m != "/dev/shm"} == {
                m: v for m, v in b.mounts.items() if m != "/dev/shm"
            }
        else:
            assert pet == {} and a.mounts == b.mounts


# --- outside the DAG: kubectl and the Kubeflow SDK -------------------------------------------------------------


def docs_block(lang: str, containing: str) -> str:
    blocks = re.findall(rf"```{lang}\n(.*?)```", DOCS, flags=re.S)
    (block,) = [b for b in blocks if containing in b]
    return block


def test_the_documented_trainjob_runs_sft_on_the_7b_runtime(tmp_path: Path) -> None:
    example = yaml.safe_load(docs_block("yaml", "kind: TrainJob"))
    validate_crd(example)
    docs = rendered("7b", "trainjob")
    pod = trainer_pod(example, docs)
    c = pod.container
    # the stage's own image, config and volumes come from the runtime
    (rt,) = runtimes(docs)
    assert (
        c["image"]
        == rt["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]["containers"][0][
            "image"
        ]
    )
    assert {m["mountPath"] for m in c["volumeMounts"]} >= {"/data", "/output", "/etc/korean-llm", "/dev/shm"}
    assert pod.num_proc_per_node == "auto"  # 2 GPUs: torchrun starts 2 processes
    # the command parses as the runtime's CLI and its overrides build a valid SFT config
    assert c["command"][:3] == ["torchrun", "--module", "korean_llm"]
    args = build_parser().parse_args(c["command"][3:])
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "korean-llm-qwen7b")
    env = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    cfg = build_config(yaml.safe_load(cm["data"]["sft.yaml"]), source="sft.yaml", overrides=args.overrides, env=env)
    assert cfg.stage == "sft" and cfg.run.run_id == "sft-lr-1e-4" and cfg.run.previous_stage is None
    assert [str(s.path) for s in cfg.data.sources] == ["/data/qwen7b/7b-r1/processed/sft"]
    assert cfg.training["learning_rate"] == 0.0001


def test_the_documented_sdk_call_creates_that_trainjob(monkeypatch: pytest.MonkeyPatch) -> None:
    """The docs' Python snippet, run with the real Kubeflow SDK (kubeflow 0.5.0) against a recording API object
    that serves the chart's rendered runtime, creates exactly the documented kubectl TrainJob."""
    from kubernetes import client

    docs = rendered("7b", "trainjob")
    (rt,) = runtimes(docs)
    created: list[dict[str, Any]] = []

    class Done:
        def __init__(self, value: Any) -> None:
            self.value = value

        def get(self, timeout: float | None = None) -> Any:
            if isinstance(self.value, Exception):
                raise self.value
            return self.value

    class CustomObjects:
        def __init__(self, api_client: Any = None) -> None:
            pass

        def get_namespaced_custom_object(self, group, version, namespace, plural, name, async_req=False):
            assert (group, version, namespace, plural) == (
                "trainer.kubeflow.org",
                "v1alpha1",
                NAMESPACE,
                "trainingruntimes",
            )
            return Done(copy.deepcopy(rt) if name == rt["metadata"]["name"] else client.ApiException(status=404))

        def create_namespaced_custom_object(self, group, version, namespace, plural, body, async_req=False):
            expected = ("trainer.kubeflow.org", "v1alpha1", NAMESPACE, "trainjobs")
            assert (group, version, namespace, plural) == expected
            created.append(body)
            return body

    class CoreV1:
        def __init__(self, api_client: Any = None) -> None:
            pass

        def read_namespaced_config_map(self, name: str, namespace: str) -> Any:
            raise client.ApiException(status=404)

    monkeypatch.setattr(client, "CustomObjectsApi", CustomObjects)
    monkeypatch.setattr(client, "CoreV1Api", CoreV1)
    from kubeflow.common.types import KubernetesBackendConfig

    real = KubernetesBackendConfig

    def config_without_kubeconfig(**kw: Any) -> Any:
        return real(**kw, client_configuration=client.Configuration())

    snippet = docs_block("python", "TrainerClient").replace(
        "KubernetesBackendConfig(namespace", "config_without_kubeconfig(namespace"
    )
    exec(compile(snippet, "docs/cluster.md", "exec"), {"config_without_kubeconfig": config_without_kubeconfig})
    (body,) = created
    body = yaml.safe_load(yaml.safe_dump(body))
    example = yaml.safe_load(docs_block("yaml", "kind: TrainJob"))
    assert body["metadata"]["name"] == example["metadata"]["name"]
    assert body["spec"] == example["spec"]
    validate_crd({**body, "metadata": {**body["metadata"], "namespace": NAMESPACE}})


def test_local_runner_refuses_a_multi_node_trainjob_before_starting_it(tmp_path: Path) -> None:
    from .conftest import run_cli

    out = run_cli("run", "-f", str(V / "72b.yaml"), "--runs-dir", str(tmp_path), "--run-id", "mn", "--only", "cpt")
    assert out.returncode == 2, out.stderr[-2000:]
    assert "step cpt: its TrainJob asks for 2 nodes" in " ".join(out.stderr.split())
    assert not (tmp_path / "mn" / "logs").exists()  # no process was started
