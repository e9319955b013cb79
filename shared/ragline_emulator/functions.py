"""The Lambda functions of the checkout (functions/<name>/app.py), imported as Lambda imports them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from ragline.errors import ConfigurationError


def functions_dir() -> Path:
    # shared/ragline_emulator/functions.py → the repository root.
    return Path(__file__).resolve().parents[2] / "functions"


def load_function(name: str, *, module_name: str | None = None) -> ModuleType:
    """A Lambda function's module from functions/<name>/app.py (they are files, not a package).

    Each call imports it afresh, as a new execution environment would (``module_name`` tells
    several such imports apart).
    """
    path = functions_dir() / name / "app.py"
    if not path.is_file():
        raise ConfigurationError(f"{path} is missing: the aws backend runs the functions from a source checkout")
    module_name = module_name or f"ragline_function_{name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
