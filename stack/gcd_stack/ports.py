"""The ports of one stack or pod, named for whose they are: gcd-server's, or Envoy's. (Envoy's
admin API has none: it listens on a unix socket.)"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Ports:
    envoy: int  # REST and gRPC, through Envoy
    grpc: int  # gcd-server's gRPC
    sidecar: int  # gcd-server's gRPC for Envoy and kubelet alone
    envoy_metrics: int  # Envoy's statistics for Prometheus
    envoy_probes: int  # Envoy's readiness path, for kubelet
    metrics: int  # gcd-server's metrics for Prometheus
