"""A stand-in for the cluster's DNS (CoreDNS's kubernetes plugin) answering a headless Service's
name: one A record for each ready pod, with CoreDNS's default TTL of 5 s. A change of the pods
takes effect only after a delay, as the EndpointSlice reaches CoreDNS's watch. Real DNS on the
wire (dnslib), so gRPC's own resolver (c-ares) asks it as it would ask the cluster's."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from dnslib import QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from gcd_stack.envoy_config import LOOPBACK

from service_proxy import Listing

TTL_SECONDS = 5


class ClusterDNS(BaseResolver):  # type: ignore[misc]
    def __init__(self, name: str, propagation_seconds: float) -> None:
        self.name = name
        self._addresses: Listing[list[str]] = Listing(propagation_seconds, [])
        self.queries = 0
        # Quiet: the tests count queries instead.
        self._server = DNSServer(self, address=LOOPBACK, port=0, logger=DNSLogger(logf=lambda _: None))

    @property
    def port(self) -> int:
        port: int = self._server.server.server_address[1]
        return port

    def target(self, port: int) -> str:
        """The gRPC target that resolves the name here: dns://<this server>/<name>:port."""
        return f"dns://{LOOPBACK}:{self.port}/{self.name}:{port}"

    def __enter__(self) -> ClusterDNS:
        self._server.start_thread()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._server.stop()
        self._server.server.server_close()

    def set_addresses(self, addresses: list[str], *, at_once: bool = False) -> None:
        """The ready pods' addresses, answered from the propagation delay on, or at once."""
        self._addresses.change(list(addresses), at_once=at_once)

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        self.queries += 1
        reply = request.reply()
        if str(request.q.qname).rstrip(".") != self.name:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.A:
            for address in self._addresses.current:
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(address), ttl=TTL_SECONDS))
        return reply
