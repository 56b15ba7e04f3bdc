"""The API grows by editing the proto and the servicer alone, as README's "Changing the API"
says. A scratch RPC, Lcm at GET /lcm/{a}/{b}, is added to copies of proto/ and of the servicer
module; the build compiles them as it compiles proto/, and a real gcd-server runs the copy behind
Envoy with the pod's config, unchanged but for the descriptor set and the OpenAPI document the
build made. Every face of the API then serves the new RPC: REST, HEAD, 405, CORS, native gRPC,
gRPC-Web, reflection, OpenAPI, /docs and the metrics the dashboard and alerts read."""

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pool, json_format, message, message_factory
from google.protobuf.descriptor_pb2 import FileDescriptorSet

from gcd.v1 import gcd_pb2, gcd_pb2_grpc
from gcd_server.app import SERVICE_NAME
from gcd_stack.envoy_config import CORS_ORIGINS_VARIABLE, LOOPBACK, TRANSCODER, file_routes, http_filter
from gcd_stack.ports import Ports
from gcd_stack.processes import envoy_command, health_url, server_command, server_is_serving, url_answers_ok
from gcd_testing.grpc_frame import GRPC_WEB_TRAILER_FLAG, grpc_frame, grpc_web_frames, grpc_web_trailers
from gcd_testing.ports import free_port, free_ports

import go_original
from build_files import BUILD, ERRORS, build_api, edited_api
from clients import (
    grpc_web_headers,
    handled,
    http_request,
    http_request_bytes,
    preflight_headers,
    raw_exchange,
    scrape,
)
from processes import REPO, SCRIPTS, local_envoy_config, running, wait_for_start

ALLOWED = "https://lcm.example"
UINT64_MAX = 2**64 - 1
# What a forking user writes: the RPC and its messages in the proto...
SCRATCH_RPC = """
  // Returns lcm(a, b), the least common multiple. lcm(0, b) is 0; a result over 2^64 - 1 is
  // OUT_OF_RANGE.
  rpc Lcm(LcmRequest) returns (LcmResponse) {
    option (google.api.http) = {get: "/lcm/{a}/{b}"};
  }
"""
SCRATCH_MESSAGES = """
// The two numbers of an Lcm call.
message LcmRequest {
  // The first number.
  uint64 a = 1;
  // The second number.
  uint64 b = 2;
}

// The answer to an Lcm call.
message LcmResponse {
  // lcm(a, b).
  uint64 result = 1;
}
"""
# ... and its method in the servicer.
SCRATCH_METHOD = """
    def Lcm(self, request: gcd_pb2.LcmRequest, context: grpc.ServicerContext) -> gcd_pb2.LcmResponse:  # noqa: N802
        result = math.lcm(request.a, request.b)
        if result >= 2**64:
            context.abort(grpc.StatusCode.OUT_OF_RANGE, "lcm(a, b) is over 2^64 - 1")
        return gcd_pb2.LcmResponse(result=result)
"""
LCM = f"/{SERVICE_NAME}/Lcm"


@dataclass(frozen=True)
class Grown:
    ports: Ports
    proto_dir: Path
    built: Path
    request: type[message.Message]
    response: type[message.Message]


def grow(root: Path) -> tuple[Path, Path, Path]:
    """The copies, edited as a user would, and built: the proto, the build's output and the
    server's code."""
    proto_dir = edited_api(
        root,
        lambda text: text.replace("service GCDService {\n", "service GCDService {" + SCRATCH_RPC) + SCRATCH_MESSAGES,
    )
    code = root / "code"
    shutil.copytree(REPO / "server" / "gcd_server", code / "gcd_server")
    servicer = code / "gcd_server" / "servicer.py"
    servicer.write_text(servicer.read_text() + SCRATCH_METHOD)
    built = root / "built"
    build_api(proto_dir, built)
    return proto_dir, built, code


def message_classes(descriptor_set: Path) -> tuple[type[message.Message], type[message.Message]]:
    """Lcm's messages, from the grown descriptor set, in a pool apart from the installed API's."""
    pool = descriptor_pool.DescriptorPool()
    for file in FileDescriptorSet.FromString(descriptor_set.read_bytes()).file:
        pool.Add(file)
    return tuple(  # type: ignore[return-value]
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"gcd.v1.{name}"))
        for name in ("LcmRequest", "LcmResponse")
    )


@pytest.fixture(scope="module")
def grown(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Grown]:
    root = tmp_path_factory.mktemp("grown")
    proto_dir, built, code = grow(root)
    ports = free_ports()
    config = local_envoy_config(ports)
    http_filter(config, TRANSCODER)["proto_descriptor"] = str(built / BUILD.DESCRIPTOR_SET)
    file_routes(config)["/openapi.json"]["direct_response"]["body"]["filename"] = str(built / BUILD.OPENAPI)
    config_path = root / "envoy.yaml"
    config_path.write_text(json.dumps(config))
    server_env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(built), str(code)))}
    envoy_env = {**os.environ, CORS_ORIGINS_VARIABLE: ALLOWED}
    server = server_command(ports.grpc, ports.metrics, sidecar_port=ports.sidecar)
    with running(server, root, "server", server_env) as server_process:
        wait_for_start(server_process, lambda: server_is_serving(ports.grpc), root, "server")
        with running(envoy_command(config_path), root, "envoy", envoy_env) as envoy:
            # Ready: Envoy's health check has seen the grown server serving.
            wait_for_start(envoy, lambda: url_answers_ok(health_url(ports)), root, "envoy")
            yield Grown(ports, proto_dir, built, *message_classes(built / BUILD.DESCRIPTOR_SET))


def test_rest_answers_the_new_rpc(grown: Grown) -> None:
    assert http_request(grown.ports.envoy, "/lcm/4/6").json() == {"result": "12"}
    # The servicer's own error, as the transcoder maps it (proto/errors.py): a client's 400.
    refused = http_request(grown.ports.envoy, f"/lcm/{UINT64_MAX}/{UINT64_MAX - 1}")
    out_of_range = grpc.StatusCode.OUT_OF_RANGE
    expected = (ERRORS.TRANSCODED_STATUS[out_of_range], ERRORS.code_number(out_of_range))
    assert (refused.status, refused.json()["code"]) == expected == (400, 11), refused
    assert http_request(grown.ports.envoy, "/lcm/abc/6").json()["code"] == 3


def test_head_answers_as_get_without_the_body(grown: Grown) -> None:
    answered = raw_exchange(grown.ports.envoy, http_request_bytes("HEAD", "/lcm/4/6", {"connection": "close"}))
    head, _, body = answered.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"content-length: 15" in head.lower() and body == b"", answered


def test_other_methods_get_405_with_allow(grown: Grown) -> None:
    refused = http_request(grown.ports.envoy, "/lcm/4/6", "POST")
    assert (refused.status, refused.headers["allow"], refused.json()["code"]) == (405, "GET, HEAD", 12)


def test_a_page_of_an_allowed_origin_may_call_it(grown: Grown) -> None:
    asked = http_request(grown.ports.envoy, "/lcm/4/6", "OPTIONS", headers=preflight_headers(ALLOWED))
    assert asked.headers["access-control-allow-origin"] == ALLOWED
    called = http_request(grown.ports.envoy, "/lcm/4/6", headers={"origin": ALLOWED})
    assert called.headers["access-control-allow-origin"] == ALLOWED and called.json() == {"result": "12"}


@pytest.mark.parametrize("port", ["envoy", "grpc"])
def test_native_grpc_answers_the_new_rpc(grown: Grown, port: str) -> None:
    with grpc.insecure_channel(f"{LOOPBACK}:{getattr(grown.ports, port)}") as channel:
        lcm: grpc.UnaryUnaryMultiCallable[message.Message, message.Message] = channel.unary_unary(
            LCM, request_serializer=grown.request.SerializeToString, response_deserializer=grown.response.FromString
        )
        assert json_format.MessageToDict(lcm(grown.request(a=4, b=6), timeout=5)) == {"result": "12"}
        with pytest.raises(grpc.RpcError) as refused:
            lcm(grown.request(a=UINT64_MAX, b=UINT64_MAX - 1), timeout=5)
        assert refused.value.code() == grpc.StatusCode.OUT_OF_RANGE


def test_grpc_web_answers_the_new_rpc(grown: Grown) -> None:
    body = grpc_frame(grown.request(a=4, b=6).SerializeToString())
    reply = http_request(grown.ports.envoy, LCM, "POST", headers=grpc_web_headers(), body=body)
    (_, answer), (flag, trailers) = grpc_web_frames(reply.body)
    assert json_format.MessageToDict(grown.response.FromString(answer)) == {"result": "12"}
    assert flag == GRPC_WEB_TRAILER_FLAG and grpc_web_trailers(trailers)["grpc-status"] == "0"


@pytest.mark.parametrize("port", ["envoy", "grpc"])
def test_reflection_describes_the_new_rpc(grown: Grown, port: str) -> None:
    described = subprocess.run(
        [str(SCRIPTS / "grpcurl"), "-plaintext", f"{LOOPBACK}:{getattr(grown.ports, port)}", "describe", SERVICE_NAME],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "rpc Lcm ( .gcd.v1.LcmRequest ) returns ( .gcd.v1.LcmResponse )" in described.stdout, described


def test_openapi_and_the_docs_page_describe_the_new_rpc(grown: Grown) -> None:
    document = http_request(grown.ports.envoy, "/openapi.json").json()
    operations = document["paths"]["/lcm/{a}/{b}"]
    assert set(operations) == {"get", "head"}
    assert operations["get"]["summary"] == "Returns lcm(a, b), the least common multiple."
    assert "OUT_OF_RANGE" in operations["get"]["description"]
    assert [parameter["description"] for parameter in operations["get"]["parameters"]] == [
        "The first number.",
        "The second number.",
    ]
    # Envoy's errors, and the one the RPC's comment names, under the status the client gets.
    assert set(operations["get"]["responses"]) == {"200", *ERRORS.openapi_descriptions()}
    assert operations["get"]["responses"]["400"]["description"].endswith("; or the RPC's OUT_OF_RANGE (code 11)")
    assert http_request(grown.ports.envoy, "/docs").status == 200


def test_the_metrics_count_the_new_rpc_and_only_server_faults_page(grown: Grown) -> None:
    http_request(grown.ports.envoy, "/lcm/4/6")
    http_request(grown.ports.envoy, f"/lcm/{UINT64_MAX}/{UINT64_MAX - 1}")
    samples = scrape(grown.ports.metrics, "/metrics")
    assert handled(samples, "Lcm", "OK") >= 1 and handled(samples, "Lcm", "OUT_OF_RANGE") >= 1
    # The alert counts the codes of proto/errors.py's SERVER_FAULTS: a client's overflow does not page.
    assert grpc.StatusCode.OUT_OF_RANGE not in ERRORS.SERVER_FAULTS


@pytest.mark.skipif(go_original.missing() is not None, reason=f"the benchmark's Go arms: {go_original.missing()}")
def test_the_benchmarks_go_server_builds_from_the_grown_proto(grown: Grown, tmp_path: Path) -> None:
    """It embeds the generated Unimplemented server: the new RPC is UNIMPLEMENTED there, and
    Compute is served as before."""
    binaries = go_original.build(tmp_path, grown.proto_dir)
    port = free_port()
    with running([str(binaries.server), "-listen", f"{LOOPBACK}:{port}"], tmp_path, "go-server") as server:
        wait_for_start(server, lambda: server_is_serving(port), tmp_path, "go-server")
        with grpc.insecure_channel(f"{LOOPBACK}:{port}") as channel:
            assert (
                gcd_pb2_grpc.GCDServiceStub(channel).Compute(gcd_pb2.ComputeRequest(a=12, b=18), timeout=5).result == 6
            )
            lcm = channel.unary_unary(LCM, grown.request.SerializeToString, grown.response.FromString)
            with pytest.raises(grpc.RpcError) as refused:
                lcm(grown.request(a=4, b=6), timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
