"""Readers for what ships to a cluster: docker/Dockerfile and the rendered kustomize overlays."""

import json
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from processes import REPO

DOCKERFILE = REPO / "docker" / "Dockerfile"
KUSTOMIZE = REPO / "kustomize"
KUBECTL = shutil.which("kubectl")

Manifest = dict[str, Any]


@dataclass
class Stage:
    """One FROM ... AS name stage: its instructions, continuation lines joined."""

    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for instruction, args in self.instructions if instruction == keyword]

    def last(self, keyword: str) -> str:
        return self.all(keyword)[-1]

    def exec_form(self, keyword: str) -> list[str]:
        """ENTRYPOINT or CMD, which this Dockerfile writes in JSON (exec) form only."""
        value: list[str] = json.loads(self.last(keyword))
        return value

    def copies(self) -> dict[str, str]:
        """COPY destination -> source (the last word is the destination)."""
        found = {}
        for args in self.all("COPY"):
            words = [word for word in shlex.split(args) if not word.startswith("--")]
            found[words[-1]] = words[0]
        return found

    def copied_from(self, stage: str) -> dict[str, str]:
        found = {}
        for args in self.all("COPY"):
            words = shlex.split(args)
            if f"--from={stage}" in words:
                found[words[-1]] = words[-2]
        return found


def dockerfile_lines(path: Path = DOCKERFILE) -> list[str]:
    """Instructions, continuation lines joined, comments and blank lines left out."""
    lines: list[str] = []
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if lines and lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1] + " " + stripped
        elif stripped and not stripped.startswith("#"):
            lines.append(stripped)
    return lines


def dockerfile_args(path: Path = DOCKERFILE) -> dict[str, str]:
    """The build arguments declared before the first FROM, with their defaults."""
    found = {}
    for line in dockerfile_lines(path):
        keyword, _, args = line.partition(" ")
        if keyword.upper() == "FROM":
            break
        if keyword.upper() == "ARG":
            name, _, default = args.partition("=")
            found[name] = default
    return found


def dockerfile_stages(path: Path = DOCKERFILE) -> dict[str, Stage]:
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in dockerfile_lines(path):
        keyword, _, args = line.partition(" ")
        if keyword.upper() == "FROM":
            current = stages.setdefault(args.split()[-1], Stage(args.split()[-1]))
        if current is not None:
            current.instructions.append((keyword.upper(), args.strip()))
    return stages


def render(overlay: str) -> list[Manifest]:
    assert KUBECTL is not None
    output = subprocess.run(
        [KUBECTL, "kustomize", str(KUSTOMIZE / overlay)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return [document for document in yaml.safe_load_all(output) if document]


def find(manifests: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    (match,) = [m for m in manifests if m["kind"] == kind and name in (None, m["metadata"]["name"])]
    return match


WORKLOADS = ("Deployment", "DaemonSet")


def pod_spec(manifests: list[Manifest]) -> Manifest:
    """The pod template of the one workload (a Deployment, or the preflight's DaemonSet)."""
    (workload,) = [m for m in manifests if m["kind"] in WORKLOADS]
    spec: Manifest = workload["spec"]["template"]["spec"]
    return spec


def all_containers(manifests: list[Manifest]) -> Iterator[Manifest]:
    spec = pod_spec(manifests)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def container(manifests: list[Manifest], name: str) -> Manifest:
    (match,) = [each for each in all_containers(manifests) if each["name"] == name]
    return match


def memory_limit_bytes(manifests: list[Manifest], name: str) -> int:
    """The memory limit of the container name, in bytes (the manifests write it in Mi)."""
    limit: str = container(manifests, name)["resources"]["limits"]["memory"]
    assert limit.endswith("Mi"), limit
    return int(limit.removesuffix("Mi")) * 2**20


def flag_value(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]
