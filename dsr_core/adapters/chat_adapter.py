"""DSPy's module path ``dspy.adapters.chat_adapter``: the ChatAdapter lives in ``chat``."""

from .chat import ChatAdapter

__all__ = ["ChatAdapter"]
