"""The standard-library scripts under ci/ (not a package: they run before any virtualenv),
loaded as modules so tests can call their functions."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

CI = Path(__file__).resolve().parents[1] / "ci"


def load(name: str) -> ModuleType:
    """``ci/<name>.py`` as the module ``owl_ci_<name>`` (loaded once per session)."""
    module_name = f"owl_ci_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, CI / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
