"""DSPy's ``dspy.primitives.module``; the code lives in ``dsr_core.modules.module``."""

from typing import Any

from ..modules.module import Module
from ..utils import magicattr


def set_attribute_by_name(obj: Any, name: str, value: Any) -> None:
    """DSPy's helper: set ``value`` at the dotted, indexed path ``name`` below ``obj`` (``"layers[0].predict"``)."""
    magicattr.set(obj, name, value)


__all__ = ["Module", "set_attribute_by_name"]
