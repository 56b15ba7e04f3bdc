"""Nothing secret in the repository, and nothing listening beyond the ports the design names."""

import dataclasses
import ipaddress
import json
import subprocess
from pathlib import Path

from gcd_stack.envoy_config import LOOPBACK
from gcd_stack.ports import Ports
from gcd_testing.proc import children

from processes import REPO, SCRIPTS

NOT_SOURCES = [".git", ".tox", ".hypothesis", "build", ".mypy_cache", ".ruff_cache", ".pytest_cache"]


def secrets_found(directory: Path, *skipped: str) -> int:
    command = [str(SCRIPTS / "checkov"), "--directory", str(directory), "--framework", "secrets"]
    command += ["--enable-secret-scan-all-files", "--compact", "--skip-download", "--output", "json"]
    for path in skipped:
        command += ["--skip-path", path]
    report = json.loads(subprocess.run(command, capture_output=True, text=True, timeout=300).stdout)
    # With nothing found at all, checkov prints the bare summary.
    failed: int = report.get("summary", report)["failed"]
    return failed


def test_the_scanner_finds_a_planted_secret(tmp_path: Path) -> None:
    # Put together here so that this file itself holds no secret-looking string.
    planted = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"
    (tmp_path / "settings.py").write_text(f'aws_secret_access_key = "{planted}"\n')
    assert secrets_found(tmp_path) > 0


def test_the_repository_holds_no_secret() -> None:
    assert secrets_found(REPO, *NOT_SOURCES) == 0


def _address(hex_address: str) -> str:
    """An address from /proc/net/tcp{,6}: 32-bit words in host (little-endian) order."""
    raw = b"".join(bytes.fromhex(hex_address[i : i + 8])[::-1] for i in range(0, len(hex_address), 8))
    address = ipaddress.ip_address(raw)
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return str(mapped or address)


def listening(pid: int) -> set[str]:
    """host:port of each TCP socket pid listens on (Linux /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = str(fd.readlink()) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                address, port = local.split(":")
                found.add(f"{_address(address)}:{int(port, 16)}")
    return found


def test_the_stack_listens_on_loopback_on_its_own_ports_only(
    stack_process: tuple[Ports, subprocess.Popen[bytes]],
) -> None:
    ports, process = stack_process
    sockets = set().union(*(listening(pid) for pid in children(process.pid)))
    assert sockets == {f"{LOOPBACK}:{port}" for port in dataclasses.astuple(ports)}
