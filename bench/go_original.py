"""The design this project replaces, built for the benchmark: a Go gRPC server and a gin REST
gateway (bench/go/), compiled offline from Debian's Go packages in GOPATH mode, since no Go
module proxy is reachable here. The generated protobuf code and the binaries go to a scratch
folder; nothing built is committed."""

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SOURCES = Path(__file__).resolve().parent / "go"
# Where Debian's golang-*-dev packages put their sources.
DEBIAN_GOPATH = Path("/usr/share/gocode")
PACKAGES = "golang-go golang-google-grpc-dev golang-github-gin-gonic-gin-dev golang-goprotobuf-dev protobuf-compiler"
_IMPORTS = ["google.golang.org/grpc", "github.com/gin-gonic/gin", "github.com/golang/protobuf"]


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


def build(workdir: Path) -> GoBinaries:
    gopath = workdir / "gopath"
    package = gopath / "src" / "gcdbench"
    shutil.copytree(SOURCES, package)
    protoc = ["protoc", "--go_out=plugins=grpc,paths=source_relative:.", "gcdpb/gcd.proto"]
    subprocess.run(protoc, cwd=package, check=True, capture_output=True, text=True)
    env = os.environ | {
        "GOPATH": f"{gopath}:{DEBIAN_GOPATH}",
        "GO111MODULE": "off",
        "GOFLAGS": "",
        "GOCACHE": str(workdir / "gocache"),
    }
    binaries = GoBinaries(server=gopath / "bin" / "go-server", gateway=gopath / "bin" / "gin-gateway")
    for binary, source in ((binaries.server, "server"), (binaries.gateway, "gateway")):
        command = ["go", "build", "-o", str(binary), f"gcdbench/{source}"]
        subprocess.run(command, cwd=gopath, env=env, check=True, capture_output=True, text=True)
    return binaries
