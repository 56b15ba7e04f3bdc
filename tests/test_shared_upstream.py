"""Envoy carries every client's calls to gcd-server over one shared HTTP/2 connection, so what
one client sends must not fail another's calls. gRPC metadata that the server's gRPC core
parses (grpc-timeout, grpc-encoding, grpc-previous-rpc-attempts), with a value it cannot parse,
once failed every later call of every client on that connection, until it was replaced. Such a
request is now refused at Envoy with a 400 of its own, and the other clients' calls go on."""

from collections import Counter
from pathlib import Path

import grpc
import pytest

from gcd.v1 import gcd_pb2, gcd_pb2_grpc
from gcd_stack.envoy_config import LOOPBACK

from clients import assert_rest_reply, http_request
from processes import running_stack

pytestmark = pytest.mark.faults
VICTIM_CALLS = 10


def victims(port: int) -> Counter[str]:
    """Calls as other gRPC clients make them, each on a new connection to Envoy, with deadlines
    that differ (grpc-timeout values Envoy has not sent before)."""
    outcomes: Counter[str] = Counter()
    for call in range(VICTIM_CALLS):
        with grpc.insecure_channel(f"{LOOPBACK}:{port}", options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            try:
                stub = gcd_pb2_grpc.GCDServiceStub(channel)
                stub.Compute(gcd_pb2.ComputeRequest(a=12, b=18), timeout=2 + call * 0.0137)
                outcomes["OK"] += 1
            except grpc.RpcError as error:
                outcomes[f"{error.code().name}: {error.details()}"] += 1
    return outcomes


@pytest.mark.parametrize(
    ("name", "value"), [("grpc-timeout", "abc"), ("grpc-encoding", "zzz"), ("grpc-previous-rpc-attempts", "x")]
)
def test_malformed_grpc_metadata_fails_no_other_clients_call(tmp_path: Path, name: str, value: str) -> None:
    with running_stack(tmp_path) as (ports, _):
        before = victims(ports.envoy)
        reply = http_request(ports.envoy, "/gcd/12/18", headers={name: value})
        after = victims(ports.envoy)
    assert before == {"OK": VICTIM_CALLS}
    assert reply.status == 400
    assert_rest_reply(reply)
    assert reply.json()["code"] == 3
    assert after == {"OK": VICTIM_CALLS}, after
