"""The rendered chart taken apart: its objects, the PyTorchJobs inside Argo resource steps, and every pod spec
re-emitted as a plain Pod (for kubernetes-validate and checkov, which do not look inside custom resources).

    python tests/chart/rendered.py OUT_DIR [-f values/7b.yaml ...]   # writes OUT_DIR/rendered.yaml and pods.yaml

Used by tests/test_chart.py and ci/checkov.sh.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts"
RELEASE = "korean-llm"
NAMESPACE = "korean-llm"
# The prometheus-operator APIs, as a cluster with kube-prometheus-stack advertises them.
OPERATOR_APIS = ("monitoring.coreos.com/v1", "monitoring.coreos.com/v1alpha1")
ARGO_PLACEHOLDER = re.compile(r"\{\{\s*([^}]+?)\s*\}\}")
SAMPLE_PARAMETERS = {"workflow.parameters.run-id": "r1", "workflow.name": "korean-llm-qwen7b-cron-1"}
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def helm_binary() -> str:
    sys.path.insert(0, str(REPO / "runtime"))
    from korean_llm.local.runner import find_helm

    return find_helm()


def helm_template(values: Sequence[str | Path] = (), sets: Sequence[str] = (), api_versions=OPERATOR_APIS) -> str:
    """`helm template` output; raises RuntimeError with helm's message when rendering fails."""
    cmd = [helm_binary(), "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for v in values:
        cmd += ["-f", str(v)]
    for s in sets:
        cmd += ["--set", s]
    for api in api_versions:
        cmd += ["--api-versions", api]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip())
    return out.stdout


def load_all(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.load_all(text, Loader=Loader) if isinstance(d, dict)]


def embedded_jobs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(workflow template, step, manifest) of every Argo resource step."""
    for doc in docs:
        if doc.get("kind") not in ("WorkflowTemplate", "Workflow", "CronWorkflow"):
            continue
        spec = doc["spec"].get("workflowSpec", doc["spec"])
        for tpl in spec.get("templates", []):
            if "resource" in tpl:
                yield doc["metadata"]["name"], tpl["name"], yaml.load(tpl["resource"]["manifest"], Loader=Loader)


def _fill_placeholders(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _fill_placeholders(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_fill_placeholders(v) for v in obj]
    if isinstance(obj, str):
        return ARGO_PLACEHOLDER.sub(lambda m: SAMPLE_PARAMETERS.get(m.group(1), "x"), obj)
    return obj


def _pod(name: str, metadata: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    meta = {"name": name[:63].rstrip("-"), "namespace": NAMESPACE, **copy.deepcopy(metadata)}
    meta.pop("generateName", None)
    return _fill_placeholders({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": copy.deepcopy(spec)})


def pods(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Plain Pods for the pod templates Kubernetes validators cannot see: PyTorchJob replicas inside Argo resource
    steps, and Argo container steps (with the pod-level settings Argo takes from the workflow spec)."""
    out = []
    for tpl_name, step, job in embedded_jobs(docs):
        if job.get("kind") != "PyTorchJob":
            continue
        for replica, rs in job["spec"]["pytorchReplicaSpecs"].items():
            out.append(_pod(f"{tpl_name}-{step}-{replica.lower()}", rs["template"]["metadata"], rs["template"]["spec"]))
    for doc in docs:
        if doc.get("kind") != "WorkflowTemplate":
            continue
        spec = doc["spec"]
        for tpl in spec["templates"]:
            if "container" not in tpl:
                continue
            pod_spec: dict[str, Any] = {
                "serviceAccountName": spec.get("serviceAccountName"),
                "securityContext": spec.get("securityContext"),
                "containers": [{"name": "main", **tpl["container"]}],
                "restartPolicy": "Never",
            }
            for key in ("volumes", "nodeSelector", "tolerations", "schedulerName", "priorityClassName"):
                if key in tpl:
                    pod_spec[key] = tpl[key]
            if spec.get("imagePullSecrets"):
                pod_spec["imagePullSecrets"] = spec["imagePullSecrets"]
            labels = {**spec.get("podMetadata", {}).get("labels", {}), **tpl.get("metadata", {}).get("labels", {})}
            out.append(_pod(f"{doc['metadata']['name']}-{tpl['name']}", {"labels": labels}, pod_spec))
    return out


def main(argv: list[str]) -> int:
    out_dir = Path(argv[0])
    values = [a for a in argv[1:] if a != "-f"]
    text = helm_template(values)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "rendered.yaml").write_text(text, encoding="utf-8")
    (out_dir / "pods.yaml").write_text(yaml.safe_dump_all(pods(load_all(text)), sort_keys=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
