"""A scale-up of the pi Deployment, from its replicas to twice as many (as kubectl scale or the
autoscaled overlay's HPA does), under clients that keep their connections: one process using
gcd_client through the headless Service, separate processes each with one channel to the
ClusterIP Service's gRPC port, and keep-alive REST and gRPC clients through the NodePort
(tests/cluster.py has the stand-ins). No client is told of the new pods: only the age limits of
gcd-server's and Envoy's connections move them. After a settling time bounded by those limits,
every pod gets its share, and no call fails."""

from pathlib import Path

import pytest

from cluster import Cluster
from deployment import KUBECTL, render
from figures import record_figure
from long_lived_clients import check_spread, every_kind, settle_then_count, wait_for_every_kind
from pods import PodTemplate

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(KUBECTL is None, reason="kubectl with built-in kustomize is not installed"),
]


def test_a_scale_up_reaches_every_kind_of_long_lived_client(tmp_path: Path) -> None:
    template = PodTemplate.of(render("pi"))
    with Cluster(template, tmp_path) as cluster:
        old = [cluster.add_pod(at_once=True) for _ in range(template.replicas)]
        with every_kind(cluster) as outcomes:
            wait_for_every_kind(cluster, old)
            new = [cluster.add_pod() for _ in range(template.replicas)]
            window = settle_then_count(cluster, old + new)
            first_requests = [cluster.seconds_to_first_request(pod) for pod in new]

    event = f"scale-up {len(old)} -> {len(old + new)} pods"
    failed = {way: {kind: n for kind, n in counts.items() if "failed" in kind} for way, counts in outcomes.items()}
    for way in window:
        slowest = max(first[way] or float("inf") for first in first_requests)
        record_figure(
            f"{event}, {way} clients: the last new pod's first call after its listing (s); calls, failed",
            f"{slowest:.1f}; {sum(outcomes[way].values())}, {sum(failed[way].values())}",
        )
    assert not any(failed.values()), failed
    check_spread(event, window, new)
