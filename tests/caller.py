"""One client process of gcd-service, calling Compute in a loop until its stdin closes, then
printing what happened as JSON ({"gRPC right": n, "gRPC failed: <code> <details>": m, ...}):

    python caller.py TARGET --client-module PAUSE_SECONDS   gcd_client.connect(TARGET)
    python caller.py TARGET --plain PAUSE_SECONDS           a bare channel, as a client that
                                                            dials a Service's name does

A process of its own, since grpcio shares one connection per target among a process's channels."""

import json
import random
import sys
import threading
from collections import Counter
from collections.abc import Callable
from math import gcd

import grpc

from gcd.v1 import gcd_pb2, gcd_pb2_grpc
from gcd_client import connect


def call_in_a_loop(
    compute: Callable[[int, int], int], pause: float, stop: threading.Event, outcomes: Counter[str], kind: str = "gRPC"
) -> None:
    """Calls compute with random operands, pause seconds apart, until stop is set, counting
    "<kind> right" and each kind of "<kind> failed: ..." in outcomes."""
    rng = random.Random()
    while not stop.is_set():
        a, b = rng.randrange(1, 2**40), rng.randrange(1, 2**40)
        try:
            right = compute(a, b) == gcd(a, b)
            outcomes[f"{kind} right" if right else f"{kind} failed: wrong result"] += 1
        except grpc.RpcError as error:
            outcomes[f"{kind} failed: {error.code().name} {error.details()}"] += 1
        stop.wait(pause)


def plain_compute(channel: grpc.Channel) -> Callable[[int, int], int]:
    """Compute on channel with a 5 s deadline, as a client with no service config calls it."""
    stub = gcd_pb2_grpc.GCDServiceStub(channel)
    return lambda a, b: stub.Compute(gcd_pb2.ComputeRequest(a=a, b=b), timeout=5).result


def main() -> None:
    target, kind, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])
    stop = threading.Event()

    def stop_at_end_of_input() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=stop_at_end_of_input, daemon=True).start()
    outcomes: Counter[str] = Counter()
    if kind == "--client-module":
        with connect(target) as client:
            call_in_a_loop(client.compute, pause, stop, outcomes)
    else:
        with grpc.insecure_channel(target) as channel:
            call_in_a_loop(plain_compute(channel), pause, stop, outcomes)
    print(json.dumps(outcomes))


if __name__ == "__main__":
    main()
