"""The repository's build scripts as modules, for the tests that check what they make:
setup.py (compile_api), and the table of errors it writes the OpenAPI document's from
(proto/errors.py)."""

import importlib.util
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from gcd_stack.envoy_config import openapi_path

from processes import REPO


def load_module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUILD = load_module("gcd_build", REPO / "setup.py")
ERRORS = BUILD.proto_module("errors")


def api_paths(a: str = "12", b: str = "18") -> list[str]:
    """The REST paths of the OpenAPI document the build generated, with these operands."""
    templates = json.loads(openapi_path().read_text())["paths"]
    return [template.replace("{a}", a).replace("{b}", b) for template in templates]


def edited_api(root: Path, edit: Callable[[str], str]) -> Path:
    """A copy of proto/ under root, its API file rewritten by edit: what a user forking it does."""
    proto_dir = root / "proto"
    shutil.copytree(BUILD.PROTO_DIR, proto_dir)
    api = proto_dir / BUILD.API_PROTO
    api.write_text(edit(api.read_text()))
    return proto_dir


def build_api(proto_dir: Path, out_dir: Path, version: str = "0.0.0") -> None:
    """What the build makes of proto_dir in out_dir: the modules, the descriptor set, OpenAPI."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BUILD, "PROTO_DIR", proto_dir)
        BUILD.compile_api(out_dir, version)
