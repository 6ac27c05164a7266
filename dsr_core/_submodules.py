"""DSPy's submodules are attributes of their package (``dspy.predict.react.ReAct``, ``dspy.teleprompt.gepa``):
dsr's re-export packages import such a submodule when it is first reached as an attribute."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType


def submodule(package: str, name: str) -> ModuleType:
    """``package.name`` imported, for a module-level ``__getattr__``; AttributeError when there is none."""
    if not name.startswith("_") and importlib.util.find_spec(f"{package}.{name}") is not None:
        return importlib.import_module(f"{package}.{name}")
    raise AttributeError(f"module {package!r} has no attribute {name!r}")
