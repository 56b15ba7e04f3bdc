"""One client process of gcd-service, calling Compute in a loop until its stdin closes, then
printing what happened as JSON ({"right": n, "failed: <code>": m, ...}):

    python caller.py TARGET --client-module PAUSE_SECONDS   gcd_client.connect(TARGET)
    python caller.py TARGET --plain PAUSE_SECONDS           a bare channel, as a client that
                                                            dials a Service's name does

A process of its own, since grpcio shares one connection per target among a process's channels."""

import json
import random
import sys
import threading
from collections import Counter
from math import gcd

import grpc

from gcd.v1 import gcd_pb2, gcd_pb2_grpc
from gcd_client import connect


def main() -> None:
    target, kind, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])
    stop = threading.Event()

    def stop_at_end_of_input() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=stop_at_end_of_input, daemon=True).start()
    if kind == "--client-module":
        client = connect(target)
        channel = client.channel

        def compute(a: int, b: int) -> int:
            return client.compute(a, b)
    else:
        channel = grpc.insecure_channel(target)
        stub = gcd_pb2_grpc.GCDServiceStub(channel)

        def compute(a: int, b: int) -> int:
            return stub.Compute(gcd_pb2.ComputeRequest(a=a, b=b), timeout=5).result

    rng = random.Random()
    outcomes: Counter[str] = Counter()
    while not stop.is_set():
        a, b = rng.randrange(1, 2**40), rng.randrange(1, 2**40)
        try:
            right = compute(a, b) == gcd(a, b)
            outcomes["right" if right else "failed: wrong result"] += 1
        except grpc.RpcError as error:
            outcomes[f"failed: {error.code().name} {error.details()}"] += 1
        stop.wait(pause)
    channel.close()
    print(json.dumps(outcomes))


if __name__ == "__main__":
    main()
