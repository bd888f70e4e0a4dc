"""The chart's behaviour on a cluster where static checks cannot see it: the exit handler's effect on a run's
phase (following Argo Workflows v4.1.2's controller), the NetworkPolicies that decide whether Prometheus reaches
vLLM's metrics (following the NetworkPolicy API's matching rules), the GPU taint and the tolerations the
runtime gives a TrainJob written by hand, and the walkthrough in docs/cluster.md read as a sequence of commands.
"""

from __future__ import annotations

import copy
import re
import shlex
from functools import cache
from typing import Any

import pytest
import yaml

from korean_llm.local.trainjob import trainer_pod

from .chart.rendered import REPO, helm_template, load_all
from .test_chart import CORE_GROUPS, SCENARIOS, validate_core, validate_crd

GUIDE_PATH = REPO / "docs" / "cluster.md"
GUIDE = GUIDE_PATH.read_text(encoding="utf-8")
SLACK = ("notifications.slack.enabled=true", "notifications.slack.existingSecret=slack")


@cache
def render(scenario: str, sets: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    return load_all(helm_template(SCENARIOS[scenario], sets=sets))


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


@pytest.mark.parametrize("scenario", ["default", "7b+prod", "72b"])
def test_the_objects_these_tests_read_validate(scenario: str) -> None:
    """The notify template, the runtime with its tolerations and the NetworkPolicies against the upstream
    schemas (the vendored CRDs; Kubernetes' own for the core kinds)."""
    docs = render(scenario, (*SLACK, "training.backend=trainjob"))
    checked = 0
    for doc in docs:
        if doc["kind"] in ("WorkflowTemplate", "TrainingRuntime", "ClusterTrainingRuntime", "ServiceMonitor"):
            validate_crd(doc)
            checked += 1
        elif doc["kind"] in ("NetworkPolicy", "Service", "Deployment"):
            assert doc["apiVersion"].rpartition("/")[0] in CORE_GROUPS
            validate_core(doc)
            checked += 1
    assert checked >= 6


# --- 1. The exit handler must not change the run's phase ---------------------------------------------------------
#
# Argo Workflows v4.1.2, the code the model below follows:
# - pkg/apis/workflow/v1alpha1/workflow_types.go `continues`: Failed continues with continueOn.failed, Error with
#   continueOn.error, nothing else.
# - workflow/controller/steps.go executeStepGroup: once every child is fulfilled the group is Failed when a child
#   FailedOrError() and !step.ContinuesOn(child.Phase), else Succeeded; executeSteps marks the steps node Failed
#   for a failed group. A step whose `when` is false becomes a Skipped node (not FailedOrError).
# - workflow/controller/operator.go executeTemplate: a retry node ends with the phase of its last child once the
#   limit is spent.
# - workflow/controller/operator.go operate: a Succeeded workflow becomes Failed (Error) when the onExit node
#   ended Failed (Error); a Failed or Errored workflow keeps its phase whatever the exit node did.

FAILED, ERROR, SUCCEEDED, SKIPPED = "Failed", "Error", "Succeeded", "Skipped"


def continues(continue_on: dict[str, Any] | None, phase: str) -> bool:
    if not continue_on:
        return False
    return bool((continue_on.get("error") and phase == ERROR) or (continue_on.get("failed") and phase == FAILED))


def retry_node_phase(template: dict[str, Any], attempts: list[str]) -> str:
    """The phase of a step's node: its only pod's, or with a retryStrategy the last attempt's once the limit is
    spent or an attempt succeeded."""
    strategy = template.get("retryStrategy")
    limit = int(strategy["limit"]) if strategy else 0
    for i, phase in enumerate(attempts):
        if phase == SUCCEEDED or i >= limit:
            return phase
    raise AssertionError(f"{len(attempts)} attempts given, the node retries {limit} times")


def exit_node_phase(exit_steps: list[list[dict[str, Any]]], step_phases: dict[str, str]) -> str:
    for group in exit_steps:
        for step in group:
            phase = step_phases[step["name"]]
            if phase in (FAILED, ERROR) and not continues(step.get("continueOn"), phase):
                return FAILED
    return SUCCEEDED


def workflow_phase(main: str, exit_node: str) -> str:
    if main == SUCCEEDED and exit_node in (FAILED, ERROR):
        return exit_node
    return main


def exit_handlers(docs: list[dict[str, Any]]) -> list[tuple[str, list[list[dict[str, Any]]], dict[str, Any]]]:
    """(workflow template, the `exit` steps, the templates by name) of every WorkflowTemplate."""
    out = []
    for wt in of_kind(docs, "WorkflowTemplate"):
        templates = {t["name"]: t for t in wt["spec"]["templates"]}
        assert wt["spec"]["onExit"] == "exit", wt["metadata"]["name"]
        out.append((wt["metadata"]["name"], templates["exit"]["steps"], templates))
    return out


def run_phases(exit_steps: list[list[dict[str, Any]]], templates: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(main phase, what the notify pod did on every attempt, the workflow's final phase) for each case."""
    out = []
    for main in (SUCCEEDED, FAILED, ERROR):
        for pod in (SUCCEEDED, FAILED, ERROR):
            phases = {}
            for group in exit_steps:
                for step in group:
                    tpl = templates[step["template"]]
                    if step["name"] == "notify":
                        limit = int(tpl.get("retryStrategy", {}).get("limit", 0))
                        phases["notify"] = retry_node_phase(tpl, [pod] * (limit + 1))
                    elif "when" in step:  # cleanup: `{{workflow.status}} != Succeeded`
                        assert step["when"] == "{{workflow.status}} != Succeeded", step
                        phases[step["name"]] = SKIPPED if main == SUCCEEDED else SUCCEEDED
                    else:
                        phases[step["name"]] = SUCCEEDED
            out.append((main, pod, workflow_phase(main, exit_node_phase(exit_steps, phases))))
    return out


@pytest.mark.parametrize("scenario", ["7b", "multi-model"])
def test_a_failing_notification_keeps_the_run_phase(scenario: str) -> None:
    docs = render(scenario, SLACK)
    handlers = exit_handlers(docs)
    assert len(handlers) == len(of_kind(docs, "WorkflowTemplate")) >= 1
    for name, steps, templates in handlers:
        assert any(s["name"] == "notify" for g in steps for s in g), name
        for main, pod, final in run_phases(steps, templates):
            assert final == main, f"{name}: a {main} run whose notify pod ends {pod} ends {final}"


def test_without_continue_on_a_failed_notification_fails_a_succeeded_run() -> None:
    """The model above is Argo's, not one that always says yes: the rendered exit handler with `continueOn`
    removed turns a Succeeded run into a Failed one, as Argo v4.1.2 does (the step group, and with it the exit
    steps node, is Failed for a Failed and for an Errored child alike)."""
    (_, steps, templates), *_ = exit_handlers(render("7b", SLACK))
    stripped = copy.deepcopy(steps)
    for group in stripped:
        for step in group:
            step.pop("continueOn", None)
    outcomes = {(main, pod): final for main, pod, final in run_phases(stripped, templates)}
    assert outcomes[(SUCCEEDED, FAILED)] == FAILED and outcomes[(SUCCEEDED, ERROR)] == FAILED
    assert outcomes[(SUCCEEDED, SUCCEEDED)] == SUCCEEDED


def test_the_notify_step_retries_a_lost_pod_and_cannot_hang_the_exit_handler() -> None:
    for name, steps, templates in exit_handlers(render("7b", SLACK)):
        (step,) = [s for g in steps for s in g if s["name"] == "notify"]
        assert step["continueOn"] == {"failed": True, "error": True}, name
        notify = templates["notify"]
        # An evicted or deleted pod (Error) and a failed one are retried alike.
        assert notify["retryStrategy"]["retryPolicy"] == "Always" and int(notify["retryStrategy"]["limit"]) >= 1
        assert "expression" not in notify["retryStrategy"]
        # A pod stuck before its container starts (missing Secret, image pull) is ended by the kubelet: exit
        # handlers ignore the workflow's deadline, so without one of its own the run would never finish.
        deadline = int(notify["activeDeadlineSeconds"])
        assert 60 <= deadline <= 600, deadline
        notify_py = (REPO / "charts" / "files" / "notify.py").read_text(encoding="utf-8")
        http_timeout = float(re.search(r"def post\(url: str, text: str, timeout: float = ([0-9.]+)\)", notify_py)[1])
        assert http_timeout * 2 < deadline  # one slow Slack call does not get the pod killed
        env = {e["name"]: e for e in notify["container"]["env"]}
        assert env["SLACK_WEBHOOK_URL"]["valueFrom"]["secretKeyRef"]["name"] == "slack"


def test_without_slack_the_exit_handler_is_the_cleanup_alone() -> None:
    for name, steps, templates in exit_handlers(render("7b")):
        assert [s["name"] for g in steps for s in g] == ["cleanup"], name
        assert "notify" not in templates


# --- 2. Prometheus reaches vLLM's metrics through the NetworkPolicies ---------------------------------------------
#
# Matching as the NetworkPolicy API defines it (networking.k8s.io/v1): a pod selected by no policy of a type is
# open; selected by one or more, a connection is allowed when any ingress rule of any of them admits it. A peer
# with a namespaceSelector (and optional podSelector) matches pods of the selected namespaces; a podSelector
# alone matches pods of the policy's namespace. A named port matches the destination container port of that
# name; no `ports` means every port.

RELEASE_NAMESPACE = "korean-llm"


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        present, value = expr["key"] in labels, labels.get(expr["key"])
        op = expr["operator"]
        if op == "In" and value not in expr["values"]:
            return False
        if op == "NotIn" and present and value in expr["values"]:
            return False
        if (op == "Exists" and not present) or (op == "DoesNotExist" and present):
            return False
    return True


def peer_matches(peer: dict[str, Any], policy_ns: str, src_ns: dict[str, str], src_pod: dict[str, str]) -> bool:
    if "ipBlock" in peer:
        return False
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], src_ns):
            return False
    elif src_ns.get("kubernetes.io/metadata.name") != policy_ns:
        return False
    return selects(peer.get("podSelector", {}), src_pod)


def port_matches(rule_ports: list[dict[str, Any]] | None, container_ports: list[dict[str, Any]], port: int) -> bool:
    if not rule_ports:
        return True
    for p in rule_ports:
        if p.get("protocol", "TCP") != "TCP":
            continue
        want = p.get("port")
        if want is None or want == port:
            return True
        if isinstance(want, str) and any(c.get("name") == want and c["containerPort"] == port for c in container_ports):
            return True
    return False


def ingress_allowed(
    policies: list[dict[str, Any]],
    pod_labels: dict[str, str],
    container_ports: list[dict[str, Any]],
    port: int,
    src_ns: dict[str, str],
    src_pod: dict[str, str],
) -> bool:
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == RELEASE_NAMESPACE
        and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
        and selects(p["spec"]["podSelector"], pod_labels)
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get("ingress") or []:
            peers = rule.get("from")
            peer_ok = not peers or any(peer_matches(pe, RELEASE_NAMESPACE, src_ns, src_pod) for pe in peers)
            if peer_ok and port_matches(rule.get("ports"), container_ports, port):
                return True
    return False


def vllm_scrape_target(docs: list[dict[str, Any]]) -> tuple[dict[str, str], list[dict[str, Any]], int]:
    """(pod labels, container ports, port number) the inference ServiceMonitor scrapes: its endpoint's Service
    port, that port's targetPort, the server container's port of that name."""
    (sm,) = [d for d in of_kind(docs, "ServiceMonitor") if d["metadata"]["name"].endswith("-inference")]
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    services = [s for s in of_kind(docs, "Service") if selects(sm["spec"]["selector"], s["metadata"]["labels"])]
    assert len(services) == 1, [s["metadata"]["name"] for s in services]
    (svc_port,) = [p for p in services[0]["spec"]["ports"] if p.get("name") == endpoint["port"]]
    deploy = named(docs, "Deployment", sm["metadata"]["name"])
    pod = deploy["spec"]["template"]
    assert selects({"matchLabels": services[0]["spec"]["selector"]}, pod["metadata"]["labels"])
    ports = [p for c in pod["spec"]["containers"] for p in c.get("ports", [])]
    target = svc_port["targetPort"]
    numbers = [p["containerPort"] for p in ports if p.get("name") == target or p["containerPort"] == target]
    assert len(numbers) == 1, (target, ports)
    return pod["metadata"]["labels"], ports, numbers[0]


MONITORING = {"kubernetes.io/metadata.name": "monitoring"}
PROMETHEUS_POD = {"app.kubernetes.io/name": "prometheus"}


@pytest.mark.parametrize("scenario", ["default", "7b+prod"])
def test_prometheus_in_the_monitoring_namespace_reaches_the_vllm_metrics_port(scenario: str) -> None:
    docs = render(scenario)
    policies = of_kind(docs, "NetworkPolicy")
    labels, ports, port = vllm_scrape_target(docs)
    # The release's default-deny policy selects the inference pod: without a rule for it, nothing gets in.
    assert selects(named(docs, "NetworkPolicy", "korean-llm-default-deny")["spec"]["podSelector"], labels)
    assert ingress_allowed(policies, labels, ports, port, MONITORING, PROMETHEUS_POD)
    # ... and the scrapers get that port only, not every port of the pod.
    assert not ingress_allowed(policies, labels, ports, port + 1, MONITORING, PROMETHEUS_POD)
    # Other namespaces stay out; clients of the release namespace keep the API port.
    assert not ingress_allowed(policies, labels, ports, port, {"kubernetes.io/metadata.name": "other"}, {})
    assert ingress_allowed(policies, labels, ports, port, {"kubernetes.io/metadata.name": RELEASE_NAMESPACE}, {})
    # Exactly one rule admits the scrape, and its port is the one the ServiceMonitor scrapes (by name or number).
    admitting = [
        (p["metadata"]["name"], rule)
        for p in policies
        if selects(p["spec"]["podSelector"], labels)
        for rule in p["spec"].get("ingress") or []
        if any(peer_matches(pe, RELEASE_NAMESPACE, MONITORING, PROMETHEUS_POD) for pe in rule.get("from", []))
        and port_matches(rule.get("ports"), ports, port)
    ]
    assert [name for name, _ in admitting] == ["korean-llm-inference-metrics"]
    (scraped,) = [p for p in ports if p["containerPort"] == port]
    assert [p["port"] for p in admitting[0][1]["ports"]] in ([scraped["name"]], [port])


def test_without_the_metrics_policy_the_scrape_is_refused() -> None:
    """The evaluator is strict enough to see the gap: the release's other policies alone (a `metrics` port rule
    for the training pods, the inference chart's same-namespace client rule) refuse the scrape."""
    docs = render("default")
    labels, ports, port = vllm_scrape_target(docs)
    others = [p for p in of_kind(docs, "NetworkPolicy") if p["metadata"]["name"] != "korean-llm-inference-metrics"]
    assert len(others) == len(of_kind(docs, "NetworkPolicy")) - 1
    assert not ingress_allowed(others, labels, ports, port, MONITORING, PROMETHEUS_POD)


def test_the_configured_metrics_selector_is_the_one_that_reaches_vllm() -> None:
    docs = render(
        "default",
        (
            "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.team=observability",
            "networkPolicy.metricsFrom[0].podSelector.matchLabels.app=prometheus",
        ),
    )
    policies = of_kind(docs, "NetworkPolicy")
    labels, ports, port = vllm_scrape_target(docs)
    observability = {"kubernetes.io/metadata.name": "obs", "team": "observability"}
    assert ingress_allowed(policies, labels, ports, port, observability, {"app": "prometheus"})
    assert not ingress_allowed(policies, labels, ports, port, observability, {"app": "grafana"})
    assert not ingress_allowed(policies, labels, ports, port, MONITORING, PROMETHEUS_POD)


def test_no_metrics_policy_without_inference_or_without_scrapers() -> None:
    for sets in (("inference.enabled=false",), ("networkPolicy.metricsFrom=null",)):
        names = {p["metadata"]["name"] for p in of_kind(render("default", sets), "NetworkPolicy")}
        assert "korean-llm-inference-metrics" not in names, sets
        assert "korean-llm-default-deny" in names


# --- 3. The GPU taint the guide applies, and the tolerations of a TrainJob written by hand -----------------------


def guide_gpu_taint() -> dict[str, str]:
    """The taint `kubectl taint nodes ... KEY=VALUE:EFFECT` of the guide's GPU Operator step."""
    (line,) = [ln for ln in GUIDE.splitlines() if ln.startswith("kubectl taint nodes")]
    (spec,) = [a for a in shlex.split(line) if re.fullmatch(r"[\w./-]+=[\w.-]*:\w+", a)]
    key, rest = spec.split("=", 1)
    value, effect = rest.split(":")
    return {"key": key, "value": value, "effect": effect}


def tolerates(tolerations: list[dict[str, Any]], taint: dict[str, str]) -> bool:
    """Toleration.ToleratesTaint (k8s.io/api core/v1 toleration.go): the effect empty or equal, the key empty
    (with Exists) or equal, and Exists or an equal value."""
    for t in tolerations or []:
        if t.get("effect") and t["effect"] != taint["effect"]:
            continue
        if t.get("key") and t["key"] != taint["key"]:
            continue
        op = t.get("operator", "Equal")
        if op == "Exists" or (op == "Equal" and t.get("value", "") == taint["value"]):
            return True
    return False


def guide_block(lang: str, containing: str) -> str:
    blocks = [b for b in re.findall(rf"```{lang}\n(.*?)```", GUIDE, flags=re.S) if containing in b]
    assert len(blocks) == 1, f"docs/cluster.md: expected one {lang} block with {containing!r}, found {len(blocks)}"
    return blocks[0]


def test_the_documented_trainjob_tolerates_the_gpu_taint_the_guide_applies() -> None:
    taint = guide_gpu_taint()
    assert taint == {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    example = yaml.safe_load(guide_block("yaml", "kind: TrainJob"))
    docs = render("7b", ("training.backend=trainjob",))
    pod = trainer_pod(example, docs)
    assert tolerates(pod.pod_spec.get("tolerations", []), taint), pod.pod_spec.get("tolerations")
    # The toleration comes from the runtime: the example patches nothing.
    assert not example["spec"].get("runtimePatches")
    assert not tolerates([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoExecute"}], taint)


def test_every_rendered_trainjob_pod_tolerates_the_gpu_taint() -> None:
    taint = guide_gpu_taint()
    for scenario in ("7b", "72b", "7b+prod"):
        docs = render(scenario, ("training.backend=trainjob",))
        jobs = [
            yaml.safe_load(t["resource"]["manifest"])
            for wt in of_kind(docs, "WorkflowTemplate")
            for t in wt["spec"]["templates"]
            if "resource" in t and "kind: TrainJob" in t["resource"].get("manifest", "")
        ]
        assert jobs, scenario
        for job in jobs:
            pod = trainer_pod(job, docs, name="x")
            assert tolerates(pod.pod_spec.get("tolerations", []), taint), (scenario, job["metadata"]["name"])


def test_a_stage_toleration_replaces_the_runtime_one_as_the_strategic_merge_does() -> None:
    """A stage's own `tolerations` replace the GPU tolerations (as on the PyTorchJob path): the runtime carries
    scheduling.gpuTolerations, the stage's runtimePatch its own list, and Trainer's strategic merge replaces the
    (patch-strategy-less) PodSpec tolerations."""
    custom = {"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoSchedule"}
    sets = (
        "training.backend=trainjob",
        "stageDefaults.sft.tolerations[0].key=dedicated",
        "stageDefaults.sft.tolerations[0].operator=Equal",
        "stageDefaults.sft.tolerations[0].value=llm",
        "stageDefaults.sft.tolerations[0].effect=NoSchedule",
    )
    docs = render("7b", sets)
    (wt,) = of_kind(docs, "WorkflowTemplate")
    (sft,) = [yaml.safe_load(t["resource"]["manifest"]) for t in wt["spec"]["templates"] if t["name"] == "sft"]
    assert trainer_pod(sft, docs, name="x").pod_spec["tolerations"] == [custom]


# --- 4. The walkthrough, read as the commands a platform engineer runs in order ---------------------------------


def guide_commands() -> list[list[str]]:
    """Every command of the guide's bash blocks, in order, continuation lines joined, as argument lists; the
    heredoc bodies (manifests) are left out."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", GUIDE, flags=re.S):
        text = re.sub(r"\\\n\s*", " ", block)
        lines, heredoc = [], None
        for line in text.splitlines():
            if heredoc is not None:
                if line.strip() == heredoc:
                    heredoc = None
                continue
            m = re.search(r"<<'?(\w+)'?", line)
            if m:
                heredoc = m.group(1)
            lines.append(line)
        pending = ""  # a quoted argument over several lines (a JSON patch) ends further down
        for line in lines:
            pending += line
            try:
                words = shlex.split(pending, comments=True)
            except ValueError:
                pending += "\n"
                continue
            pending = ""
            if words:
                out.append(words)
        assert not pending, f"docs/cluster.md: unclosed quote in {pending!r}"
    return out


def first_index(commands: list[list[str]], pred: Any, what: str) -> int:
    for i, c in enumerate(commands):
        if pred(c):
            return i
    raise AssertionError(f"docs/cluster.md: no command {what}")


def helm_args(cmd: list[str]) -> tuple[list[str], list[str]]:
    """The `-f` files and `--set` values of a `helm install|upgrade RELEASE ./charts ...` command."""
    files = [cmd[i + 1] for i, a in enumerate(cmd) if a == "-f"]
    sets = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--set"]
    return files, sets


def expand(arg: str, env: dict[str, str]) -> str:
    return re.sub(r"\$(\w+)", lambda m: env[m.group(1)], arg)


def test_the_release_namespace_exists_before_anything_is_put_in_it() -> None:
    commands = guide_commands()
    created = first_index(commands, lambda c: c[:4] == ["kubectl", "create", "namespace", "korean-llm"], "creating")
    used = first_index(commands, lambda c: "korean-llm" in c and ("-n" in c or "--namespace" in c), "using it")
    assert created < used
    # The LocalQueue (a manifest in a heredoc) comes after the namespace too.
    assert GUIDE.index("kubectl create namespace korean-llm") < GUIDE.index("kind: LocalQueue")
    assert GUIDE.count("kubectl create namespace korean-llm") == 1


def test_one_install_without_the_run_then_upgrades() -> None:
    commands = guide_commands()
    helm = [c for c in commands if c[:2] in (["helm", "install"], ["helm", "upgrade"]) and "./charts" in c]
    installs = [c for c in helm if c[1] == "install"]
    assert len(installs) == 1, installs
    (install,) = installs
    assert helm.index(install) == 0 and len(helm) >= 2, "the chart is installed once, then upgraded"
    files, sets = helm_args(install)
    assert "pipeline.run.enabled=false" in sets
    env = {"IMAGE": "registry.example.com/ml/korean-llm-runtime"}
    exported = [c for c in commands if c[:1] == ["export"] and c[1].startswith("IMAGE=")]
    assert exported and exported[0][1] == f"IMAGE={env['IMAGE']}"
    first = render_command(files, [expand(s, env) for s in sets])
    assert not of_kind(first, "Workflow") and not of_kind(first, "CronWorkflow")
    assert {d["metadata"]["name"] for d in of_kind(first, "PersistentVolumeClaim")} >= {"korean-llm-data"}
    # The image override and its pull Secret, created by the guide under the name the values use.
    pull = {s.split("=", 1)[1] for s in sets if s.startswith("imagePullSecrets[")}
    made = {c[c.index("docker-registry") + 1] for c in commands if "docker-registry" in c}
    assert pull and pull <= made, (pull, made)
    (upgrade,) = [c for c in helm if c[1] == "upgrade" and helm_args(c)[0] == files][:1]
    ufiles, usets = helm_args(upgrade)
    assert not any(s.startswith("pipeline.run.enabled") for s in usets)
    second = render_command(ufiles, [expand(s, env) for s in usets])
    (wf,) = of_kind(second, "Workflow")
    assert wf["metadata"]["name"] == "korean-llm-qwen7b-7b-r1" and "korean-llm-qwen7b-7b-r1" in GUIDE
    images = {
        c["image"]
        for wt in of_kind(second, "WorkflowTemplate")
        for t in wt["spec"]["templates"]
        if "container" in t
        for c in [t["container"]]
    }
    (rt,) = of_kind(second, "TrainingRuntime")
    images.add(
        rt["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]["containers"][0][
            "image"
        ]
    )
    default = yaml.safe_load((REPO / "charts" / "values.yaml").read_text(encoding="utf-8"))["image"]["repository"]
    assert f"{env['IMAGE']}:0.1.0" in images and not any(i.startswith(default) for i in images), images
    assert all(
        wt["spec"]["imagePullSecrets"] == [{"name": n} for n in sorted(pull)]
        for wt in of_kind(second, "WorkflowTemplate")
    )


def render_command(files: list[str], sets: list[str]) -> list[dict[str, Any]]:
    return load_all(helm_template([REPO / f for f in files], sets=sets))


def test_every_step_the_guide_refers_to_is_the_step_it_means() -> None:
    headings = {int(n): title for n, title in re.findall(r"^## (\d+)\. (.+)$", GUIDE, flags=re.M)}
    assert sorted(headings) == list(range(len(headings)))
    assert not re.search(r"\bsection \d", GUIDE), "steps are called steps"
    for n in re.findall(r"\bsteps? (\d+)\b", GUIDE):
        assert int(n) in headings, n
    # The Trainer section sends the reader to the steps that install and run the chart.
    (sentence,) = re.findall(r"Then install this chart as in steps? ([\d and]+);", GUIDE)
    refs = [int(n) for n in re.findall(r"\d+", sentence)]
    assert all("install" in headings[r].lower() or "run" in headings[r].lower() for r in refs), refs


def test_the_nfs_export_is_made_writable_by_the_pods_user() -> None:
    uid = yaml.safe_load((REPO / "charts" / "values.yaml").read_text(encoding="utf-8"))["podSecurity"]["runAsUser"]
    block = guide_block("bash", "/etc/exports")
    prod = yaml.safe_load((REPO / "values" / "prod.yaml").read_text(encoding="utf-8"))
    export = prod["storage"]["data"]["nfs"]["path"]
    root = export.rsplit("/", 1)[0]
    assert f"mkdir -p {export}" in block and f"chown -R {uid}:{uid} {root}" in block
    assert f"anonuid={uid},anongid={uid}" in block and "all_squash" in block
    assert "fsGroup" in GUIDE[GUIDE.index("writable by UID") - 200 : GUIDE.index("/etc/exports")]
    assert "touch /data/.write-test" in GUIDE


def test_the_tracking_server_prod_points_to_is_installed_by_the_guide() -> None:
    prod = yaml.safe_load((REPO / "values" / "prod.yaml").read_text(encoding="utf-8"))
    uri = prod["runtimeDefaults"]["tracking"]["mlflow_tracking_uri"]
    m = re.fullmatch(r"http://(\w[\w-]*)\.(\w[\w-]*)\.svc\.cluster\.local:(\d+)", uri)
    assert m, uri
    service, namespace, port = m.group(1), m.group(2), int(m.group(3))
    block = guide_block("bash", "ghcr.io/mlflow/mlflow")
    assert f"kubectl create namespace {namespace}" in block
    manifests = list(yaml.safe_load_all(block[block.index("<<'EOF'\n") + 8 : block.index("\nEOF")]))
    (svc,) = [d for d in manifests if d["kind"] == "Service"]
    (dep,) = [d for d in manifests if d["kind"] == "Deployment"]
    assert svc["metadata"]["name"] == service and [p["port"] for p in svc["spec"]["ports"]] == [port]
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    args = c["command"]
    assert args[args.index("--port") + 1] == str(port)
    assert f"{service}.{namespace}.svc.cluster.local:{port}" in args[args.index("--allowed-hosts") + 1].split(",")
    pinned = re.search(r'"mlflow-skinny==([\d.]+)"', (REPO / "pyproject.toml").read_text(encoding="utf-8"))[1]
    assert c["image"] == f"ghcr.io/mlflow/mlflow:v{pinned}"


def version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.lstrip("v").split("."))


def test_the_pinned_kueue_has_the_trainjob_integration_trainer_v2_3_needs() -> None:
    """Kueue's TrainJob integration writes runtimePatches (the Trainer v2.2+ API that v2.3 serves) from v0.17.0
    on (kubernetes-sigs/kueue pkg/controller/jobs/trainjob/trainjob_controller.go, runtimePatchManagerName);
    v0.14.0-v0.16.x wrote Trainer v2.0's podTemplateOverrides, which v2.3's TrainJob has no field for."""
    (url,) = re.findall(r"kubernetes-sigs/kueue/releases/download/(v[\d.]+)/manifests\.yaml", GUIDE)
    assert version(url) >= (0, 17, 0), url
    (row,) = [ln for ln in GUIDE.splitlines() if ln.startswith("| Kueue |")]
    assert url in row
    block = guide_block("bash", "kueue/releases/download")
    assert "trainer.kubeflow.org/trainjob" in block and "frameworks:" in block
    assert "rollout restart deploy/kueue-controller-manager" in block
    # The Kueue objects use an API version the pinned release serves.
    assert set(re.findall(r"apiVersion: kueue\.x-k8s\.io/(\w+)", block)) == {"v1beta2"}
