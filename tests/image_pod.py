"""Runs a pod's two containers from two unpacked image roots, inside a mount and network namespace
of its own (the caller starts this under `unshare --mount --net`), and prints what a client saw as
one JSON object. Used by test_images.py.

As a container runtime would: each root is mounted read-only with a fresh /proc and /tmp, each
process is chrooted into its root and runs as the pod's uid and gid with no extra groups. The
network namespace has only its own loopback, so the pod's real ports are used as they are.

Once the pod is ready: the spec's HTTP requests, its gRPC calls (grpcurl, from outside the roots),
a bounded REST load over keep-alive connections, then each container's peak resident memory
and Envoy's own account of its heap; then SIGTERM, in kubelet's order."""

import http.client
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from gcd_server.envoy_sidecar import admin_request
from gcd_testing.proc import memory_mib

# Under emulation the pod takes a few seconds; natively well under one.
STARTUP_SECONDS = 60.0


def mount_read_only(root: str) -> None:
    subprocess.run(["mount", "--bind", root, root], check=True)
    subprocess.run(["mount", "-o", "remount,ro,bind", root], check=True)
    subprocess.run(["mount", "-t", "proc", "proc", f"{root}/proc"], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", f"{root}/tmp"], check=True)


def in_container(root: str, uid: int, gid: int) -> Callable[[], None]:
    def enter() -> None:
        os.chroot(root)
        os.chdir("/")
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)

    return enter


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:
        return 0, str(error)


def load(url: str, connections: int, requests: int) -> dict[str, Any]:
    """requests GETs of url on each of connections keep-alive connections at once; the answers
    that were not a 200, and how long it all took."""
    parts = urlsplit(url)
    host, port, path = parts.hostname or "", parts.port, parts.path
    failures: list[str] = []

    def client() -> None:
        connection = http.client.HTTPConnection(host, port, timeout=10)
        for _ in range(requests):
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    failures.append(f"HTTP {response.status}")
            except OSError as error:
                failures.append(type(error).__name__)
                connection.close()
        connection.close()

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"calls": connections * requests, "failures": failures, "seconds": time.monotonic() - started}


def main(spec: dict[str, Any]) -> dict[str, Any]:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for container in spec["containers"]:
        mount_read_only(container["root"])
    processes = []
    # The sidecar first, as kubelet starts a pod.
    for container in spec["containers"]:
        log = open(f"{spec['log_dir']}/{container['name']}.log", "w")  # noqa: SIM115 - kept open while it runs
        processes.append(
            subprocess.Popen(
                container["command"],
                env=container["env"],
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=in_container(container["root"], container["uid"], container["gid"]),
            )
        )
    started = time.monotonic()
    while get(spec["ready_url"])[0] != 200 and time.monotonic() < started + STARTUP_SECONDS:
        time.sleep(0.1)
    ready_seconds = time.monotonic() - started
    seen = {name: get(url) for name, url in spec["requests"].items()}
    calls = {}
    for name, args in spec["grpc_calls"].items():
        call = subprocess.run([spec["grpcurl"], "-plaintext", *args], capture_output=True, text=True, timeout=60)
        calls[name] = [call.returncode, call.stdout + call.stderr]
    loaded = load(**spec["load"])
    memory = {
        # Under qemu-user, the emulator's: the guest's pages and qemu's own.
        "peak_resident_mib": {
            container["name"]: memory_mib(process.pid)[0]
            for container, process in zip(spec["containers"], processes, strict=True)
        },
        "envoy": json.loads(admin_request(spec["envoy_admin"], "/memory")),
    }
    exit_codes = {}
    # Then stopped in reverse, as kubelet stops a pod: the server first, the sidecar once it has exited.
    for container, process in reversed(list(zip(spec["containers"], processes, strict=True))):
        process.terminate()
        exit_codes[container["name"]] = process.wait(30)
    return {
        "ready_seconds": ready_seconds,
        "replies": seen,
        "grpc": calls,
        "load": loaded,
        "memory": memory,
        "exit_codes": exit_codes,
    }


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
