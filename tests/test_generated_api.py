"""The installed API code and descriptor set are what proto/ compiles to today, and nothing generated is committed."""

import json
import subprocess
from importlib.metadata import distribution
from pathlib import Path

import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from gcd.v1 import gcd_pb2
from gcd_server.app import VERSION
from gcd_stack.envoy_config import descriptor_set_path, openapi_path

from build_files import BUILD, build_api, edited_api
from processes import REPO


@pytest.fixture(scope="module")
def fresh_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the build makes of proto/ as it is now."""
    out_dir = tmp_path_factory.mktemp("generated")
    BUILD.compile_api(out_dir, VERSION)
    return out_dir


def read_set(path: Path) -> descriptor_pb2.FileDescriptorSet:
    return descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())


def test_installed_descriptor_set_matches_proto_dir(fresh_build: Path) -> None:
    assert read_set(descriptor_set_path()) == read_set(fresh_build / BUILD.DESCRIPTOR_SET), "installed API is stale"


def test_installed_module_matches_proto_dir(fresh_build: Path) -> None:
    fresh = next(f for f in read_set(fresh_build / BUILD.DESCRIPTOR_SET).file if f.name == "gcd/v1/gcd.proto")
    # protoc writes json_name and the comments into descriptor sets only, not into the modules.
    fresh.ClearField("source_code_info")
    for message in fresh.message_type:
        for field in message.field:
            field.ClearField("json_name")
    assert descriptor_pb2.FileDescriptorProto.FromString(gcd_pb2.DESCRIPTOR.serialized_pb) == fresh


def test_descriptor_set_carries_what_envoy_needs() -> None:
    files = {f.name: f for f in read_set(descriptor_set_path()).file}
    assert {"google/api/http.proto", "google/api/annotations.proto", "gcd/v1/gcd.proto"} <= files.keys()
    methods = {method.name: method for service in files["gcd/v1/gcd.proto"].service for method in service.method}
    rule = methods["Compute"].options.Extensions[annotations_pb2.http]
    assert (rule.get, rule.body) == ("/gcd/{a}/{b}", "")


def test_no_generated_code_is_committed() -> None:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    generated = [name for name in tracked.splitlines() if name.endswith((".pb", "_pb2.py", "_pb2.pyi", "_pb2_grpc.py"))]
    assert generated == []


def test_installed_openapi_matches_proto_dir(fresh_build: Path) -> None:
    assert json.loads(openapi_path().read_text()) == json.loads((fresh_build / BUILD.OPENAPI).read_text())


def test_openapi_describes_every_annotated_method() -> None:
    spec = json.loads(openapi_path().read_text())
    operation = spec["paths"]["/gcd/{a}/{b}"]["get"]
    assert [(p["name"], p["in"], p["schema"]["format"]) for p in operation["parameters"]] == [
        ("a", "path", "uint64"),
        ("b", "path", "uint64"),
    ]
    # The proto's comments: the RPC's first sentence as the summary, the fields' as descriptions.
    assert operation["summary"] == "Returns gcd(a, b)."
    assert operation["description"].startswith("Returns gcd(a, b). gcd(0, 0) is 0;")
    assert operation["description"].endswith("gRPC: `gcd.v1.GCDService/Compute`.")
    assert [p["description"] for p in operation["parameters"]] == [
        "The first number; any uint64 value.",
        "The second number; any uint64 value.",
    ]
    result = spec["components"]["schemas"]["gcd.v1.ComputeResponse"]["properties"]["result"]
    assert result["type"] == "string" and result["format"] == "uint64"
    assert {"200", "400", "404", "429", "503"} <= operation["responses"].keys()
    assert spec["info"]["version"] == VERSION


def test_the_installed_package_carries_its_licence_and_notice() -> None:
    # The distribution's own licence files, not Swagger UI's, which the /docs page carries too.
    files = {
        Path(str(file)).name: file for file in distribution("gcd-service").files or [] if ".dist-info" in str(file)
    }
    for name in ("LICENSE", "NOTICE"):
        assert files[name].read_text() == (REPO / name).read_text()
    assert distribution("gcd-service").metadata["License-Expression"] == "Apache-2.0"


def test_a_binding_the_openapi_generator_cannot_describe_stops_the_build(tmp_path: Path) -> None:
    """The next RPC with a body must not ship with a wrong or missing OpenAPI description."""
    with_body = """
  rpc Submit(ComputeRequest) returns (ComputeResponse) {
    option (google.api.http) = {post: "/gcd", body: "*"};
  }
"""
    proto_dir = edited_api(
        tmp_path, lambda text: text.replace("service GCDService {\n", "service GCDService {" + with_body)
    )
    refused = r'gcd\.v1\.GCDService/Submit: a post binding .*; a request body \(body: "\*"\)'
    with pytest.raises(ValueError, match=refused):
        build_api(proto_dir, tmp_path / "out")
