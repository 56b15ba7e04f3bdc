"""Runs a pod's two containers from two unpacked image roots, inside a mount and network namespace
of its own (the caller starts this under `unshare --mount --net`), and prints what a client saw as
one JSON object. Used by test_images.py.

As a container runtime would: each root is mounted read-only with a fresh /proc and /tmp, each
process is chrooted into its root and runs as the pod's uid and gid with no extra groups. The
network namespace has only its own loopback, so the pod's real ports are used as they are."""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

STARTUP_SECONDS = 20.0


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
    deadline = time.monotonic() + STARTUP_SECONDS
    while get(spec["ready_url"])[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    seen = {name: get(url) for name, url in spec["requests"].items()}
    exit_codes = {}
    # Then stopped in reverse, as kubelet stops a pod: the server first, the sidecar once it has exited.
    for container, process in reversed(list(zip(spec["containers"], processes, strict=True))):
        process.terminate()
        exit_codes[container["name"]] = process.wait(30)
    return {"replies": seen, "exit_codes": exit_codes}


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
