"""Generates the API code and Envoy's descriptor set from proto/ at build time.

Nothing generated is committed: every build compiles proto/gcd/v1/gcd.proto afresh, so the
Python modules, their type stubs and the descriptor set Envoy transcodes with cannot drift
from the API definition. The build also assembles the /docs page: envoy/docs/ and Swagger UI's
files from the swagger-ui-dist release pinned below.
"""

import base64
import hashlib
import importlib.util
import io
import json
import os
import shutil
import sysconfig
import tarfile
import urllib.request
from pathlib import Path
from types import ModuleType

import google.api.annotations_pb2
import grpc_tools
from google.protobuf import descriptor_pb2
from grpc_tools import protoc
from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent
PROTO_DIR = ROOT / "proto"
API_PROTO = "gcd/v1/gcd.proto"
# Beside the generated modules, so the installed package carries everything Envoy needs.
DESCRIPTOR_SET = "gcd/v1/gcd.pb"
OPENAPI = "gcd/v1/openapi.json"
ENVOY_CONFIG = ROOT / "envoy" / "envoy.yaml"
# The /docs page: its own files, and Swagger UI's, beside the OpenAPI document they render.
DOCS_PAGE = ROOT / "envoy" / "docs"
DOCS = "gcd/v1/docs"
# Swagger UI's official prebuilt assets, as npm publishes them; the integrity is the registry's
# own (npm view swagger-ui-dist@VERSION dist.integrity), checked before anything is unpacked.
SWAGGER_UI_VERSION = "5.35.0"
# checkov:skip=CKV_SECRET_6: a checksum npm publishes for everyone, not a secret
SWAGGER_UI_INTEGRITY = "sha512-U06rpMtW9V3XPGOBeamTUSr0Z09jMX4IJuANpE/EZbAhw0G8CgwrzU4YmXkn/h0wCDNsXdGarTNNHC3sU8yVUQ=="
SWAGGER_UI_FILES = (
    "swagger-ui-bundle.js",
    "swagger-ui-bundle.js.LICENSE.txt",
    "swagger-ui.css",
    "favicon-32x32.png",
    "LICENSE",
    "NOTICE",
)


def proto_include_dirs() -> list[Path]:
    # google/api/*.proto ship inside googleapis-common-protos, google/protobuf/*.proto inside grpc_tools.
    googleapis_root = Path(google.api.annotations_pb2.__file__).parents[2]
    well_known_root = Path(grpc_tools.__file__).parent / "_proto"
    return [PROTO_DIR, googleapis_root, well_known_root]


def mypy_plugins() -> list[str]:
    # mypy-protobuf writes the type stubs, the gRPC stubs and servicers' included.
    plugins = []
    for name in ("protoc-gen-mypy", "protoc-gen-mypy_grpc"):
        # On PATH in pip's isolated build environment; beside this Python in a plain venv.
        path = shutil.which(name) or shutil.which(name, path=sysconfig.get_path("scripts"))
        if path is None:
            raise RuntimeError(f"{name} not found: mypy-protobuf must be installed to build")
        plugins.append(f"--plugin={name}={path}")
    return plugins


def compile_api(out_dir: Path, version: str) -> None:
    args = ["grpc_tools.protoc", *(f"-I{d}" for d in proto_include_dirs()), *mypy_plugins()]
    args += [f"--{kind}_out={out_dir}" for kind in ("python", "grpc_python", "mypy", "mypy_grpc")]
    # With the comments (source info): the OpenAPI document and buf's lint read them.
    args += ["--include_imports", "--include_source_info", f"--descriptor_set_out={out_dir / DESCRIPTOR_SET}"]
    (out_dir / DESCRIPTOR_SET).parent.mkdir(parents=True, exist_ok=True)
    if protoc.main([*args, str(PROTO_DIR / API_PROTO)]) != 0:
        raise RuntimeError(f"protoc failed on {API_PROTO}")
    write_openapi(out_dir, version)
    for package in (out_dir / "gcd", out_dir / "gcd" / "v1"):
        (package / "__init__.py").touch()
    (out_dir / "gcd" / "py.typed").touch()


def proto_module(name: str) -> ModuleType:
    """One of proto/'s build scripts, which are not part of any package."""
    spec = importlib.util.spec_from_file_location(name, PROTO_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_openapi(out_dir: Path, version: str) -> None:
    """OpenAPI for the REST face, from the descriptor set compile_api has just written."""
    descriptors = descriptor_pb2.FileDescriptorSet.FromString((out_dir / DESCRIPTOR_SET).read_bytes())
    errors = proto_module("errors").openapi_descriptions
    document = proto_module("openapi").openapi_document(descriptors, "gcd-service", version, errors)
    (out_dir / OPENAPI).write_text(json.dumps(document, indent=1) + "\n")


def _matches_integrity(tarball: bytes) -> bool:
    algorithm, digest = SWAGGER_UI_INTEGRITY.split("-", 1)
    return base64.b64encode(hashlib.new(algorithm, tarball).digest()).decode() == digest


def swagger_ui_tarball() -> bytes:
    """The pinned swagger-ui-dist release, from the npm registry once, then from the user's cache
    (a cached copy that fails the integrity check is fetched again)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gcd-service"
    cached = cache / f"swagger-ui-dist-{SWAGGER_UI_VERSION}.tgz"
    if cached.exists() and _matches_integrity(tarball := cached.read_bytes()):
        return tarball
    url = f"https://registry.npmjs.org/swagger-ui-dist/-/swagger-ui-dist-{SWAGGER_UI_VERSION}.tgz"
    with urllib.request.urlopen(url, timeout=60) as response:
        downloaded: bytes = response.read()
    if not _matches_integrity(downloaded):
        raise RuntimeError(f"swagger-ui-dist {SWAGGER_UI_VERSION}: the download does not match its integrity")
    # Written whole or not at all, so that an interrupted build leaves no half file behind.
    cache.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(f".{os.getpid()}.partial")
    partial.write_bytes(downloaded)
    os.replace(partial, cached)
    return downloaded


def write_docs_page(out_dir: Path) -> None:
    """The /docs page Envoy serves: envoy/docs/ and the Swagger UI files it loads."""
    target = out_dir / DOCS
    shutil.copytree(DOCS_PAGE, target, dirs_exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(swagger_ui_tarball()), mode="r:gz") as archive:
        for name in SWAGGER_UI_FILES:
            member = archive.extractfile(f"package/{name}")
            assert member is not None, name
            (target / name).write_bytes(member.read())


class BuildPyWithGeneratedApi(build_py):
    def run(self) -> None:
        super().run()
        build_lib = Path(self.build_lib)
        compile_api(build_lib, self.distribution.get_version())
        write_docs_page(build_lib)
        # The local stack runs Envoy with the very file the pod uses.
        shutil.copyfile(ENVOY_CONFIG, build_lib / "gcd_stack" / "envoy.yaml")


# setuptools runs this file as __main__; tests import it for compile_api alone.
if __name__ == "__main__":
    setup(cmdclass={"build_py": BuildPyWithGeneratedApi})
