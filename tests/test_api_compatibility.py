"""The API keeps its promises to existing clients: buf lints the descriptor set the build made
from proto/, and compares it with the last release's (proto/released.binpb, recorded by
`python3 -m tox -e api-release`). buf runs in the repository, so that buf.yaml's rules apply."""

import shutil
import subprocess
from pathlib import Path

import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from gcd_stack.envoy_config import descriptor_set_path

from build_files import BUILD, build_api, edited_api
from processes import REPO

BUF = shutil.which("buf")
needs_buf = pytest.mark.skipif(BUF is None, reason="needs buf: npm install --global @bufbuild/buf (.ci/run does)")
RELEASED = REPO / "proto" / "released.binpb"
# What buf breaking exits with when it finds a breaking change.
BREAKING = 100


def buf(*args: str) -> subprocess.CompletedProcess[str]:
    assert BUF is not None
    return subprocess.run([BUF, *args], cwd=REPO, capture_output=True, text=True, timeout=60)


def image(descriptor_set: Path) -> str:
    """buf's name for a descriptor set (an image, to buf)."""
    return f"{descriptor_set}#format=binpb"


@needs_buf
def test_buf_lint_passes_the_api() -> None:
    # Only the API's own file: the imported google/ files follow rules of their own.
    linted = buf("lint", image(descriptor_set_path()), "--path", BUILD.API_PROTO)
    assert linted.returncode == 0, f"{BUILD.API_PROTO}: {linted.stdout}{linted.stderr}"


@needs_buf
def test_the_api_breaks_nothing_of_its_last_release() -> None:
    compared = buf("breaking", image(descriptor_set_path()), "--against", image(RELEASED))
    assert compared.returncode == 0, f"{BUILD.API_PROTO} breaks clients of the release: {compared.stdout}"


@needs_buf
@pytest.mark.parametrize(
    ("change", "edit", "said"),
    [
        ("a field renumbered", ("uint64 b = 2;", "uint64 b = 3;"), 'Previously present field "2" with name "b"'),
        ("a field renamed", ("uint64 result = 1;", "uint64 value = 1;"), 'changed name from "result" to "value"'),
        ("an RPC renamed", ("rpc Compute(", "rpc Gcd("), 'Previously present RPC "Compute"'),
    ],
)
def test_a_breaking_change_to_the_api_is_caught(tmp_path: Path, change: str, edit: tuple[str, str], said: str) -> None:
    def changed(text: str) -> str:
        assert edit[0] in text, f"{BUILD.API_PROTO} no longer has {edit[0]!r}: choose another edit"
        return text.replace(*edit)

    build_api(edited_api(tmp_path, changed), tmp_path / "built")
    compared = buf("breaking", image(tmp_path / "built" / BUILD.DESCRIPTOR_SET), "--against", image(RELEASED))
    assert compared.returncode == BREAKING, f"{change}: {compared.stdout}{compared.stderr}"
    assert said in compared.stdout, compared.stdout


def rest_operations(descriptor_set: Path) -> set[tuple[str, str, str]]:
    """Every (RPC, HTTP method, path template) the API's own files bind: Envoy answers HEAD
    for every GET binding."""
    operations = set()
    for file in descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes()).file:
        if not file.package.startswith("gcd."):
            continue
        for service in file.service:
            for method in service.method:
                primary = method.options.Extensions[annotations_pb2.http]
                for rule in (primary, *primary.additional_bindings):
                    name = f"{file.package}.{service.name}/{method.name}"
                    if rule.WhichOneof("pattern") == "custom":
                        operations.add((name, rule.custom.kind, rule.custom.path))
                    elif rule.WhichOneof("pattern") == "get":
                        operations |= {(name, "GET", rule.get), (name, "HEAD", rule.get)}
    return operations


def test_every_rest_call_of_the_last_release_is_still_served() -> None:
    """buf breaking reads no google.api.http option, and a REST client depends on its path."""
    missing = rest_operations(RELEASED) - rest_operations(descriptor_set_path())
    assert not missing, f"{BUILD.API_PROTO}: no longer bound, though released: {sorted(missing)}"
