"""The design this project replaces, built for the benchmark: a Go gRPC server and a gin REST
gateway (bench/go/), compiled offline from Debian's Go packages in GOPATH mode, since no Go
module proxy is reachable here. Their gRPC code is generated from proto/ itself by Debian's
protoc-gen-go, so an RPC added there needs nothing here: the server embeds the generated
Unimplemented server, which answers UNIMPLEMENTED for any RPC it does not write. The generated
code and the binaries go to a scratch folder; nothing built is committed."""

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import google.api.annotations_pb2

SOURCES = Path(__file__).resolve().parent / "go"
PROTO_DIR = SOURCES.parents[1] / "proto"
API_PROTO = "gcd/v1/gcd.proto"
# google/api/annotations.proto, which the API imports, ships inside googleapis-common-protos.
GOOGLEAPIS = Path(google.api.annotations_pb2.__file__).parents[2]
# Where Debian's golang-*-dev packages put their sources.
DEBIAN_GOPATH = Path("/usr/share/gocode")
PACKAGES = (
    "golang-go golang-google-grpc-dev golang-github-gin-gonic-gin-dev golang-goprotobuf-dev "
    "golang-google-genproto-dev protobuf-compiler"
)
_IMPORTS = [
    "google.golang.org/grpc",
    "github.com/gin-gonic/gin",
    "github.com/golang/protobuf",
    # The Go package of google/api/annotations.proto, which the generated code imports.
    "google.golang.org/genproto/googleapis/api/annotations",
]


@dataclass(frozen=True)
class GoBinaries:
    server: Path  # -listen HOST:PORT
    gateway: Path  # -listen HOST:PORT -upstream HOST:PORT


def missing() -> str | None:
    """Why the Go arms cannot run here, or None."""
    tools = [tool for tool in ("go", "protoc", "protoc-gen-go") if shutil.which(tool) is None]
    sources = [name for name in _IMPORTS if not (DEBIAN_GOPATH / "src" / name).is_dir()]
    if tools or sources:
        return f"missing {', '.join(tools + sources)} (apt-get install {PACKAGES})"
    return None


def _run(command: list[str], **options: object) -> None:
    """command, or a failure that shows what it printed."""
    result = subprocess.run(command, capture_output=True, text=True, **options)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")


def build(workdir: Path, proto_dir: Path = PROTO_DIR) -> GoBinaries:
    """Both programs, with the gRPC code generated from proto_dir's API."""
    gopath = workdir / "gopath"
    package = gopath / "src" / "gcdbench"
    shutil.copytree(SOURCES, package)
    generated = workdir / "generated"
    generated.mkdir()
    # import_path names the generated package (gcdbench/gcdpb, which the programs import).
    _run(
        [
            *("protoc", f"-I{proto_dir}", f"-I{GOOGLEAPIS}"),
            f"--go_out=plugins=grpc,import_path=gcdpb:{generated}",
            str(proto_dir / API_PROTO),
        ]
    )
    (package / "gcdpb").mkdir()
    shutil.move(generated / API_PROTO.replace(".proto", ".pb.go"), package / "gcdpb")
    env = os.environ | {
        "GOPATH": f"{gopath}:{DEBIAN_GOPATH}",
        "GO111MODULE": "off",
        "GOFLAGS": "",
        "GOCACHE": str(workdir / "gocache"),
    }
    binaries = GoBinaries(server=gopath / "bin" / "go-server", gateway=gopath / "bin" / "gin-gateway")
    for binary, source in ((binaries.server, "server"), (binaries.gateway, "gateway")):
        _run(["go", "build", "-o", str(binary), f"gcdbench/{source}"], cwd=gopath, env=env)
    return binaries
