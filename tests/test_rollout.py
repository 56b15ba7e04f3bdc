"""A rolling update of the pi Deployment under steady REST and gRPC load, with every replica
replaced, simulated here as faithfully as one machine allows:

- the pods are the pi overlay's (tests/pods.py: each image's entrypoint with the manifest's args
  and env, the sidecar first up and last down, preStop before SIGTERM);
- the Service is a stand-in for kube-proxy (tests/service_proxy.py): new connections go to ready
  endpoints only, established ones stay on their pod;
- the order is the Deployment controller's for maxSurge 1, maxUnavailable 0: a new pod is added
  to the endpoints once Ready; only then is an old pod deleted, which takes it out of the
  endpoints as its preStop starts (the EndpointSlice controller and kubelet both act on the
  deletion); the next new pod is created at once, since a terminating pod no longer counts.

Clients are not told of any of it: they keep their connections until Envoy closes them."""

import contextlib
import http.client
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from math import gcd
from pathlib import Path

import grpc
import pytest

from gcd.v1 import gcd_pb2, gcd_pb2_grpc
from gcd_stack.envoy_config import LOOPBACK
from gcd_stack.processes import ENVOY_DRAIN_SECONDS

from deployment import KUBECTL, find, render
from figures import record_figure
from pods import Pod, PodTemplate
from processes import messages, wait_until
from service_proxy import ServiceProxy

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(KUBECTL is None, reason="kubectl with built-in kustomize is not installed"),
]
# Busy clients, and a sparse one whose connection sits idle longer than Envoy's drain takes to
# begin: each kind over REST and over gRPC.
PAUSES_SECONDS = [0.002, 0.002, 0.002, 3.0]
# From a pod's deletion to kube-proxy's last new connection to it.
ENDPOINT_PROPAGATION_SECONDS = 2.0
READY_TIMEOUT_SECONDS = 20.0
# The pods' preStop (5 s) plus Envoy's drain (15 s at most) plus the server's exit.
TERMINATION_TIMEOUT_SECONDS = 30.0


def operands(rng: random.Random) -> tuple[int, int]:
    return rng.randrange(1, 2**40), rng.randrange(1, 2**40)


def rest_client(port: int, pause: float, stop: threading.Event, outcomes: Counter[str]) -> None:
    """One keep-alive HTTP/1.1 client, as a browser or curl in a loop: it reconnects only when
    the server closes the connection."""
    rng = random.Random()
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    while not stop.is_set():
        a, b = operands(rng)
        try:
            connection.request("GET", f"/gcd/{a}/{b}")
            response = connection.getresponse()
            body = response.read()
            right = response.status == 200 and body == f'{{"result":"{gcd(a, b)}"}}'.encode()
            outcomes["REST right" if right else f"REST failed: HTTP {response.status} {body[:80]!r}"] += 1
        except (OSError, http.client.HTTPException) as error:
            outcomes[f"REST failed: {type(error).__name__}"] += 1
            connection.close()
        stop.wait(pause)
    connection.close()


def grpc_client(port: int, pause: float, stop: threading.Event, outcomes: Counter[str]) -> None:
    """One long-lived gRPC channel through Envoy's port, as the NodePort offers it."""
    rng = random.Random()
    with grpc.insecure_channel(f"{LOOPBACK}:{port}") as channel:
        stub = gcd_pb2_grpc.GCDServiceStub(channel)
        while not stop.is_set():
            a, b = operands(rng)
            try:
                right = stub.Compute(gcd_pb2.ComputeRequest(a=a, b=b), timeout=5).result == gcd(a, b)
                outcomes["gRPC right" if right else "gRPC failed: wrong result"] += 1
            except grpc.RpcError as error:
                outcomes[f"gRPC failed: {error.code().name} {error.details()}"] += 1
            stop.wait(pause)


@contextlib.contextmanager
def steady_load(port: int) -> Iterator[Counter[str]]:
    outcomes: Counter[str] = Counter()
    stop = threading.Event()
    clients: list[Callable[[int, float, threading.Event, Counter[str]], None]] = [rest_client, grpc_client]
    threads = [
        threading.Thread(target=client, args=(port, pause, stop, outcomes))
        for client in clients
        for pause in PAUSES_SECONDS
    ]
    for thread in threads:
        thread.start()
    try:
        yield outcomes
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)


def drain_record(server_log: Path) -> str:
    """How long a server's drain of its Envoy took, as its log says, if it ended with no client
    connection left."""
    (line,) = [message for message in messages(server_log) if message.startswith("Envoy drained after")]
    found = re.fullmatch(r"Envoy drained after ([\d.]+)s, (\S+) client connection\(s\) left", line)
    assert found is not None and found[2] == "0", line
    seconds: str = found[1]
    return seconds


def delete(pod: Pod, exit_codes: dict[str, int]) -> None:
    exit_codes[pod.name] = pod.terminate()


def test_a_rolling_update_of_every_replica_fails_no_request(tmp_path: Path) -> None:
    manifests = render("pi")
    template = PodTemplate.of(manifests)
    assert find(manifests, "Deployment")["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    names = (f"pod-{number}" for number in range(2 * template.replicas))

    with contextlib.ExitStack() as held:
        service = held.enter_context(ServiceProxy(ENDPOINT_PROPAGATION_SECONDS))

        def ready_pod() -> Pod:
            pod = held.enter_context(Pod(template, tmp_path, next(names)))
            pod.start()
            wait_until(pod.is_ready, READY_TIMEOUT_SECONDS, f"{pod.name} ready")
            return pod

        old_pods = [ready_pod() for _ in range(template.replicas)]
        ready = list(old_pods)
        service.set_endpoints([pod.ports.envoy for pod in ready], at_once=True)
        exit_codes: dict[str, int] = {}
        deletions = []
        started = time.monotonic()
        with steady_load(service.port) as outcomes:
            wait_until(lambda: outcomes["REST right"] > 0 and outcomes["gRPC right"] > 0, 10, "load flowing")
            for old in old_pods:
                ready.append(ready_pod())
                service.set_endpoints([pod.ports.envoy for pod in ready])
                ready.remove(old)
                service.set_endpoints([pod.ports.envoy for pod in ready])
                deletion = threading.Thread(target=delete, args=(old, exit_codes))
                deletion.start()
                deletions.append(deletion)
            for deletion in deletions:
                deletion.join(TERMINATION_TIMEOUT_SECONDS)
            rollout_seconds = time.monotonic() - started
            # The new pods alone, for a moment, so the last clients that moved are counted too.
            time.sleep(0.5)

    sent = sum(outcomes.values())
    failed = {kind: count for kind, count in outcomes.items() if "failed" in kind}
    record_figure(
        f"rolling update of {template.replicas} replicas under load: requests sent / answered right / failed",
        f"{sent} / {outcomes['REST right'] + outcomes['gRPC right']} / {sum(failed.values())}",
    )
    record_figure(
        "rolling update under load: REST / gRPC answered right, rollout took (s)",
        f"{outcomes['REST right']} / {outcomes['gRPC right']}, {rollout_seconds:.1f}",
    )
    assert not failed, failed
    # Each old server stopped because its Envoy's clients had all gone, not because time ran out.
    drains = [drain_record(tmp_path / f"{pod.name}-server-1.err") for pod in old_pods]
    record_figure("rolling update: each old pod's drain took (s), all clients gone", " / ".join(drains))
    assert all(float(seconds) < ENVOY_DRAIN_SECONDS for seconds in drains), drains
    assert exit_codes == {pod.name: 0 for pod in old_pods}
    assert outcomes["REST right"] > 0 and outcomes["gRPC right"] > 0
    assert all(service.connections.get(pod.ports.envoy) for pod in ready), "clients must have moved to every new pod"
