"""Clients that keep their connections, as other services and REST clients do, each kind at a
steady, modest rate, counting what they got:

- "headless": one process using gcd_client (round_robin over the headless Service's pods);
- "ClusterIP": separate processes each with a plain channel to the ClusterIP Service's gRPC
  port, as the original gateway dialled gcd-service:3000;
- "NodePort": keep-alive HTTP/1.1 clients, as curl in a loop or a browser, and gRPC channels
  through Envoy's port, as the NodePort offers it; a busy and a sparse one of each, whose
  connection sits idle longer than a pod's drain takes to begin.

After a change of pods, settle_then_count waits for as long as it takes every connection open
before it to end, then counts each pod's calls for a while; check_spread holds those counts to
what a fair spread is for each kind."""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from math import gcd
from pathlib import Path

import grpc

from gcd_server.app import MAX_CONNECTION_AGE_GRACE_MS, MAX_CONNECTION_AGE_MS
from gcd_stack.envoy_config import LOOPBACK

from caller import call_in_a_loop, plain_compute
from cluster import Cluster
from figures import record_figure
from pods import Pod
from processes import wait_until

CALLER = Path(__file__).with_name("caller.py")
# Each client's pause between calls; the busy ones send a few hundred calls a second in all.
PAUSE_SECONDS = 0.05
SPARSE_PAUSE_SECONDS = 3.0
# The one headless client is busier: its calls are what spreads, not its connections.
HEADLESS_PAUSE_SECONDS = 0.01
CLUSTER_IP_PROCESSES = 8
NODE_PORT_CLIENTS = 8
# Every connection open at a change of pods has ended by then: gcd-server's age plus gRPC's 10%
# jitter plus its grace (Envoy's 30 s and 2 s drain end sooner), and a moment to reconnect.
SETTLE_SECONDS = (MAX_CONNECTION_AGE_MS * 1.1 + MAX_CONNECTION_AGE_GRACE_MS) / 1000 + 2
WINDOW_SECONDS = 20.0
# The headless client spreads its calls, so every pod's share is close to fair; the others
# spread connections, a handful per pod, so a new pod need only have some of them.
HEADLESS_TOLERANCE = 0.25
LEAST_SHARE_OF_FAIR = 0.25


def rest_client(port: int, pause: float, stop: threading.Event, outcomes: Counter[str]) -> None:
    """One keep-alive HTTP/1.1 client, as a browser or curl in a loop: it reconnects only when
    the server closes the connection."""
    rng = random.Random()
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    while not stop.is_set():
        a, b = rng.randrange(1, 2**40), rng.randrange(1, 2**40)
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
    with grpc.insecure_channel(f"{LOOPBACK}:{port}", options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        call_in_a_loop(plain_compute(channel), pause, stop, outcomes)


Client = Callable[[int, float, threading.Event, Counter[str]], None]


@contextlib.contextmanager
def threads(clients: list[tuple[Client, int, float]]) -> Iterator[Counter[str]]:
    """Each (client, port, pause) in a thread of its own until the block ends."""
    outcomes: Counter[str] = Counter()
    stop = threading.Event()
    running = [threading.Thread(target=client, args=(port, pause, stop, outcomes)) for client, port, pause in clients]
    for thread in running:
        thread.start()
    try:
        yield outcomes
    finally:
        stop.set()
        for thread in running:
            thread.join(15)


@contextlib.contextmanager
def caller_processes(targets: list[tuple[str, str]], pause: float) -> Iterator[Counter[str]]:
    """A caller.py process for each (target, kind flag); their outcomes, added up once they
    have stopped at the end of the block."""
    outcomes: Counter[str] = Counter()
    processes = [
        subprocess.Popen(
            [sys.executable, str(CALLER), target, kind, str(pause)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for target, kind in targets
    ]
    try:
        yield outcomes
    finally:
        for process in processes:
            output, _ = process.communicate("", timeout=15)
            outcomes.update(json.loads(output))


@contextlib.contextmanager
def every_kind(cluster: Cluster) -> Iterator[dict[str, Counter[str]]]:
    """The three kinds of long-lived client of cluster, by the way in they use; a kind's
    outcomes are complete once the block has ended."""
    with (
        caller_processes([(cluster.headless_target, "--client-module")], HEADLESS_PAUSE_SECONDS) as headless,
        caller_processes(
            [(f"{LOOPBACK}:{cluster.cluster_ip.port}", "--plain")] * CLUSTER_IP_PROCESSES, PAUSE_SECONDS
        ) as cluster_ip,
        threads(
            [
                (client, cluster.node_port.port, pause)
                for client in (rest_client, grpc_client)
                for pause in [PAUSE_SECONDS] * (NODE_PORT_CLIENTS // 2) + [SPARSE_PAUSE_SECONDS]
            ]
        ) as node_port,
    ):
        yield {"headless": headless, "ClusterIP": cluster_ip, "NodePort": node_port}


def wait_for_every_kind(cluster: Cluster, pods: list[Pod]) -> None:
    """Returns once every kind of client has called each of pods."""
    wait_until(
        lambda: all(all(counts.values()) for counts in cluster.requests(pods).values()),
        15,
        "every kind of client calling every pod",
    )


def settle_then_count(cluster: Cluster, pods: list[Pod]) -> dict[str, dict[str, int]]:
    """Each of pods' calls by way in, in WINDOW_SECONDS that begin SETTLE_SECONDS after the last
    pod of the cluster was listed."""
    time.sleep(max(0.0, max(cluster.listed_at.values()) + SETTLE_SECONDS - time.monotonic()))
    before = cluster.requests(pods)
    time.sleep(WINDOW_SECONDS)
    after = cluster.requests(pods)
    return {way: {name: after[way][name] - before[way][name] for name in after[way]} for way in after}


def shares(counts: dict[str, int]) -> dict[str, float]:
    total = sum(counts.values())
    return {name: count / total for name, count in counts.items()}


def check_spread(event: str, window: dict[str, dict[str, int]], new: list[Pod]) -> None:
    """Records each pod's share of window's calls, each way in, and holds them to a fair spread:
    the headless client's within HEADLESS_TOLERANCE of fair for every pod, the others' at least
    LEAST_SHARE_OF_FAIR of fair for every new pod."""
    for way, counts in window.items():
        fair = 1 / len(counts)
        share = shares(counts)
        record_figure(
            f"{event}, {way} clients: each pod's share of {WINDOW_SECONDS:.0f} s of calls "
            f"{SETTLE_SECONDS:.0f} s after (fair {fair:.2f})",
            " / ".join(f"{value:.2f}" for value in share.values()),
        )
        if way == "headless":
            assert all(abs(value - fair) <= HEADLESS_TOLERANCE * fair for value in share.values()), (way, window)
        else:
            assert all(share[pod.name] >= LEAST_SHARE_OF_FAIR * fair for pod in new), (way, window)
