"""A rolling update of the pi Deployment under steady load from every kind of long-lived client,
with every replica replaced, simulated here as faithfully as one machine allows:

- the pods are the pi overlay's (tests/pods.py: each image's entrypoint with the manifest's args
  and env, the sidecar first up and last down, preStop before SIGTERM);
- the Services are stand-ins (tests/cluster.py): kube-proxy for the NodePort and the ClusterIP
  Service, sending new connections to ready endpoints only while established ones stay on their
  pod, and DNS for the headless Service;
- the order is the Deployment controller's for maxSurge 1, maxUnavailable 0: a new pod is added
  to the endpoints once Ready; only then is an old pod deleted, which takes it out of the
  endpoints as its preStop starts (the EndpointSlice controller and kubelet both act on the
  deletion); the next new pod is created at once, since a terminating pod no longer counts.

Clients are not told of any of it: they keep their connections until the pods close them. No
call fails, each old pod drains to no client before it stops, and once the connections made
during the rollout have aged out the new pods share the load as after a scale-up."""

import re
import time
from pathlib import Path

import pytest

from gcd_stack.processes import ENVOY_DRAIN_SECONDS

from cluster import Cluster
from deployment import KUBECTL, find, render
from figures import record_figure
from long_lived_clients import check_spread, every_kind, settle_then_count, wait_for_every_kind
from pods import PodTemplate
from processes import messages

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(KUBECTL is None, reason="kubectl with built-in kustomize is not installed"),
]


def drain_record(server_log: Path, pattern: str) -> str:
    """How long one of a server's drains took, as the log line pattern matches it (the seconds,
    then the connections left), if it ended with no client connection left."""
    (found,) = [found for message in messages(server_log) if (found := re.fullmatch(pattern, message))]
    assert found[2] == "0", found[0]
    seconds: str = found[1]
    return seconds


def test_a_rolling_update_of_every_replica_fails_no_call_and_leaves_the_load_spread(tmp_path: Path) -> None:
    manifests = render("pi")
    template = PodTemplate.of(manifests)
    assert find(manifests, "Deployment")["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}

    with Cluster(template, tmp_path) as cluster:
        old_pods = [cluster.add_pod(at_once=True) for _ in range(template.replicas)]
        with every_kind(cluster) as outcomes:
            wait_for_every_kind(cluster, old_pods)
            started = time.monotonic()
            for old in old_pods:
                cluster.add_pod()
                cluster.delete_pod(old)
            cluster.wait_for_deletions()
            rollout_seconds = time.monotonic() - started
            new_pods = list(cluster.ready)
            window = settle_then_count(cluster, new_pods)

    sent = {way: sum(counts.values()) for way, counts in outcomes.items()}
    failed = {way: {kind: n for kind, n in counts.items() if "failed" in kind} for way, counts in outcomes.items()}
    failures = sum(sum(kinds.values()) for kinds in failed.values())
    record_figure(
        f"rolling update of {template.replicas} replicas under load: calls headless / ClusterIP / NodePort, failed",
        f"{sent['headless']} / {sent['ClusterIP']} / {sent['NodePort']}, {failures}",
    )
    record_figure("rolling update under load: rollout took (s)", f"{rollout_seconds:.1f}")
    assert not any(failed.values()), failed
    # Each old server stopped because its clients had all gone, not because time ran out: Envoy's,
    # and then those of its own port, whose connections had aged out.
    logs = [tmp_path / f"{pod.name}-server-1.err" for pod in old_pods]
    envoy_drained = r"Envoy drained after ([\d.]+)s, (\S+) client connection\(s\) left"
    clients_gone = r"clients of port \d+ gone after ([\d.]+)s, (\d+) connection\(s\) left"
    drains = [drain_record(log, envoy_drained) for log in logs]
    record_figure("rolling update: each old pod's Envoy drain took (s), all clients gone", " / ".join(drains))
    assert all(float(seconds) < ENVOY_DRAIN_SECONDS for seconds in drains), drains
    direct = [drain_record(log, clients_gone) for log in logs]
    record_figure("rolling update: each old pod's own clients gone after (s)", " / ".join(direct))
    assert cluster.exit_codes == {pod.name: 0 for pod in old_pods}
    check_spread("after a rolling update", window, new_pods)
