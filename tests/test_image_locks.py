"""The images install from docker/*.lock, pinned with hashes by `tox -e lock`: the locks must
say what pyproject.toml asks for, or the images would ship something else than the tests ran."""

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from deployment import dockerfile_lines
from processes import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
LOCKS = {
    "server.lock": ("gcd-service (pyproject.toml)", PYPROJECT["project"]["dependencies"]),
    "build.lock": ("gcd-service (pyproject.toml::build-system.requires)", PYPROJECT["build-system"]["requires"]),
}
# "name==version \" and its hash lines, then the "# via" lines that say who asked for it.
_ENTRY = re.compile(r"^([A-Za-z0-9_.-]+)==(\S+) \\\n((?:\s+--hash=sha256:[0-9a-f]{64}[ \\]*\n)+)((?:\s+#.*\n)+)", re.M)


def locked(path: Path) -> dict[str, tuple[str, int, str]]:
    """name -> (version, number of hashes, who asked for it)."""
    text = path.read_text()
    return {
        canonicalize_name(name): (version, hashes.count("--hash"), via)
        for name, version, hashes, via in _ENTRY.findall(text)
    }


@pytest.mark.parametrize("lock", LOCKS)
def test_the_lock_pins_what_pyproject_asks_for_and_nothing_unhashed(lock: str) -> None:
    asker, requirements = LOCKS[lock]
    path = REPO / "docker" / lock
    pins = locked(path)
    assert len(pins) == path.read_text().count("=="), "an entry without hashes"
    wanted = [Requirement(text) for text in requirements]
    for requirement in wanted:
        version = pins[canonicalize_name(requirement.name)][0]
        assert requirement.specifier.contains(version), f"{lock}: {requirement} but {version} is locked"
    asked_directly = {name for name, (_, _, via) in pins.items() if asker in via}
    assert asked_directly == {canonicalize_name(requirement.name) for requirement in wanted}, (
        f"pyproject.toml and docker/{lock} disagree: python3 -m tox -e lock"
    )


def test_the_images_install_with_require_hashes_from_the_locks() -> None:
    """Every pip install of the Dockerfile takes a lock with --require-hashes, but the one of the
    wheel the same build made, which brings nothing else (--no-deps --no-index)."""
    installs = [part for line in dockerfile_lines() for part in line.split("&&") if "pip install" in part]
    from_locks = [part for part in installs if "--require-hashes" in part.split()]
    assert sorted(Path(part.split(" -r ")[1].split()[0]).name for part in from_locks) == sorted(LOCKS)
    own_wheel = [part for part in installs if part not in from_locks]
    assert own_wheel and all({"--no-deps", "--no-index"} <= set(part.split()) for part in own_wheel)
