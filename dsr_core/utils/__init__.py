"""DSPy's ``dspy.utils`` paths that programs import from (``from dspy.utils.callback import BaseCallback``)."""

from types import ModuleType

from .._submodules import submodule
from . import callback

__all__ = ["callback"]


def __getattr__(name: str) -> ModuleType:
    return submodule(__name__, name)  # ``utils.usage_tracker`` without importing it first, as in DSPy
