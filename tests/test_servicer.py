"""GCDServicer on its own, through grpc_testing: no network, no threads."""

import grpc
import grpc_testing
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gcd.v1 import gcd_pb2
from gcd_server.servicer import GCDServicer

UINT64_MAX = 2**64 - 1
COMPUTE = gcd_pb2.DESCRIPTOR.services_by_name["GCDService"].methods_by_name["Compute"]


def compute(a: int, b: int) -> int:
    server = grpc_testing.server_from_dictionary(
        {gcd_pb2.DESCRIPTOR.services_by_name["GCDService"]: GCDServicer()}, grpc_testing.strict_real_time()
    )
    rpc = server.invoke_unary_unary(COMPUTE, (), gcd_pb2.ComputeRequest(a=a, b=b), None)
    response, _metadata, code, _details = rpc.termination()
    assert code == grpc.StatusCode.OK
    result: int = response.result
    return result


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (12, 18, 6),
        (18, 12, 6),
        (0, 0, 0),
        (0, 7, 7),
        (7, 0, 7),
        (1, UINT64_MAX, 1),
        (UINT64_MAX, UINT64_MAX, UINT64_MAX),
        (UINT64_MAX, UINT64_MAX - 1, 1),
        (2**63, 2**62, 2**62),
        # Consecutive Fibonacci numbers: the most steps Euclid's algorithm takes under 2**64.
        (12200160415121876738, 7540113804746346429, 1),
    ],
)
def test_compute_examples(a: int, b: int, expected: int) -> None:
    assert compute(a, b) == expected


def euclid(a: int, b: int) -> int:
    """An independent reference: Euclid's algorithm, written out."""
    while b:
        a, b = b, a % b
    return a


@given(st.integers(0, UINT64_MAX), st.integers(0, UINT64_MAX))
def test_compute_matches_euclid_for_any_uint64_pair(a: int, b: int) -> None:
    result = compute(a, b)
    assert result == euclid(a, b)
    if result:
        assert a % result == 0 and b % result == 0
