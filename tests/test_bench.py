"""The benchmark's short mode, as a smoke test: every arm starts, is gated on right answers, and
the report is written (the full benchmark is tox -e bench); and the Go original's arms serve the
same RPC as gcd-server."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

from gcd.v1 import gcd_pb2

from processes import REPO

TOOLS = ("h2load", "wrk", "taskset")


@pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in TOOLS), reason="needs h2load and wrk: apt-get install nghttp2-client wrk"
)
@pytest.mark.timeout(300)
def test_the_short_benchmark_finishes_with_a_report(tmp_path: Path) -> None:
    command = [sys.executable, str(REPO / "bench" / "run.py"), "--rounds", "1", "--seconds", "1"]
    result = subprocess.run([*command, "--output-dir", str(tmp_path)], capture_output=True, text=True, timeout=280)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = (tmp_path / "results.md").read_text()
    for arm in ("grpc-direct", "rest-envoy", "grpc-envoy", "rest-gateway"):
        assert f"| {arm} |" in report
    # The Go original's arms run where Debian's Go packages are installed, as .ci/run does.
    go_ran = "| go-grpc-direct |" in report and "| rest-gin |" in report
    assert go_ran or "The Go original's arms did not run: missing" in report
    assert (tmp_path / "results.png").stat().st_size > 0


def test_the_go_arms_serve_the_same_rpc_on_the_wire(tmp_path: Path) -> None:
    """bench/go's copy of the API, without the HTTP annotations Debian's Go packages cannot
    compile, has the same package, service, method and fields as proto/'s."""
    described = tmp_path / "go.pb"
    go_proto = REPO / "bench" / "go" / "gcdpb"
    assert protoc.main(["protoc", f"-I{go_proto}", f"--descriptor_set_out={described}", "gcd.proto"]) == 0
    (go_file,) = descriptor_pb2.FileDescriptorSet.FromString(described.read_bytes()).file
    ours = descriptor_pb2.FileDescriptorProto.FromString(gcd_pb2.DESCRIPTOR.serialized_pb)

    def shape(file: descriptor_pb2.FileDescriptorProto) -> object:
        methods = [(m.name, m.input_type, m.output_type) for s in file.service for m in s.method]
        fields = {m.name: [(f.name, f.number, f.type) for f in m.field] for m in file.message_type}
        return file.package, [s.name for s in file.service], methods, fields

    assert shape(go_file) == shape(ours)
