"""The repository's build scripts as modules, for the tests that check what they make:
setup.py (compile_api) and proto/openapi.py (the OpenAPI generator it calls)."""

import importlib.util
from pathlib import Path
from types import ModuleType

from processes import REPO


def load_module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUILD = load_module("gcd_build", REPO / "setup.py")
OPENAPI = load_module("gcd_openapi", REPO / "proto" / "openapi.py")
