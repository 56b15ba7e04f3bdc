"""Free loopback ports, picked by the kernel."""

import contextlib
import dataclasses
import socket

from gcd_stack.envoy_config import LOOPBACK
from gcd_stack.ports import Ports


def distinct_free_ports(count: int) -> list[int]:
    """count different free loopback ports: all are held at once while the kernel picks them."""
    with contextlib.ExitStack() as held:
        probes = [held.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind((LOOPBACK, 0))
        return [probe.getsockname()[1] for probe in probes]


def free_port() -> int:
    (port,) = distinct_free_ports(1)
    return port


def free_ports() -> Ports:
    """Every port of a stack or pod, all different."""
    return Ports(*distinct_free_ports(len(dataclasses.fields(Ports))))
