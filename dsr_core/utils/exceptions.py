"""DSPy's ``dspy.utils.exceptions``: its errors under dsr's names (dsr's own live in ``dsr_core.errors``)."""

from ..errors import AdapterParseError, ContextWindowExceededError, DsrError

DSPyError = DsrError  # DSPy's base error is dsr's

__all__ = ["AdapterParseError", "ContextWindowExceededError", "DSPyError", "DsrError"]
