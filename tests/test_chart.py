"""The chart, rendered with `helm template` for every shipped values file and CI scenario, and checked.

Core kinds are validated with kubernetes-validate (strict), Argo/Kubeflow/Prometheus kinds against the upstream
CRD schemas vendored in tests/chart/crds (source, tag and sha256 in crds.lock; made strict: unknown fields are
errors). A missing or altered schema file fails the suite.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import promql_parser
import pytest
import yaml

from korean_llm.config import build_config
from korean_llm.local.runner import Step, parse_pipelines

from .chart import argo_conditions, pss
from .chart.rendered import (
    CHART,
    NAMESPACE,
    REPO,
    embedded_jobs,
    helm_binary,
    helm_template,
    load_all,
    pods,
)

K8S_VERSION = os.environ.get("KOREAN_LLM_K8S_VERSION", "1.33.0")
CRD_DIR = Path(__file__).parent / "chart" / "crds"
# Kinds the CRD folder does not carry (AlertmanagerConfig is v1alpha1 and was not copied): checked by hand below.
NO_UPSTREAM_SCHEMA = {("monitoring.coreos.com", "AlertmanagerConfig")}
V = REPO / "values"
CI = CHART / "ci"
SCENARIOS: dict[str, list[Path]] = {
    "default": [],
    "7b": [V / "7b.yaml"],
    "72b": [V / "72b.yaml"],
    "multi-model": [V / "multi-model.yaml"],
    "local": [V / "local.yaml"],
    "local-vocab": [V / "local-vocab.yaml"],
    "local-csv": [V / "local-csv.yaml"],
    "dev": [V / "dev.yaml"],
    "prod": [V / "prod.yaml"],
    "7b+dev": [V / "7b.yaml", V / "dev.yaml"],
    "7b+prod": [V / "7b.yaml", V / "prod.yaml"],
    "72b+dev": [V / "72b.yaml", V / "dev.yaml"],
    "72b+prod": [V / "72b.yaml", V / "prod.yaml"],
    "multi-model+dev": [V / "multi-model.yaml", V / "dev.yaml"],
    "multi-model+prod": [V / "multi-model.yaml", V / "prod.yaml"],
    **{f"ci/{p.name}": [p] for p in sorted(CI.glob("*-values.yaml"))},
}
INVALID = sorted((Path(__file__).parent / "chart" / "invalid").glob("*.yaml"))
CORE_GROUPS = {"", "apps", "batch", "policy", "autoscaling", "networking.k8s.io", "rbac.authorization.k8s.io"}


@cache
def rendered(name: str, backend: str = "") -> tuple[str, list[dict[str, Any]]]:
    """The scenario rendered with the chart's default training backend (trainjob), or `backend`."""
    text = helm_template(SCENARIOS[name], sets=[f"training.backend={backend}"] if backend else [])
    return text, load_all(text)


# The tests about PyTorchJob objects render `training.backend: pytorchjob`; tests/test_trainjob.py covers the
# TrainJob backend and both backends for every values file.
PJ = "pytorchjob"


def docs_of(name: str, backend: str = "") -> list[dict[str, Any]]:
    return rendered(name, backend)[1]


def kind(docs: list[dict[str, Any]], k: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == k]


def by_name(docs: list[dict[str, Any]], k: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == k and d["metadata"]["name"] == name)


def group_of(doc: dict[str, Any]) -> str:
    api = doc["apiVersion"]
    return api.split("/")[0] if "/" in api else ""


def _strict(schema: Any) -> Any:
    """The CRD schema with additionalProperties: false wherever it lists properties and allows nothing else."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def crd_lock() -> list[tuple[str, str]]:
    """(file, sha256) of every vendored CRD, from tests/chart/crds/crds.lock."""
    rows = []
    for line in (CRD_DIR / "crds.lock").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            cols = line.split("\t")
            rows.append((cols[0], cols[5]))
    return rows


def check_vendored_crds() -> None:
    problems = []
    for name, sha in crd_lock():
        path = CRD_DIR / name
        if not path.is_file():
            problems.append(f"{path}: missing (listed in crds.lock; run tests/chart/crds/refresh.sh)")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != sha:
            problems.append(f"{path}: sha256 differs from crds.lock (run tests/chart/crds/refresh.sh)")
    assert not problems, "\n".join(problems)


@cache
def crd_schemas() -> dict[tuple[str, str, str], dict[str, Any]]:
    check_vendored_crds()
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    out = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
        if not isinstance(crd, dict) or crd.get("kind") != "CustomResourceDefinition":
            continue
        for version in crd["spec"]["versions"]:
            schema = _strict(version["schema"]["openAPIV3Schema"])
            out[(crd["spec"]["group"], version["name"], crd["spec"]["names"]["kind"])] = schema
    return out


def validate_crd(doc: dict[str, Any]) -> None:
    group, version = doc["apiVersion"].split("/")
    schema = crd_schemas().get((group, version, doc["kind"]))
    assert schema is not None, f"no CRD schema for {doc['apiVersion']} {doc['kind']} in {CRD_DIR}"
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(
        f"{doc['kind']}/{doc['metadata'].get('name')}: {list(e.path)}: {e.message}" for e in errors
    )


def validate_core(doc: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        raise AssertionError(
            f"{doc['kind']}/{doc['metadata'].get('name')}: {exc.message} at {list(exc.path)}"
        ) from None


# --- rendering -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_scenario_renders_and_lints(scenario: str) -> None:
    docs = docs_of(scenario)
    assert kind(docs, "WorkflowTemplate") and kind(docs, "ConfigMap")
    cmd = [helm_binary(), "lint", "--strict", str(CHART), "--namespace", NAMESPACE]
    for v in SCENARIOS[scenario]:
        cmd += ["-f", str(v)]
    lint = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.mark.parametrize("scenario", ["default", "multi-model+prod", "ci/all-features-values.yaml"])
def test_rendering_is_deterministic(scenario: str) -> None:
    assert helm_template(SCENARIOS[scenario]) == helm_template(SCENARIOS[scenario])


def test_no_generate_name_on_top_level_objects() -> None:
    for scenario in SCENARIOS:
        for doc in docs_of(scenario):
            assert "generateName" not in doc["metadata"], f"{scenario}: {doc['kind']} uses generateName"
            if doc["kind"] not in ("PersistentVolume", "ClusterRoleBinding"):
                assert doc["metadata"]["namespace"] == NAMESPACE or doc["kind"] == "RoleBinding"


# --- validation ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_object_validates(scenario: str) -> None:
    docs = docs_of(scenario)
    for doc in docs:
        if group_of(doc) in CORE_GROUPS:
            validate_core(doc)
        elif (group_of(doc), doc["kind"]) not in NO_UPSTREAM_SCHEMA:
            validate_crd(doc)
    for _, _, manifest in embedded_jobs(docs):
        if manifest["kind"] in ("PyTorchJob", "TrainJob"):
            validate_crd(manifest)
        else:
            assert manifest["kind"] == "Deployment"  # the rollout patch: a partial object, checked in its own test
    for pod in pods(docs):
        validate_core(pod)


def test_alertmanager_config_routes_korean_llm_alerts_to_slack_from_a_secret() -> None:
    amc = kind(docs_of("ci/all-features-values.yaml"), "AlertmanagerConfig")[0]
    assert amc["spec"]["route"]["matchers"] == [{"name": "alertname", "matchType": "=~", "value": "KoreanLLM.*"}]
    assert amc["spec"]["receivers"][0]["slackConfigs"][0]["apiURL"] == {"name": "slack", "key": "webhook-url"}


def test_vendored_crds_match_their_lock() -> None:
    check_vendored_crds()
    kinds = {key[2] for key in crd_schemas()}
    assert {"Workflow", "WorkflowTemplate", "CronWorkflow", "PyTorchJob", "TrainJob", "PrometheusRule"} <= kinds
    out = subprocess.run(
        [str(CRD_DIR / "refresh.sh"), "--check"], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr


def test_crd_validation_catches_a_misspelt_field() -> None:
    job = next(m for _, _, m in embedded_jobs(docs_of("7b", PJ)) if m["kind"] == "PyTorchJob")
    job["spec"]["pytorchReplicaSpecs"]["Master"]["restartPolicyy"] = "ExitCode"
    with pytest.raises(AssertionError, match="restartPolicyy"):
        validate_crd(job)


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_values_are_rejected_with_a_clear_message(path: Path) -> None:
    expected = path.read_text(encoding="utf-8").splitlines()[0].removeprefix("# expect: ")
    with pytest.raises(RuntimeError) as err:
        helm_template([path])
    assert expected in str(err.value)


def test_at_least_five_invalid_values_files() -> None:
    assert len(INVALID) >= 5


VALUES_FILES = [CHART / "values.yaml", *sorted(CHART.glob("charts/*/values.yaml"))]


@pytest.mark.parametrize("path", VALUES_FILES, ids=[str(p.relative_to(CHART)) for p in VALUES_FILES])
def test_every_value_has_a_helm_docs_comment(path: Path) -> None:
    """Each leaf key carries a `# --` comment, itself or through a documented parent (helm-docs lists it)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    documented: list[tuple[int, bool]] = []  # (indent, documented) of the enclosing keys
    undocumented = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith("- "):
            continue
        indent = len(line) - len(line.lstrip())
        key, sep, rest = stripped.partition(":")
        if not sep:
            continue
        while documented and documented[-1][0] >= indent:
            documented.pop()
        comments = []
        j = i - 1
        while j >= 0 and lines[j].strip().startswith("#"):
            comments.append(lines[j].strip())
            j -= 1
        own = any(c.startswith("# --") for c in comments)
        inherited = any(d for _, d in documented)
        leaf = rest.split("#")[0].strip() != ""
        if leaf and not (own or inherited):
            undocumented.append(f"{path.relative_to(REPO)}:{i + 1}: {key}")
        documented.append((indent, own or inherited))
    assert not undocumented, "\n".join(undocumented)


# --- the pipeline ----------------------------------------------------------------------------------------------


def dag(wt: dict[str, Any]) -> dict[str, list[str]]:
    templates = {t["name"]: t for t in wt["spec"]["templates"]}
    return {t["name"]: t.get("dependencies", []) for t in templates[wt["spec"]["entrypoint"]]["dag"]["tasks"]}


def job_of(docs: list[dict[str, Any]], template: str, stage: str) -> dict[str, Any]:
    return next(m for t, s, m in embedded_jobs(docs) if t == template and s == stage)


def test_7b_dag_order_gpus_mounts_and_env() -> None:
    docs = docs_of("7b", PJ)
    wt = by_name(docs, "WorkflowTemplate", "korean-llm-qwen7b")
    assert dag(wt) == {
        "preprocess": [],
        "cpt": ["preprocess"],
        "sft": ["cpt"],
        "rlhf": ["sft"],
        "evaluate": ["rlhf"],
        "deploy": ["evaluate"],
        "rollout": ["deploy"],
    }
    gpus = {}
    for stage in ("cpt", "sft", "rlhf", "evaluate"):
        job = job_of(docs, "korean-llm-qwen7b", stage)
        master = job["spec"]["pytorchReplicaSpecs"]["Master"]
        assert master["replicas"] == 1 and master["restartPolicy"] == "ExitCode"
        assert "Worker" not in job["spec"]["pytorchReplicaSpecs"]
        (c,) = master["template"]["spec"]["containers"]
        assert c["name"] == "pytorch"
        assert c["resources"]["requests"] == c["resources"]["limits"]
        gpus[stage] = c["resources"]["limits"]["nvidia.com/gpu"]
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        volumes = {v["name"]: v for v in master["template"]["spec"]["volumes"]}
        assert volumes[mounts["/data"]]["persistentVolumeClaim"]["claimName"] == "korean-llm-data"
        assert volumes[mounts["/output"]]["persistentVolumeClaim"]["claimName"] == "korean-llm-output"
        assert volumes[mounts["/etc/korean-llm"]]["configMap"]["name"] == "korean-llm-qwen7b"
        assert volumes[mounts["/cache/huggingface"]]["persistentVolumeClaim"]["claimName"] == "korean-llm-hf-cache"
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["STAGE"] == stage and env["MODEL_SIZE"] == "7b" and env["WANDB_PROJECT"] == "korean-llm-7b"
        assert env["HF_HOME"] == "/cache/huggingface"
        assert job["spec"]["runPolicy"]["activeDeadlineSeconds"] > 0
        distributed = gpus[stage] > 1
        assert c["command"][0] == ("torchrun" if distributed else "python")
        assert c["command"][-2:] == ["--set", "run.run_id={{workflow.parameters.run-id}}"]
        assert (
            (job["spec"].get("nprocPerNode") == str(gpus[stage])) if distributed else "nprocPerNode" not in job["spec"]
        )
    assert gpus == {"cpt": 4, "sft": 2, "rlhf": 2, "evaluate": 1}
    steps = {t["name"]: t for t in wt["spec"]["templates"]}
    for stage in ("cpt", "sft", "rlhf", "evaluate"):
        res = steps[stage]["resource"]
        assert res["action"] == "apply" and res["setOwnerReference"] is True
        assert res["successCondition"] == "status.replicaStatuses.Master.succeeded > 0"
        argo_conditions.parse_selector(res["failureCondition"])  # what Argo's executor does first
    assert steps["preprocess"]["container"]["command"][:4] == ["python", "-m", "korean_llm", "preprocess"]
    assert "nvidia.com/gpu" not in steps["preprocess"]["container"]["resources"]["limits"]
    deploy = steps["deploy"]
    assert {"name": "KOREAN_LLM_RESULT_DIR", "value": "/tmp/korean-llm"} in deploy["container"]["env"]
    assert deploy["outputs"]["parameters"] == [{"name": "version", "valueFrom": {"path": "/tmp/korean-llm/version"}}]
    assert [[x["template"] for x in group] for group in steps["rollout"]["steps"]] == [
        ["rollout-patch"],
        ["rollout-status"],
    ]
    rollout = steps["rollout-patch"]["resource"]
    patch = yaml.safe_load(rollout["manifest"])
    assert rollout["action"] == "patch" and rollout["mergeStrategy"] == "strategic"
    assert patch["metadata"]["name"] == "korean-llm-inference"
    template = patch["spec"]["template"]
    assert template["metadata"]["annotations"] == {"korean-llm/model-version": "{{inputs.parameters.version}}"}
    assert template["spec"]["containers"] == [
        {
            "name": "server",
            "env": [{"name": "MODEL_PATH", "value": "/output/qwen7b/releases/{{inputs.parameters.version}}"}],
        }
    ]
    status = steps["rollout-status"]["container"]["command"]
    assert status[:4] == ["kubectl", "rollout", "status", "deployment/korean-llm-inference"]
    assert wt["spec"]["arguments"]["parameters"] == [{"name": "run-id", "value": "7b-r1"}]


PYTORCHJOB_SNAPSHOTS = list(
    yaml.safe_load_all((Path(__file__).parent / "chart" / "status" / "pytorchjob.yaml").read_text(encoding="utf-8"))
)


JOB_KIND = {PJ: "PyTorchJob", "trainjob": "TrainJob"}


def training_steps(docs: list[dict[str, Any]], job_kind: str = "PyTorchJob") -> list[dict[str, Any]]:
    """The resource steps that create a `job_kind`; fails when there is none, so no test passes on nothing."""
    steps = [
        t
        for wt in kind(docs, "WorkflowTemplate")
        for t in wt["spec"]["templates"]
        if "resource" in t and (yaml.safe_load(t["resource"].get("manifest", "")) or {}).get("kind") == job_kind
    ]
    assert len(steps) > 0, f"no resource step creates a {job_kind}: nothing to check (render that backend)"
    return steps


@pytest.mark.parametrize("snapshot", PYTORCHJOB_SNAPSHOTS, ids=[s["name"] for s in PYTORCHJOB_SNAPSHOTS])
@pytest.mark.parametrize("scenario", ["7b", "72b", "local", "ci/all-features-values.yaml"])
def test_training_step_outcome_follows_the_pytorchjob_status(scenario: str, snapshot: dict[str, Any]) -> None:
    """Queued, running and restarting jobs wait; failed jobs fail; succeeded jobs succeed - evaluated the way
    Argo's executor evaluates the step's conditions (tests/chart/argo_conditions.py)."""
    steps = training_steps(docs_of(scenario, PJ))
    assert steps
    for step in steps:
        assert argo_conditions.evaluate_step(step, snapshot["object"]) == snapshot["expect"], step["name"]


def test_snapshots_cover_every_state_of_a_training_job() -> None:
    expected = {s["expect"] for s in PYTORCHJOB_SNAPSHOTS}
    assert expected == {"waiting", "failed", "succeeded"}
    names = {s["name"] for s in PYTORCHJOB_SNAPSHOTS}
    assert {"queued-in-kueue", "running", "restarting-after-exit-137", "failed-exit-1", "succeeded"} <= names


def test_the_previous_conditions_would_fail_a_running_job() -> None:
    """The conditions the chart used to ship, read as Argo reads them: failure on the first poll of a queued or
    running job, and failure (not success) of a job that succeeded, since failure is checked first."""
    old = (
        "status.replicaStatuses.Master.succeeded > 0",
        "status.completionTime, !status.replicaStatuses.Master.succeeded",
    )
    by = {s["name"]: s["object"] for s in PYTORCHJOB_SNAPSHOTS}
    assert argo_conditions.evaluate(by["queued-in-kueue"], *old) == "failed"
    assert argo_conditions.evaluate(by["running"], *old) == "failed"
    assert argo_conditions.evaluate(by["succeeded"], *old) == "failed"


def test_72b_is_multi_node_with_eight_gpus_per_pod() -> None:
    docs = docs_of("72b", PJ)
    job = job_of(docs, "korean-llm-qwen72b", "cpt")
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert replicas["Master"]["replicas"] == 1 and replicas["Worker"]["replicas"] == 1
    assert job["spec"]["nprocPerNode"] == "8"
    for rs in replicas.values():
        (c,) = rs["template"]["spec"]["containers"]
        assert c["command"][:4] == ["torchrun", "--module", "korean_llm", "cpt"]
        assert c["resources"]["limits"]["nvidia.com/gpu"] == 8
        assert rs["template"]["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}


def test_multi_model_renders_one_dag_per_model_and_a_parallel_parent() -> None:
    docs = docs_of("multi-model")
    models = {
        d["metadata"]["labels"]["korean-llm/model"]
        for d in kind(docs, "WorkflowTemplate")
        if "korean-llm/model" in d["metadata"]["labels"]
    }
    assert models == {"qwen7b", "qwen72b"}
    parent = by_name(docs, "WorkflowTemplate", "korean-llm-all")
    assert dag(parent) == {"qwen7b": [], "qwen72b": []}
    tasks = parent["spec"]["templates"][0]["dag"]["tasks"]
    assert [t["templateRef"] for t in tasks] == [
        {"name": "korean-llm-qwen7b", "template": "pipeline"},
        {"name": "korean-llm-qwen72b", "template": "pipeline"},
    ]
    # Only the served model's pipeline rolls the inference Deployment out.
    assert "rollout" in dag(by_name(docs, "WorkflowTemplate", "korean-llm-qwen7b"))
    assert "rollout" not in dag(by_name(docs, "WorkflowTemplate", "korean-llm-qwen72b"))


def test_disabled_stages_rewire_dependencies_and_previous_stage() -> None:
    docs = load_all(helm_template([V / "7b.yaml"], sets=["stageDefaults.sft.enabled=false"]))
    wt = by_name(docs, "WorkflowTemplate", "korean-llm-qwen7b")
    assert dag(wt)["rlhf"] == ["cpt"]
    cm = by_name(docs, "ConfigMap", "korean-llm-qwen7b")
    assert "sft.yaml" not in cm["data"]
    assert yaml.safe_load(cm["data"]["rlhf.yaml"])["run"]["previous_stage"] == "cpt"
    assert "previous_stage" not in yaml.safe_load(cm["data"]["cpt.yaml"])["run"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_rendered_stage_config_is_accepted_by_the_runtime(scenario: str) -> None:
    for cm in kind(docs_of(scenario), "ConfigMap"):
        if cm["metadata"]["labels"].get("korean-llm/config") != "stage-configs":
            continue
        model = cm["metadata"]["labels"]["korean-llm/model"]
        for key, text in cm["data"].items():
            cfg = build_config(yaml.safe_load(text), source=f"{scenario}:{key}", env={})
            assert cfg.stage == key.removesuffix(".yaml")
            assert (cfg.run.model_name, str(cfg.run.data_root), str(cfg.run.output_root)) == (model, "/data", "/output")


def test_stage_config_precedence() -> None:
    docs = load_all(
        helm_template(
            [V / "local.yaml"],
            sets=[
                "runtimeDefaults.checkpoint.keep_after_success=true",
                "stageDefaults.sft.config.training.logging_steps=7",
            ],
        )
    )
    data = by_name(docs, "ConfigMap", "korean-llm-tiny-ko")["data"]
    cpt, sft = yaml.safe_load(data["cpt.yaml"]), yaml.safe_load(data["sft.yaml"])
    assert cpt["checkpoint"]["keep_after_success"] is True  # runtimeDefaults reach every stage
    assert cpt["lora"]["train_embeddings"] is True and "train_embeddings" not in sft["lora"]  # model stage config wins
    assert sft["training"]["logging_steps"] == 2  # models[].stages.sft.config beats stageDefaults.sft.config
    assert sft["training"]["num_train_epochs"] == 3
    assert sft["run"] == {
        "model_name": "tiny-ko",
        "run_id": "demo",
        "data_root": "/data",
        "output_root": "/output",
        "previous_stage": "cpt",
    }


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_local_runner_reads_every_scenario(scenario: str) -> None:
    pipelines = parse_pipelines(docs_of(scenario))
    for pipe in pipelines:
        steps: dict[str, Step] = {s.name: s for s in pipe.steps}
        for name, step in steps.items():
            if name == "rollout":
                assert step.skip_reason == "cluster only: steps template"
            elif name == "exit":
                assert step.skip_reason == "cluster only: exit handler (notification)"
            else:
                assert step.skip_reason is None and "/data" in step.mounts and "/output" in step.mounts
                assert step.env["STAGE"] == name


def test_local_values_run_the_whole_dag_on_cpu() -> None:
    docs = docs_of("local", PJ)
    (pipe,) = parse_pipelines(docs)
    assert [s.name for s in pipe.steps] == ["preprocess", "cpt", "sft", "rlhf", "evaluate", "deploy", "exit"]
    *stages, exit_handler = pipe.steps
    assert all(s.command[:3] == ["python", "-m", "korean_llm"] for s in stages)
    assert exit_handler.skip_reason == "cluster only: exit handler (notification)"
    job = job_of(docs, "korean-llm-tiny-ko", "cpt")
    assert (
        "nvidia.com/gpu"
        not in job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    )
    (cm,) = [d for d in kind(docs, "ConfigMap") if d["metadata"]["name"] == "korean-llm-tiny-ko"]
    previous = {k.removesuffix(".yaml"): yaml.safe_load(v)["run"].get("previous_stage") for k, v in cm["data"].items()}
    # deploy releases what evaluate judged; evaluate judges the last trained stage
    assert previous == {
        "preprocess": None,
        "cpt": None,
        "sft": "cpt",
        "rlhf": "sft",
        "evaluate": "rlhf",
        "deploy": "evaluate",
    }


# --- cluster integration ---------------------------------------------------------------------------------------


def test_run_workflow_and_cronworkflow_from_run_id() -> None:
    docs = docs_of("7b+prod")
    (run,) = kind(docs, "Workflow")
    assert run["metadata"]["name"] == "korean-llm-qwen7b-7b-r1"
    assert run["metadata"]["annotations"]["argocd.argoproj.io/sync-options"] == "Prune=false"
    assert run["spec"]["workflowTemplateRef"] == {"name": "korean-llm-qwen7b"}
    (cron,) = kind(docs, "CronWorkflow")
    assert cron["spec"]["schedules"] == ["0 18 * * 5"]
    multi = docs_of("multi-model+prod")
    assert [w["spec"]["workflowTemplateRef"]["name"] for w in kind(multi, "Workflow")] == ["korean-llm-all"]


def test_slack_exit_handler_reads_the_webhook_from_an_existing_secret() -> None:
    docs = docs_of("ci/all-features-values.yaml")
    for wt in kind(docs, "WorkflowTemplate"):
        assert wt["spec"]["onExit"] == "exit"
        exit_steps = next(t for t in wt["spec"]["templates"] if t["name"] == "exit")["steps"]
        assert {s["name"] for s in exit_steps[0]} == {"cleanup", "notify"} and "when" not in exit_steps[0][1]
        notify = next(t for t in wt["spec"]["templates"] if t["name"] == "notify")
        env = {e["name"]: e for e in notify["container"]["env"]}
        assert env["SLACK_WEBHOOK_URL"]["valueFrom"]["secretKeyRef"] == {"name": "slack", "key": "webhook-url"}
        assert env["STATUS"]["value"] == "{{workflow.status}}" and env["FAILURES"]["value"] == "{{workflow.failures}}"
    templates = by_name(docs_of("7b"), "WorkflowTemplate", "korean-llm-qwen7b")["spec"]["templates"]
    assert "notify" not in {t["name"] for t in templates}


def test_gpu_scheduler_and_kueue() -> None:
    docs = docs_of("ci/all-features-values.yaml", PJ)
    cm = by_name(docs, "ConfigMap", "korean-llm-gpu-scheduler")
    cfg = yaml.safe_load(cm["data"]["scheduler-config.yaml"])
    assert cfg["apiVersion"] == "kubescheduler.config.k8s.io/v1"
    (profile,) = cfg["profiles"]
    assert profile["schedulerName"] == "korean-llm-gpu-scheduler"
    strategy = profile["pluginConfig"][0]["args"]["scoringStrategy"]
    assert profile["pluginConfig"][0]["name"] == "NodeResourcesFit" and strategy["type"] == "LeastAllocated"
    assert {"name": "nvidia.com/gpu", "weight": 5} in strategy["resources"]
    assert by_name(docs, "Deployment", "korean-llm-gpu-scheduler")["spec"]["template"]["spec"]["serviceAccountName"]
    job = job_of(docs, "korean-llm-qwen7b", "cpt")
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert job["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 2
    for rs in job["spec"]["pytorchReplicaSpecs"].values():
        assert rs["template"]["spec"]["schedulerName"] == "korean-llm-gpu-scheduler"


def test_monitoring_objects_need_the_operator_api_or_force() -> None:
    operator_kinds = {"PodMonitor", "ServiceMonitor", "PrometheusRule"}
    plain = {d["kind"] for d in load_all(helm_template([V / "7b.yaml"], api_versions=()))}
    assert not plain & operator_kinds
    forced = load_all(
        helm_template([V / "7b.yaml"], sets=["monitoring.prometheusOperator.force=true"], api_versions=())
    )
    docs = docs_of("7b")
    for objs in (forced, docs):
        for k in operator_kinds:
            (obj,) = [o for o in kind(objs, k) if o["metadata"]["name"] != "korean-llm-inference"]
            assert obj["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    dcgm = next(o for o in kind(docs, "ServiceMonitor") if o["metadata"]["name"] != "korean-llm-inference")
    assert dcgm["spec"]["endpoints"][0]["honorLabels"] is True
    rules = {r["alert"]: r["expr"] for r in kind(docs, "PrometheusRule")[0]["spec"]["groups"][0]["rules"]}
    assert "DCGM_FI_DEV_GPU_UTIL" in rules["KoreanLLMGPUUtilisationLow"]
    assert "korean_llm_last_progress_timestamp_seconds" in rules["KoreanLLMTrainingStalled"]
    assert "korean_llm_loss != korean_llm_loss" in rules["KoreanLLMLossNotFinite"].replace(
        '{namespace="korean-llm"}', ""
    )
    assert "korean_llm_stage_failures_total" in rules["KoreanLLMStageFailed"]
    dashboard = by_name(docs, "ConfigMap", "korean-llm-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    text = dashboard["data"]["korean-llm.json"]
    for metric in (
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_FB_USED",
        "korean_llm_loss",
        "korean_llm_tokens_per_second",
        "korean_llm_eta_seconds",
    ):
        assert metric in text
    scrape = yaml.safe_load(by_name(docs, "ConfigMap", "korean-llm-scrape-config")["data"]["scrape-configs.yaml"])
    assert [j["job_name"] for j in scrape] == ["kubernetes-pods", "dcgm-exporter"]


def test_alert_and_dashboard_queries_are_valid_promql() -> None:
    docs = docs_of("7b")
    exprs = [r["expr"] for r in kind(docs, "PrometheusRule")[0]["spec"]["groups"][0]["rules"]]
    dashboard = json.loads(by_name(docs, "ConfigMap", "korean-llm-dashboard")["data"]["korean-llm.json"])
    # Grafana fills the template variables before Prometheus sees the query.
    grafana_vars = {"$namespace": "korean-llm", "$model": ".*", "$stage": ".*"}
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for var, value in grafana_vars.items():
                expr = expr.replace(var, value)
            exprs.append(expr)
    assert len(exprs) > 4
    for expr in exprs:
        promql_parser.parse(expr)  # raises on a syntax error


def test_inference_server_serves_the_promoted_model_from_the_output_claim() -> None:
    docs = docs_of("7b")
    dep = by_name(docs, "Deployment", "korean-llm-inference")
    spec = dep["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    assert "--model=$(MODEL_PATH)" in c["args"]
    env = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    assert env["MODEL_PATH"] == "/output/qwen7b/current"  # until the first rollout pins a release
    assert {"readinessProbe", "livenessProbe", "startupProbe"} <= set(c)
    # No crash loop before the first release: the pod waits in Init until a model is there.
    (wait,) = spec["initContainers"]
    assert 'until [ -f "$MODEL_PATH/config.json" ]' in wait["command"][2]
    assert {"name": "MODEL_PATH", "value": "/output/qwen7b/current"} in wait["env"]
    # A rollout never needs a spare GPU.
    assert dep["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    claim = next(v for v in spec["volumes"] if v["name"] == "output")["persistentVolumeClaim"]["claimName"]
    assert claim == "korean-llm-output"
    hpa = by_name(docs, "HorizontalPodAutoscaler", "korean-llm-inference")
    assert hpa["spec"]["metrics"] == [
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "vllm_num_requests_waiting"},
                "target": {"type": "AverageValue", "averageValue": "4"},
            },
        }
    ]
    sm = by_name(docs, "ServiceMonitor", "korean-llm-inference")
    assert sm["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]
    service = by_name(docs, "Service", "korean-llm-inference")
    assert sm["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert by_name(docs, "PodDisruptionBudget", "korean-llm-inference")["spec"]["maxUnavailable"] == 1
    existing = docs_of("ci/existing-claims-values.yaml")
    assert not kind(existing, "PersistentVolumeClaim")
    spec = by_name(existing, "Deployment", "korean-llm-inference")["spec"]["template"]["spec"]
    assert (
        next(v for v in spec["volumes"] if v["name"] == "output")["persistentVolumeClaim"]["claimName"] == "team-models"
    )


def test_storage_claims_and_nfs_volume() -> None:
    docs = docs_of("7b+prod")
    claims = {c["metadata"]["name"]: c for c in kind(docs, "PersistentVolumeClaim")}
    assert set(claims) == {"korean-llm-data", "korean-llm-output", "korean-llm-hf-cache"}
    assert claims["korean-llm-data"]["spec"]["accessModes"] == ["ReadWriteMany"]
    (pv,) = kind(docs, "PersistentVolume")
    assert pv["spec"]["nfs"] == {"server": "nfs.storage.internal", "path": "/export/korean-llm/data"}
    assert claims["korean-llm-data"]["spec"]["volumeName"] == pv["metadata"]["name"]
    assert claims["korean-llm-output"]["spec"]["storageClassName"] == "premium-rwx"
    # Every claim any pod mounts is one the chart creates (or, with existing claims, one the user named).
    for scenario in SCENARIOS:
        docs = docs_of(scenario)
        created = {c["metadata"]["name"] for c in kind(docs, "PersistentVolumeClaim")}
        named = {"team-data", "team-models", "team-hf-cache"}
        for pod in pods(docs) + [{"spec": d["spec"]["template"]["spec"]} for d in kind(docs, "Deployment")]:
            for vol in pod["spec"].get("volumes", []):
                if "persistentVolumeClaim" in vol:
                    assert vol["persistentVolumeClaim"]["claimName"] in created | named, scenario


# --- security --------------------------------------------------------------------------------------------------


# Argo's executor containers as v4.1.2 builds them (workflow/controller/workflowpod.go newExecContainer): the
# controller's executor.securityContext, nil by default, except for resource steps (common.MinimalCtrSC).
ARGO_MINIMAL_SC = {
    "capabilities": {"drop": ["ALL"]},
    "privileged": False,
    "runAsNonRoot": True,
    "runAsUser": 8737,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "seccompProfile": {"type": "RuntimeDefault"},
}
# The training-operator v1.9 init container of Worker pods, as its built-in template writes it
# (pkg/controller.v1/pytorch/initcontainer.go initContainerTemplate, image config.PyTorchInitContainerImageDefault).
OPERATOR_DEFAULT_INIT = {
    "name": "init-pytorch",
    "image": "alpine:3.10",
    "imagePullPolicy": "IfNotPresent",
    "resources": {"limits": {"cpu": "100m", "memory": "20Mi"}, "requests": {"cpu": "50m", "memory": "10Mi"}},
    "command": ["sh", "-c", "err=1;for i in $(seq 100); do if nslookup x-master-0; then err=0 && break; fi; done"],
}


def _merge_by_name(items: list[dict[str, Any]], patch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Strategic merge of a container list (patchMergeKey: name), as util.ApplyPodSpecPatch does.
    out = [dict(c) for c in items]
    for p in patch:
        target = next((c for c in out if c["name"] == p["name"]), None)
        if target is None:
            out.append(dict(p))
        else:
            for key, value in p.items():
                target[key] = {**target.get(key, {}), **value} if isinstance(value, dict) else value
    return out


def argo_pod_spec(wf_spec: dict[str, Any], tpl: dict[str, Any]) -> dict[str, Any]:
    """The pod Argo creates for a container or resource template, injected containers included."""
    spec: dict[str, Any] = {"securityContext": wf_spec.get("securityContext"), "volumes": tpl.get("volumes", [])}
    if "resource" in tpl:
        spec["containers"] = [
            {"name": "main", "image": "quay.io/argoproj/argoexec", "securityContext": ARGO_MINIMAL_SC}
        ]
    else:
        spec["initContainers"] = [{"name": "init", "image": "quay.io/argoproj/argoexec"}]
        spec["containers"] = [
            {"name": "wait", "image": "quay.io/argoproj/argoexec"},
            {"name": "main", **tpl["container"]},
        ]
    if tpl.get("podSpecPatch"):
        patch = yaml.safe_load(tpl["podSpecPatch"])
        for key in ("initContainers", "containers"):
            spec[key] = _merge_by_name(spec.get(key, []), patch.get(key, []))
    return spec


def operator_init_container(template_file: Path) -> dict[str, Any]:
    """The operator's init container from a template file, filled as initcontainer.go GetInitContainer fills it."""
    text = template_file.read_text(encoding="utf-8")
    for field, value in {
        "InitContainerImage": "alpine:3.10",
        "MaxTries": "100",
        "MasterAddr": "cpt-x-master-0",
    }.items():
        text = text.replace("{{." + field + "}}", value)
    (container,) = yaml.safe_load(text)
    return container


def training_pod_specs(docs: list[dict[str, Any]], backend: str) -> list[tuple[str, dict[str, Any]]]:
    """The pods the training backend creates for the rendered jobs, as the controller builds them: PyTorchJob
    Master and Worker pods, the Worker with the operator's init container from charts/files/
    pytorch-init-container.yaml; TrainJob trainer pods, the runtime's pod template with the TrainJob applied
    (korean_llm.local.trainjob.trainer_pod)."""
    from korean_llm.local.trainjob import trainer_pod

    specs: list[tuple[str, dict[str, Any]]] = []
    init = operator_init_container(CHART / "files" / "pytorch-init-container.yaml")
    for tpl_name, step, job in embedded_jobs(docs):
        if job["kind"] == "PyTorchJob" and backend == PJ:
            for replica, rs in job["spec"]["pytorchReplicaSpecs"].items():
                spec = copy.deepcopy(rs["template"]["spec"])
                if replica == "Worker":  # the operator adds its init container to Worker pods
                    spec["initContainers"] = [*spec.get("initContainers", []), init]
                specs.append((f"{tpl_name}/{step}/{replica}", spec))
        elif job["kind"] == "TrainJob" and backend == "trainjob":
            specs.append((f"{tpl_name}/{step}/node", copy.deepcopy(trainer_pod(job, docs).pod_spec)))
    assert len(specs) > 0, f"no {JOB_KIND[backend]} pod to check"
    return specs


@pytest.mark.parametrize("backend", [PJ, "trainjob"])
@pytest.mark.parametrize("scenario", ["7b+prod", "ci/all-features-values.yaml", "local", "72b+prod"])
def test_every_pod_is_pss_restricted_injected_containers_included(scenario: str, backend: str) -> None:
    docs = docs_of(scenario, backend)
    specs: list[tuple[str, dict[str, Any]]] = []
    for wt in kind(docs, "WorkflowTemplate"):
        for tpl in wt["spec"]["templates"]:
            if "container" in tpl or "resource" in tpl:
                specs.append((f"{wt['metadata']['name']}/{tpl['name']}", argo_pod_spec(wt["spec"], tpl)))
    training = training_pod_specs(docs, backend)
    if backend == PJ and scenario in ("72b+prod", "ci/all-features-values.yaml"):  # multi-node: Worker pods
        assert any(name.endswith("/Worker") and spec["initContainers"] for name, spec in training)
    specs += training
    specs += [(d["metadata"]["name"], d["spec"]["template"]["spec"]) for d in kind(docs, "Deployment")]
    problems = [f"{name}: {v}" for name, spec in specs for v in pss.violations(spec)]
    assert not problems, "\n".join(problems)
    for _, spec in specs:
        for c in spec["containers"]:
            if c["name"] not in ("wait", "main") or "command" in c:
                assert c["resources"]["requests"] and c["resources"]["limits"], c["name"]
            for e in c.get("env", []):
                assert "value" in e or "secretKeyRef" in e["valueFrom"]


def test_the_pss_check_rejects_what_argo_and_the_operator_inject_by_default() -> None:
    """Without the chart's podSpecPatch and the operator template, the injected containers are not restricted."""
    docs = docs_of("ci/all-features-values.yaml", PJ)
    wt = by_name(docs, "WorkflowTemplate", "korean-llm-qwen7b")
    tpl = next(t for t in wt["spec"]["templates"] if t["name"] == "preprocess")
    bare = argo_pod_spec(wt["spec"], {k: v for k, v in tpl.items() if k != "podSpecPatch"})
    assert set(pss.violations(bare)) >= {
        "initContainer init: allowPrivilegeEscalation is not false",
        "container wait: capabilities.drop lacks ALL",
    }
    assert not pss.violations(argo_pod_spec(wt["spec"], tpl))
    job = job_of(docs, "korean-llm-qwen7b", "cpt")
    worker = copy.deepcopy(job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"])
    worker["initContainers"] = [OPERATOR_DEFAULT_INIT]
    assert "initContainer init-pytorch: allowPrivilegeEscalation is not false" in pss.violations(worker)
    off = load_all(helm_template([CI / "all-features-values.yaml"], sets=["podSecurity.patchArgoExecutor=false"]))
    assert all("podSpecPatch" not in t for wt in kind(off, "WorkflowTemplate") for t in wt["spec"]["templates"])


def test_secrets_only_by_reference() -> None:
    docs = docs_of("ci/all-features-values.yaml", PJ)
    assert not kind(docs, "Secret")
    (c,) = job_of(docs, "korean-llm-qwen7b", "sft")["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"][
        "containers"
    ]
    env = {e["name"]: e for e in c["env"]}
    assert env["WANDB_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "wandb", "key": "api-key"}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "token"}
    assert env["MLFLOW_TRACKING_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "mlflow", "key": "token"}
    (cm,) = [d for d in kind(docs, "ConfigMap") if d["metadata"]["name"] == "korean-llm-qwen7b"]
    assert yaml.safe_load(cm["data"]["sft.yaml"])["tracking"]["mlflow_tracking_uri"] == "http://mlflow.mlops.svc:5000"


def test_workflow_role_is_namespaced_minimal_and_wildcard_free() -> None:
    docs = docs_of("ci/all-features-values.yaml", PJ)
    assert not kind(docs, "ClusterRole")
    role = by_name(docs, "Role", "korean-llm-workflow")
    rules = {(r["apiGroups"][0], r["resources"][0]): r for r in role["rules"]}
    assert set(rules) == {
        ("kubeflow.org", "pytorchjobs"),
        ("argoproj.io", "workflowtaskresults"),
        ("apps", "deployments"),
    }
    assert rules[("kubeflow.org", "pytorchjobs")]["verbs"] == ["create", "get", "list", "watch", "patch", "delete"]
    assert rules[("argoproj.io", "workflowtaskresults")]["verbs"] == ["create", "patch"]
    assert rules[("apps", "deployments")]["resourceNames"] == ["korean-llm-inference"]
    assert rules[("apps", "deployments")]["verbs"] == ["get", "list", "watch", "patch"]
    for r in role["rules"]:
        assert "*" not in r["verbs"] + r["resources"] + r["apiGroups"] and "secrets" not in r["resources"]
    for wt in kind(docs, "WorkflowTemplate"):
        assert wt["spec"]["serviceAccountName"] == "korean-llm-workflow"


def test_network_policy_default_deny_with_training_allowances() -> None:
    docs = docs_of("7b")
    deny = by_name(docs, "NetworkPolicy", "korean-llm-default-deny")
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny["spec"]
    allow = by_name(docs, "NetworkPolicy", "korean-llm-training")
    selector = allow["spec"]["podSelector"]["matchLabels"]
    assert allow["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"] == selector
    assert {"port": 53, "protocol": "UDP"} in allow["spec"]["egress"][1]["ports"]
    assert allow["spec"]["ingress"][1]["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    # Every pod of the pipeline falls under the policies.
    for pod in pods(docs):
        assert selector.items() <= pod["metadata"]["labels"].items(), pod["metadata"]["name"]


@pytest.mark.slow
def test_checkov_finds_no_failed_check() -> None:
    out = subprocess.run(
        [str(REPO / "ci" / "checkov.sh")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": sys.executable},
        timeout=900,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "Failed checks: 0" in out.stdout


# --- retries, cleanup, deadlines --------------------------------------------------------------------------------

UID = "0c3a4f1e-7d1b-4b0e-9a7e-2f8f9c1d5e6a"  # a workflow.uid as Kubernetes writes it


def workflow_templates(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [t for wt in kind(docs, "WorkflowTemplate") for t in wt["spec"]["templates"]]


DNS_1035 = r"[a-z]([-a-z0-9]*[a-z0-9])?"


@pytest.mark.parametrize("backend", [PJ, "trainjob"])
def test_the_models_of_one_workflow_get_distinct_job_names(backend: str) -> None:
    """The parent template runs every model's DAG inside one Workflow (one workflow.uid): each model's jobs carry
    its position in `models`, so qwen72b's cpt never applies onto qwen7b's."""
    docs = docs_of("multi-model", backend)
    names: dict[str, list[str]] = {}
    for wt in (d for d in docs if d["kind"] == "WorkflowTemplate"):
        for t in wt["spec"]["templates"]:
            if "resource" in t and t["resource"]["action"] == "apply":
                job = yaml.safe_load(t["resource"]["manifest"])
                names.setdefault(wt["metadata"]["name"], []).append(job["metadata"]["name"])
    assert set(names) == {"korean-llm-qwen7b", "korean-llm-qwen72b"}, names
    assert all(n.split("-")[1] == "0" for n in names["korean-llm-qwen7b"])  # models[0]
    assert all(n.split("-")[1] == "1" for n in names["korean-llm-qwen72b"])  # models[1]
    every = [n for group in names.values() for n in group]
    assert len(every) == len(set(every)) and len(every) >= 6


@pytest.mark.parametrize("backend", [PJ, "trainjob"])
@pytest.mark.parametrize("scenario", ["7b", "72b+prod", "ci/all-features-values.yaml"])
def test_a_retried_training_step_reattaches_to_its_job(scenario: str, backend: str) -> None:
    """Deterministic job names and `apply`: the retry of a step whose pod was lost gets the job it created. The
    name is `<stage>-<model index>-{{workflow.uid}}` (korean-llm.jobName, charts/templates/_steps.tpl): nothing in
    it changes between attempts of the step."""
    steps = training_steps(docs_of(scenario, backend), JOB_KIND[backend])
    for step in steps:
        res = step["resource"]
        assert res["action"] == "apply"
        job = yaml.safe_load(res["manifest"])
        assert job["kind"] == JOB_KIND[backend]
        assert "generateName" not in job["metadata"]
        assert re.fullmatch(rf"{step['name']}-[0-9]+-\{{\{{workflow\.uid\}}\}}", job["metadata"]["name"])
        assert job["metadata"]["labels"]["korean-llm/workflow-uid"] == "{{workflow.uid}}"
        name = job["metadata"]["name"].replace("{{workflow.uid}}", UID)
        if backend == PJ:
            # The operator names pods and services <job>-worker-<i>: a DNS-1035 label of at most 63 characters.
            workers = job["spec"]["pytorchReplicaSpecs"].get("Worker", {}).get("replicas", 0)
            longest = f"{name}-worker-{max(workers - 1, 0)}"
        else:
            # A server-side apply of the same manifest is a no-op on the existing TrainJob. The manifest leaves
            # spec.suspend to Kueue (its webhook sets it on creation and its manager owns it): a re-apply that
            # set it would fight Kueue's field manager over a queued job.
            assert res["flags"] == ["--server-side"] and "suspend" not in job["spec"]
            # JobSet names the Job <jobset>-<replicatedJob>-<jobIndex> (jobset v0.12.0, the version trainer
            # v2.3.0's go.mod requires: pkg/util/placement/placement.go GenJobName) and its pods' hostnames
            # <job>-<podIndex> (GenPodName); the JobSet is named after the TrainJob (trainer v2.3.0
            # pkg/runtime/framework/plugins/jobset/jobset.go:413). The Job controller names an Indexed Job's pods
            # <job>-<index>-<5 random> (kubernetes pkg/controller/job, podGenerateNameWithIndex), truncating the
            # job name beyond 58 characters: within 63, pod name and hostname keep the whole TrainJob name.
            nodes = job["spec"]["trainer"]["numNodes"]
            longest = f"{name}-node-0-{nodes - 1}-x7k2p"
        assert len(longest) <= 63 and re.fullmatch(DNS_1035, longest), longest


@pytest.mark.parametrize("scenario", ["7b", "72b+prod", "multi-model+prod", "ci/all-features-values.yaml"])
def test_every_step_retries_a_lost_pod_but_not_a_permanent_failure(scenario: str) -> None:
    for tpl in workflow_templates(docs_of(scenario)):
        if "dag" in tpl or "steps" in tpl or tpl["name"] == "notify":
            continue
        retry = tpl["retryStrategy"]
        assert retry["limit"] == 3 and retry["retryPolicy"] == "Always" and "maxDuration" not in retry["backoff"]
        if tpl["name"] in ("cleanup", "rollout-patch", "rollout-status"):
            assert "expression" not in retry
        elif "container" in tpl:
            assert retry["expression"] == 'lastRetry.status == "Error" || !(lastRetry.exitCode in ["1", "2", "3"])'
        else:
            assert (
                retry["expression"]
                == 'lastRetry.status == "Error" || !(lastRetry.message contains "failure condition")'
            )


@pytest.mark.parametrize("backend", [PJ, "trainjob"])
@pytest.mark.parametrize("scenario", ["7b", "72b+prod", "local"])
def test_time_queued_in_kueue_does_not_count_against_a_training_step(scenario: str, backend: str) -> None:
    """Argo counts a step's activeDeadlineSeconds from the step's start. The job's own deadline counts from
    admission: a PyTorchJob's from its startTime, which the operator sets when Kueue admits it; a TrainJob's from
    its creation or, once Kueue has resumed it, from the Suspended condition turning False (kubeflow/trainer
    v2.3.0 pkg/controller/trainjob_controller.go:155-174, reconcileDeadline). Training steps therefore carry no
    step deadline."""
    docs = docs_of(scenario, backend)
    steps = training_steps(docs, JOB_KIND[backend])
    for step in steps:
        assert "activeDeadlineSeconds" not in step
        job = yaml.safe_load(step["resource"]["manifest"])
        if backend == PJ:
            assert job["spec"]["runPolicy"]["activeDeadlineSeconds"] >= 3600
        else:
            assert "runPolicy" not in job["spec"] and job["spec"]["activeDeadlineSeconds"] >= 3600
    containers = [t for t in workflow_templates(docs) if "container" in t and t["name"] != "notify"]
    assert len(containers) > 0
    for tpl in containers:
        assert tpl["activeDeadlineSeconds"] > 0


@pytest.mark.parametrize("scenario", ["7b", "multi-model+prod", "ci/all-features-values.yaml"])
def test_a_run_that_did_not_succeed_deletes_its_jobs(scenario: str) -> None:
    """`argo stop`, the workflow's deadline or a failed step: the exit handler deletes the run's jobs (by the label
    every job carries), so none keeps holding GPUs; a succeeded run keeps them (finished pods keep their logs)."""
    for backend, plural, resource in (
        (PJ, "pytorchjobs", "pytorchjobs.kubeflow.org"),
        ("trainjob", "trainjobs", "trainjobs.trainer.kubeflow.org"),
    ):
        docs = docs_of(scenario, backend)
        role = by_name(docs, "Role", "korean-llm-workflow")
        verbs = next(r["verbs"] for r in role["rules"] if r["resources"] == [plural])
        assert {"list", "delete"} <= set(verbs)
        for wt in kind(docs, "WorkflowTemplate"):
            templates = {t["name"]: t for t in wt["spec"]["templates"]}
            assert wt["spec"]["onExit"] == "exit"
            cleanup_step = next(s for s in templates["exit"]["steps"][0] if s["name"] == "cleanup")
            assert cleanup_step["when"] == "{{workflow.status}} != Succeeded"
            res = templates["cleanup"]["resource"]
            assert res["action"] == "delete" and "manifest" not in res
            assert res["flags"][:3] == [resource, "--selector", "korean-llm/workflow-uid={{workflow.uid}}"]
        steps = [t for wt in kind(docs, "WorkflowTemplate") for t in wt["spec"]["templates"] if "resource" in t]
        jobs = [yaml.safe_load(t["resource"]["manifest"]) for t in steps if t["resource"].get("manifest")]
        jobs = [j for j in jobs if j["kind"] in ("PyTorchJob", "TrainJob")]
        assert jobs
        for job in jobs:
            assert job["metadata"]["labels"]["korean-llm/workflow-uid"] == "{{workflow.uid}}"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_stage_deadlines_fit_in_the_workflow_deadline(scenario: str) -> None:
    for wt in kind(docs_of(scenario), "WorkflowTemplate"):
        if "korean-llm/model" not in wt["metadata"]["labels"]:
            continue
        templates = {t["name"]: t for t in wt["spec"]["templates"]}
        total = 0
        for task in dag(wt):
            tpl = templates[task]
            if "resource" in tpl and tpl["resource"]["action"] == "apply":
                job = yaml.safe_load(tpl["resource"]["manifest"])
                # PyTorchJob: spec.runPolicy; TrainJob: spec (both counted from admission, not from creation)
                total += (job["spec"].get("runPolicy") or job["spec"])["activeDeadlineSeconds"]
            elif "container" in tpl:
                total += tpl["activeDeadlineSeconds"]
        assert total <= wt["spec"]["activeDeadlineSeconds"], (scenario, wt["metadata"]["name"], total)
    if scenario in ("72b", "72b+prod"):
        wt = by_name(docs_of(scenario), "WorkflowTemplate", "korean-llm-qwen72b")
        assert wt["spec"]["activeDeadlineSeconds"] >= 14 * 86400 + 7 * 86400  # two weeks of stages, one of queueing


def test_the_run_workflow_is_neither_expired_nor_pruned() -> None:
    for scenario in ("7b+prod", "multi-model+prod"):
        for run in kind(docs_of(scenario), "Workflow"):
            notes = run["metadata"]["annotations"]
            assert notes["argocd.argoproj.io/sync-options"] == "Prune=false"
            assert notes["helm.sh/resource-policy"] == "keep"
            assert notes["argocd.argoproj.io/sync-wave"] == "1"
            # The Workflow's own ttlStrategy wins over the template's (Argo's JoinWorkflowSpec).
            assert run["spec"]["ttlStrategy"]["secondsAfterCompletion"] == 2**31 - 1
        for wt in kind(docs_of(scenario), "WorkflowTemplate"):
            assert int(wt["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0")) < 1
        for cron in kind(docs_of(scenario), "CronWorkflow"):
            assert cron["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "1"


# --- scheduling, storage, egress -------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_cpu_steps_are_never_pinned_to_gpu_nodes_they_do_not_tolerate(scenario: str) -> None:
    for pod in pods(docs_of(scenario)):
        spec = pod["spec"]
        gpu = any("nvidia.com/gpu" in c["resources"]["limits"] for c in spec["containers"])
        tolerates = any(t.get("key") == "nvidia.com/gpu" for t in spec.get("tolerations", []))
        gpu_keys = [k for k in spec.get("nodeSelector", {}) if k.startswith("nvidia.com/gpu")]
        assert gpu or tolerates or not gpu_keys, (scenario, pod["metadata"]["name"], gpu_keys)
    if scenario.startswith("72b"):
        job = job_of(docs_of(scenario, PJ), "korean-llm-qwen72b", "cpt")
        gpu_pod = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
        assert gpu_pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}


def test_deploy_memory_follows_the_model_size() -> None:
    """deploy holds one copy of the weights in deploy.merge_dtype (float32: 4 bytes per parameter, bfloat16: 2)
    + 15%: 7.62e9 * 4 * 1.15 B = 32.7 GiB, 72.7e9 * 2 * 1.15 B = 155.7 GiB (rounded up)."""
    for scenario, template, memory in [
        ("72b", "korean-llm-qwen72b", "156Gi"),
        ("multi-model", "korean-llm-qwen72b", "156Gi"),
        ("multi-model", "korean-llm-qwen7b", "33Gi"),
        ("7b", "korean-llm-qwen7b", "33Gi"),
    ]:
        wt = by_name(docs_of(scenario), "WorkflowTemplate", template)
        deploy = next(t for t in wt["spec"]["templates"] if t["name"] == "deploy")
        assert deploy["container"]["resources"]["limits"]["memory"] == memory, (scenario, template)
    own = load_all(helm_template([V / "72b.yaml"], sets=["models[0].stages.deploy.memory=700Gi"]))
    wt = by_name(own, "WorkflowTemplate", "korean-llm-qwen72b")
    deploy = next(t for t in wt["spec"]["templates"] if t["name"] == "deploy")
    assert deploy["container"]["resources"]["limits"]["memory"] == "700Gi"  # the model's own value wins
    f32 = load_all(helm_template([V / "72b.yaml"], sets=["models[0].config.deploy.merge_dtype=float32"]))
    wt = by_name(f32, "WorkflowTemplate", "korean-llm-qwen72b")
    deploy = next(t for t in wt["spec"]["templates"] if t["name"] == "deploy")
    assert deploy["container"]["resources"]["limits"]["memory"] == "312Gi"  # 72.7e9 * 4 * 1.15 B


def test_claims_survive_prune_and_uninstall() -> None:
    for claim in kind(docs_of("7b+prod"), "PersistentVolumeClaim"):
        notes = claim["metadata"]["annotations"]
        assert notes["argocd.argoproj.io/sync-options"] == "Prune=false,Delete=false"
        assert notes["helm.sh/resource-policy"] == "keep"


def test_network_policy_admits_the_configured_tracking_server() -> None:
    for scenario, port in [("7b+prod", 5000), ("ci/all-features-values.yaml", 5000)]:
        allow = by_name(docs_of(scenario), "NetworkPolicy", "korean-llm-training")
        ports = [p["port"] for rule in allow["spec"]["egress"] for p in rule.get("ports", [])]
        assert port in ports, scenario
    allow = by_name(docs_of("7b"), "NetworkPolicy", "korean-llm-training")
    assert 5000 not in [p["port"] for rule in allow["spec"]["egress"] for p in rule.get("ports", [])]


def test_second_scheduler_follows_the_cluster_version() -> None:
    def image(kube: str, sets: Sequence[str] = ()) -> str:
        out = subprocess.run(
            [
                helm_binary(),
                "template",
                "korean-llm",
                str(CHART),
                "-f",
                str(CI / "all-features-values.yaml"),
                "--kube-version",
                kube,
                *[a for s in sets for a in ("--set", s)],
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode:
            return out.stderr
        dep = by_name(load_all(out.stdout), "Deployment", "korean-llm-gpu-scheduler")
        return dep["spec"]["template"]["spec"]["containers"][0]["image"]

    assert image("1.33.5-eks-4f4795d") == "registry.k8s.io/kube-scheduler:v1.33.5"
    assert image("1.34.1") == "registry.k8s.io/kube-scheduler:v1.34.1"
    assert image("1.34.1", ["gpuScheduler.image.tag=v1.33.9"]) == "registry.k8s.io/kube-scheduler:v1.33.9"
    assert "outside the supported skew" in image("1.34.1", ["gpuScheduler.image.tag=v1.32.0"])
    assert "outside the supported skew" in image("1.34.1", ["gpuScheduler.image.tag=v1.35.0"])


SHIPPED = [s for s in SCENARIOS if not s.startswith("ci/")]


def test_every_prerequisite_of_the_shipped_values_is_in_the_cluster_guide() -> None:
    """Secrets, PriorityClasses, Kueue LocalQueues and StorageClasses the shipped values refer to: created by the
    chart, or in docs/cluster.md with the command that creates them."""
    guide = (REPO / "docs" / "cluster.md").read_text(encoding="utf-8")
    missing = set()
    for scenario in SHIPPED:
        docs = docs_of(scenario)
        created = {(d["kind"], d["metadata"]["name"]) for d in docs}
        specs = [p["spec"] for p in pods(docs)] + [d["spec"]["template"]["spec"] for d in kind(docs, "Deployment")]
        for wt in kind(docs, "WorkflowTemplate"):
            for tpl in wt["spec"]["templates"]:
                if "container" in tpl:
                    specs.append({"containers": [tpl["container"]]})
        for spec in specs:
            for c in spec["containers"] + spec.get("initContainers", []):
                for e in c.get("env", []):
                    ref = e.get("valueFrom", {}).get("secretKeyRef")
                    command = f"create secret generic {ref['name']} --from-literal={ref['key']}=" if ref else ""
                    if ref and ("Secret", ref["name"]) not in created and command not in guide:
                        missing.add(f"Secret {ref['name']} (key {ref['key']})")
            if spec.get("priorityClassName") and f"name: {spec['priorityClassName']}" not in guide:
                missing.add(f"PriorityClass {spec['priorityClassName']}")
        for amc in kind(docs, "AlertmanagerConfig"):
            for r in amc["spec"]["receivers"]:
                for slack in r.get("slackConfigs", []):
                    name, key = slack["apiURL"]["name"], slack["apiURL"]["key"]
                    if f"create secret generic {name} --from-literal={key}=" not in guide:
                        missing.add(f"Secret {name} (key {key})")
        for _, _, job in embedded_jobs(docs):
            queue = job["metadata"].get("labels", {}).get("kueue.x-k8s.io/queue-name")
            if queue and not re.search(
                rf"kind: LocalQueue\nmetadata:\n  name: {queue}\n  namespace: korean-llm", guide
            ):
                missing.add(f"LocalQueue {queue}")
        for claim in kind(docs, "PersistentVolumeClaim"):
            sc = claim["spec"].get("storageClassName")
            if sc and sc not in guide:
                missing.add(f"StorageClass {sc}")
    assert not missing, sorted(missing)
    assert "ReadWriteMany" in guide and "pytorch-init-container.yaml" in guide and "vllm_num_requests_waiting" in guide


# `make chart-docs`: the same flags (the test below checks the Makefile carries them)
HELM_DOCS_FLAGS = [
    "--chart-search-root",
    "charts",
    "--chart-to-generate",
    "charts",
    "--document-dependency-values",
    "--sort-values-order",
    "file",
]


def helm_docs() -> str:
    """The helm-docs that ci/install-helm-docs.sh builds (the version that script names), from .venv/bin or the
    folder of the running interpreter (make's $(BIN))."""
    version = re.search(r"^version=(\S+)$", (REPO / "ci" / "install-helm-docs.sh").read_text(), re.M)
    assert version, "ci/install-helm-docs.sh names no version"
    found = shutil.which("helm-docs", path=f"{REPO / '.venv' / 'bin'}:{Path(sys.executable).parent}")
    hint = "run ci/install-helm-docs.sh .venv/bin (built from ci/helm-docs with Debian's Go packages)"
    assert found, f"helm-docs not found: {hint}"
    out = subprocess.run([found, "--version"], capture_output=True, text=True, check=False)
    assert out.stdout.strip() == f"helm-docs version {version.group(1)}", f"{found}: {out.stdout}{out.stderr}; {hint}"
    return found


def test_chart_readme_is_helm_docs_output() -> None:
    assert " ".join(HELM_DOCS_FLAGS) in (REPO / "Makefile").read_text(encoding="utf-8")
    out = subprocess.run(
        [helm_docs(), "--dry-run", *HELM_DOCS_FLAGS], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    text = (CHART / "README.md").read_text(encoding="utf-8")
    assert out.stdout == text, "charts/README.md is stale: run make chart-docs"
    assert "| pipeline.retry.limit | int | `3` |" in text and "| inference.autoscaling.queueMetric |" in text
    # Every row of the values table has its four cells: a `|` in a default or a description is escaped
    # (charts/README.md.gotmpl).
    rows = [line for line in text.split("## Values", 1)[1].splitlines() if line.startswith("| ")]
    assert len(rows) > 150
    for row in rows:
        assert len(re.split(r"(?<!\\)\|", row)) == 6, row
    assert "| datasets | object |" in text and "(cpt\\|sft\\|rlhf)" in text


def test_schema_defines_the_stage_block_once_and_each_subchart_has_its_own() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    assert set(schema["$defs"]) >= {"containerStage", "jobStage", "quantity"}
    # The chart's own keys; `definitions` holds the runtime config generated from the pydantic models.
    text = json.dumps({k: v for k, v in schema.items() if k != "definitions"})
    assert text.count('"activeDeadlineSeconds"') == 3  # pipeline, containerStage, jobStage
    for stage in ("preprocess", "deploy"):
        assert schema["properties"]["stageDefaults"]["properties"][stage] == {"$ref": "#/$defs/containerStage"}
    for stage in ("cpt", "sft", "rlhf", "evaluate"):
        assert schema["properties"]["models"]["items"]["properties"]["stages"]["properties"][stage] == {
            "$ref": "#/$defs/jobStage"
        }
    for sub in ("inference", "monitoring", "storage", "gpu-scheduler"):
        own = json.loads((CHART / "charts" / sub / "values.schema.json").read_text(encoding="utf-8"))
        assert own["additionalProperties"] is False and {"global", "enabled"} <= set(own["properties"])
        jsonschema.Draft7Validator.check_schema(own)
        values = yaml.safe_load((CHART / "charts" / sub / "values.yaml").read_text(encoding="utf-8"))
        jsonschema.validate(values, own)


def test_the_datasets_registry_reaches_every_stage_config_and_resolves_by_name() -> None:
    cm = by_name(docs_of("local-csv"), "ConfigMap", "korean-llm-tiny-ko")
    for key, text in cm["data"].items():
        assert set(yaml.safe_load(text)["datasets"]) == {"qa-ko", "dialogues-ko", "quiz-ko"}, key
    pre = build_config(yaml.safe_load(cm["data"]["preprocess.yaml"]), source="preprocess.yaml", env={})
    qa = pre.preprocess.sft_sources[0]
    assert (qa.dataset, qa.path, qa.encoding) == ("qa-ko", "examples/data/qa_cp949.csv", "auto")
    assert qa.mapping is not None and (qa.mapping.user, qa.mapping.assistant) == ("Q", "A")
    ev = build_config(yaml.safe_load(cm["data"]["evaluate.yaml"]), source="evaluate.yaml", env={})
    assert ev.evaluate.tasks[0].mapping.choices == ["보기1", "보기2", "보기3", "보기4"]  # type: ignore[union-attr]
