"""DSPy's ``dspy.utils`` paths that programs import from (``from dspy.utils.callback import BaseCallback``)."""

from . import callback

__all__ = ["callback"]
