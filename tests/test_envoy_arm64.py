"""The real aarch64 Envoy of the release the pods run, under qemu-user, with the guest's virtual
address space capped the way Raspberry Pi kernels cap it.

Envoy's arm64 build links tcmalloc, which assumes 48-bit virtual addresses (envoyproxy/envoy#15235,
#23339; google/tcmalloc#82). The Pi 3/4 Raspberry Pi OS kernels (kernel8.img) give user space 39
bits (raspberrypi/linux#4375, #6261): there Envoy must abort at start. With 46 bits (an x86_64 host
cannot reserve a 47- or 48-bit guest space) or no cap, it must start and serve the pod's config.
docs/raspberry-pi.md's support matrix rests on these results: when they change, so must it."""

import resource
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from envoy_wheels import RELEASE as ENVOY_RELEASE

from clients import http_request
from deployment import KUBECTL, render
from pods import Pod, PodTemplate
from processes import wait_until

QEMU = shutil.which("qemu-aarch64")
# Debian's libc6-arm64-cross: the aarch64 loader and libc that the wheel's Envoy links against.
SYSROOT = Path("/usr/aarch64-linux-gnu")
PI_3_4_KERNEL_BITS = 39
WIDEST_EMULATED_BITS = 46

pytestmark = [
    pytest.mark.skipif(
        QEMU is None or not (SYSROOT / "lib" / "ld-linux-aarch64.so.1").exists(),
        reason="needs qemu-aarch64 and an aarch64 libc: apt-get install qemu-user libc6-arm64-cross",
    ),
    pytest.mark.skipif(KUBECTL is None, reason="kubectl with built-in kustomize is not installed"),
]


@pytest.fixture(scope="session")
def aarch64_envoy(envoy_for: Callable[[str], Path]) -> Path:
    return envoy_for("aarch64")


def under_qemu(binary: Path, address_bits: int | None) -> list[str]:
    cap = [] if address_bits is None else ["-R", str(1 << address_bits)]
    return [str(QEMU), "-L", str(SYSROOT), *cap, str(binary)]


def no_core_dump() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


@pytest.fixture(scope="module")
def template() -> PodTemplate:
    return PodTemplate.of(render("pi"))


def test_envoy_aborts_at_start_with_39_bit_addresses(
    aarch64_envoy: Path, template: PodTemplate, tmp_path: Path
) -> None:
    pod = Pod(template, tmp_path, "pi4", envoy_binary=under_qemu(aarch64_envoy, PI_3_4_KERNEL_BITS))
    command = [*pod.envoy_binary, *pod.envoy_args(tmp_path / "envoy.yaml")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, preexec_fn=no_core_dump)
    assert result.returncode != 0 and "MmapAligned() failed" in result.stderr, (
        f"Envoy {ENVOY_RELEASE} for arm64 no longer aborts with {PI_3_4_KERNEL_BITS}-bit addresses "
        f"(exit {result.returncode}): update the support matrix in docs/raspberry-pi.md, then this test.\n"
        + result.stderr[-2000:]
    )


@pytest.mark.parametrize("address_bits", [WIDEST_EMULATED_BITS, None], ids=["46-bit", "uncapped"])
def test_envoy_serves_the_pod_config_with_wide_addresses(
    aarch64_envoy: Path, template: PodTemplate, tmp_path: Path, address_bits: int | None
) -> None:
    """The whole pod, with the aarch64 Envoy as its sidecar: REST in, transcoded, answered."""
    with Pod(template, tmp_path, "pi5", envoy_binary=under_qemu(aarch64_envoy, address_bits)) as pod:
        pod.start()
        wait_until(pod.is_ready, 20, "the pod ready")
        assert http_request(pod.ports.envoy, "/gcd/12/18").json() == {"result": "6"}
        assert http_request(pod.ports.envoy, "/gcd/12/abc").json()["code"] == 3
