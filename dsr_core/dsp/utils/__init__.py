"""DSPy's ``dspy.dsp.utils``: ``dotdict``, the dict whose keys are also attributes, which retrievers' passages
are (``passage.long_text`` and ``passage["long_text"]`` both work, as programs written for DSPy read them), and
``dsp.utils.settings`` (dsr's settings, under DSPy's path)."""

from __future__ import annotations

import copy
from typing import Any


class dotdict(dict[str, Any]):  # noqa: N801 - DSPy's name
    """A dict with attribute access to its keys; a missing key is an AttributeError (so ``hasattr`` works)."""

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__") and key.endswith("__"):
            raise AttributeError(key)  # copy and pickle probe for dunders: never a key
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{key}'") from None

    def __setattr__(self, key: str, value: Any) -> None:
        if key.startswith("__") and key.endswith("__"):
            super().__setattr__(key, value)
        else:
            self[key] = value

    def __delattr__(self, key: str) -> None:
        if key.startswith("__") and key.endswith("__"):
            super().__delattr__(key)
        else:
            del self[key]

    def __deepcopy__(self, memo: dict[int, Any]) -> dotdict:
        return dotdict(copy.deepcopy(dict(self), memo))  # dict's own copy: attribute lookup would recurse


__all__ = ["dotdict"]


def __getattr__(name: str) -> Any:
    from ..._submodules import submodule

    return submodule(__name__, name)  # ``dsp.utils.settings`` without importing it first, as in DSPy
