"""The ports of one stack or pod, named for whose they are: gcd-server's, or Envoy's."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Ports:
    envoy: int  # REST and gRPC, through Envoy
    envoy_admin: int
    grpc: int  # gcd-server's gRPC
    envoy_metrics: int  # Envoy's statistics for Prometheus
    metrics: int  # gcd-server's metrics for Prometheus
