"""A cluster of pi pods on this machine, reached the three ways a client can reach them:

- the NodePort: a kube-proxy stand-in (service_proxy.py) in front of each pod's Envoy port, as
  REST clients and the browser reach it;
- the ClusterIP Service's gRPC port: another in front of each pod's gcd-server, as a client
  that dials gcd:3000 reaches it;
- the headless Service: each pod has an address of its own (127.0.1.N, every pod on the same
  port, as pods are), and a DNS stand-in (cluster_dns.py) answers the Service's name with the
  ready ones, as gcd_client resolves it.

A pod joins all three once Ready, and leaves them as its deletion begins; each change reaches
clients only after ENDPOINT_PROPAGATION_SECONDS, as EndpointSlices reach kube-proxy and CoreDNS.
Established connections stay where they are, through a pod's termination too, until either end
closes them. Each proxy counts the requests it passes to each pod."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from pathlib import Path
from types import TracebackType

from gcd_client import HEADLESS_SERVICE
from gcd_testing.ports import free_port

from cluster_dns import ClusterDNS
from pods import Pod, PodTemplate
from processes import wait_until
from service_proxy import ServiceProxy

# From a pod's readiness or deletion to the last proxy and DNS answer that has not seen it.
ENDPOINT_PROPAGATION_SECONDS = 2.0
READY_TIMEOUT_SECONDS = 20.0


class Cluster:
    def __init__(self, template: PodTemplate, log_dir: Path) -> None:
        self.template = template
        self._log_dir = log_dir
        self._held = contextlib.ExitStack()
        self._numbers = itertools.count(1)
        # Each with a source address of its own, so that a pod's log tells whose connection it is.
        self.node_port = ServiceProxy(ENDPOINT_PROPAGATION_SECONDS, source="127.0.0.2")
        self.cluster_ip = ServiceProxy(ENDPOINT_PROPAGATION_SECONDS, source="127.0.0.3")
        self.dns = ClusterDNS(HEADLESS_SERVICE, ENDPOINT_PROPAGATION_SECONDS)
        # Every pod's gRPC port, as the headless Service's records carry no port.
        self.pod_grpc_port = free_port()
        self.pod_ips: dict[str, ServiceProxy] = {}
        self.ready: list[Pod] = []
        # time.monotonic() at which each pod's listing reached clients.
        self.listed_at: dict[str, float] = {}
        self.exit_codes: dict[str, int] = {}
        self._deletions: list[threading.Thread] = []

    def __enter__(self) -> Cluster:
        for part in (self.node_port, self.cluster_ip, self.dns):
            self._held.enter_context(part)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._held.close()

    @property
    def headless_target(self) -> str:
        return self.dns.target(self.pod_grpc_port)

    def add_pod(self, *, at_once: bool = False) -> Pod:
        """A new pod, started, and listed in every Service once Ready (at once: listed already,
        as the pods of a Deployment that was there before the clients)."""
        number = next(self._numbers)
        pod = self._held.enter_context(Pod(self.template, self._log_dir, f"pod-{number}"))
        pod.start()
        wait_until(pod.is_ready, READY_TIMEOUT_SECONDS, f"{pod.name} ready")
        address = f"127.0.1.{number}"
        pod_ip = self._held.enter_context(ServiceProxy(0, address, self.pod_grpc_port, source=address))
        pod_ip.set_endpoints([pod.ports.grpc], at_once=True)
        self.pod_ips[pod.name] = pod_ip
        self.ready.append(pod)
        self._list(at_once)
        self.listed_at[pod.name] = time.monotonic() + (0 if at_once else ENDPOINT_PROPAGATION_SECONDS)
        return pod

    def delete_pod(self, pod: Pod) -> None:
        """The pod leaves every Service, and terminates as kubelet terminates it, meanwhile."""
        self.ready.remove(pod)
        self._list(at_once=False)
        deletion = threading.Thread(target=lambda: self.exit_codes.setdefault(pod.name, pod.terminate()))
        deletion.start()
        self._deletions.append(deletion)

    def wait_for_deletions(self) -> None:
        for deletion in self._deletions:
            deletion.join(self.template.termination_grace_seconds)

    def _list(self, at_once: bool) -> None:
        self.node_port.set_endpoints([pod.ports.envoy for pod in self.ready], at_once=at_once)
        self.cluster_ip.set_endpoints([pod.ports.grpc for pod in self.ready], at_once=at_once)
        self.dns.set_addresses([self.pod_ips[pod.name].address for pod in self.ready], at_once=at_once)

    def _ways_in(self, pod: Pod) -> dict[str, tuple[ServiceProxy, int]]:
        """Each way in to pod: its proxy, and the endpoint that stands for the pod there."""
        return {
            "headless": (self.pod_ips[pod.name], pod.ports.grpc),
            "ClusterIP": (self.cluster_ip, pod.ports.grpc),
            "NodePort": (self.node_port, pod.ports.envoy),
        }

    def requests(self, pods: list[Pod]) -> dict[str, dict[str, int]]:
        """The requests each way in has passed to each of pods so far, by way and pod name."""
        counts: dict[str, dict[str, int]] = {}
        for pod in pods:
            for way, (proxy, endpoint) in self._ways_in(pod).items():
                counts.setdefault(way, {})[pod.name] = proxy.requests[endpoint]
        return counts

    def seconds_to_first_request(self, pod: Pod) -> dict[str, float | None]:
        """By way in: from pod's listing to the first request it got that way (None: none yet)."""
        return {
            way: proxy.first_request[endpoint] - self.listed_at[pod.name] if endpoint in proxy.first_request else None
            for way, (proxy, endpoint) in self._ways_in(pod).items()
        }
