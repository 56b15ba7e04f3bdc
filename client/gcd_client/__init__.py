"""Calling gcd-service from another service in the cluster, with every call spread over every
ready pod and new pods picked up within seconds:

    from gcd_client import connect

    with connect() as gcd:
        print(gcd.compute(12, 18))  # 6

A ClusterIP Service balances connections, not calls: a gRPC client keeps one HTTP/2 connection
to the Service's address, and kube-proxy sends all of it to one pod. This client resolves the
headless Service instead (kustomize/base/service.yaml), whose DNS name lists every ready pod,
and round_robin keeps a connection to each and takes turns among them per call. Every pod ends
its connections at 30 s (gcd_server/app.py), and each end makes the client resolve the name
again, so a scale-up or a rolling update reaches it within about that long.

Everything a client of another language needs is in this file too: SERVICE_CONFIG is the JSON
it takes as its default service config, TARGET the name to dial, DEADLINE_SECONDS each call's
deadline, KEEPALIVE_OPTIONS and DNS_OPTIONS the channel arguments (docs/deploy.md shows them for
other languages).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import grpc

from gcd.v1 import gcd_pb2, gcd_pb2_grpc

# The headless Service of the gRPC port, in the namespace the pi overlay deploys to.
HEADLESS_SERVICE = "gcd-grpc.gcd.svc.cluster.local"
PORT = 3000
TARGET = f"dns:///{HEADLESS_SERVICE}:{PORT}"

SERVICE_CONFIG: dict[str, Any] = {
    # One connection per pod the name lists, and calls in turn over the ready ones.
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [
        {
            "name": [{"service": "gcd.v1.GCDService"}],
            # UNAVAILABLE: the call reached no server, or one going away (a pod draining, or a
            # connection that reached its age); every RPC of GCDService is safe to repeat.
            "retryPolicy": {
                "maxAttempts": 3,
                "initialBackoff": "0.1s",
                "maxBackoff": "1s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
}

# A GCD takes microseconds; a call still unanswered after this is stuck on its way. Set on each
# call, not as the service config's "timeout": grpcio applies that one about a second early
# (grpc/grpc#34547, open; measured here with 1.85: a 2 s timeout expired after 0.76 s).
DEADLINE_SECONDS = 2.0

KEEPALIVE_OPTIONS: tuple[tuple[str, int], ...] = (
    # A ping every 20 s while calls are in flight, and a connection that answers none within 10 s
    # is dropped: a pod whose node vanished stops taking calls within 30 s. The server accepts a
    # ping every 10 s at most (gcd_server/app.py); pings without calls are not sent, since the
    # server closes a connection idle for 10 s anyway.
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 0),
)

# grpc resolves the name again when a connection ends, but by default not within 30 s of the
# last resolution; CoreDNS answers cluster names with a 5 s TTL by default (k3s keeps it;
# kubeadm's Corefile sets 30 s).
DNS_OPTIONS: tuple[tuple[str, int], ...] = (("grpc.dns_min_time_between_resolutions_ms", 5_000),)


class GCDClient:
    """A channel to gcd-service and its stub (whose calls need a deadline of their own); close it,
    or use it as a context manager."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.channel = channel
        self.stub = gcd_pb2_grpc.GCDServiceStub(channel)

    def compute(self, a: int, b: int, timeout: float = DEADLINE_SECONDS) -> int:
        """The greatest common divisor of a and b; ValueError (or TypeError) for an operand that
        is not a uint64, as protobuf refuses it; grpc.RpcError if the call fails."""
        response: gcd_pb2.ComputeResponse = self.stub.Compute(gcd_pb2.ComputeRequest(a=a, b=b), timeout=timeout)
        return response.result

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> GCDClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def connect(target: str = TARGET, options: Sequence[tuple[str, Any]] = ()) -> GCDClient:
    """A client of gcd-service at target (a dns: name lists the pods), with SERVICE_CONFIG,
    KEEPALIVE_OPTIONS and DNS_OPTIONS; options are added to the channel's (and win)."""
    # Of two channel arguments with one name, grpc takes the first.
    channel = grpc.insecure_channel(
        target,
        options=[*options, ("grpc.service_config", json.dumps(SERVICE_CONFIG)), *KEEPALIVE_OPTIONS, *DNS_OPTIONS],
    )
    return GCDClient(channel)
