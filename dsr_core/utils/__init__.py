"""DSPy's ``dspy.utils`` paths that programs import from (``from dspy.utils.callback import BaseCallback``)."""

from typing import Any

from .._submodules import submodule
from . import callback

__all__ = ["DummyLM", "DummyVectorizer", "callback", "dummy_rm"]

_DUMMIES = frozenset(("DummyLM", "DummyVectorizer", "dummy_rm"))  # DSPy's test doubles, imported on first use


def __getattr__(name: str) -> Any:
    if name in _DUMMIES:
        from . import dummies

        return getattr(dummies, name)
    return submodule(__name__, name)  # ``utils.usage_tracker`` without importing it first, as in DSPy
