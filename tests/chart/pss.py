"""Pod Security Standards, profile "restricted", as the Kubernetes Pod Security admission checks a pod spec.

The checks of k8s.io/pod-security-admission (policy/check_*.go, level restricted, version latest; the rules are
listed at kubernetes.io/docs/concepts/security/pod-security-standards): the baseline ones that matter for pod specs
(privileged, host namespaces, hostPath, host ports, added capabilities, seccomp not Unconfined, /proc mount)
plus the restricted ones (volume types; allowPrivilegeEscalation false, capabilities drop ALL with only
NET_BIND_SERVICE added, runAsNonRoot and seccomp RuntimeDefault/Localhost on the pod or every container, no
runAsUser 0). Init and ephemeral containers are checked like the others.
"""

from __future__ import annotations

from typing import Any

RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def violations(spec: dict[str, Any]) -> list[str]:
    """Every "restricted" rule a pod spec breaks, as `container: rule` strings (empty: admitted)."""
    out: list[str] = []
    psc = spec.get("securityContext") or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            out.append(f"pod: {key}")
    for vol in spec.get("volumes", []) or []:
        kinds = set(vol) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            out.append(f"pod: volume {vol['name']} of type {sorted(kinds - RESTRICTED_VOLUMES)}")
    if psc.get("runAsUser") == 0:
        out.append("pod: runAsUser 0")
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    if pod_seccomp == "Unconfined":
        out.append("pod: seccompProfile Unconfined")
    containers = [
        *(("initContainer " + c["name"], c) for c in spec.get("initContainers", []) or []),
        *(("container " + c["name"], c) for c in spec.get("containers", []) or []),
        *(("ephemeralContainer " + c["name"], c) for c in spec.get("ephemeralContainers", []) or []),
    ]
    for name, c in containers:
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            out.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation is not false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{name}: capabilities.drop lacks ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            out.append(f"{name}: capabilities.add {sorted(set(caps['add']) - {'NET_BIND_SERVICE'})}")
        non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        if non_root is not True:
            out.append(f"{name}: runAsNonRoot not true (container or pod)")
        if sc.get("runAsUser") == 0:
            out.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{name}: seccompProfile {seccomp or 'unset'} (container or pod)")
        if sc.get("procMount") not in (None, "Default"):
            out.append(f"{name}: procMount {sc['procMount']}")
        for port in c.get("ports", []) or []:
            if port.get("hostPort"):
                out.append(f"{name}: hostPort {port['hostPort']}")
    return out
