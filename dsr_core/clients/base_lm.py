"""DSPy's ``dspy.clients.base_lm``; the code lives in ``dsr_core.lm.base`` and ``dsr_core.lm.history``."""

from ..lm.base import LM_CLASS_STATE_KEY, BaseLM
from ..lm.history import GLOBAL_HISTORY, inspect_history

__all__ = ["GLOBAL_HISTORY", "LM_CLASS_STATE_KEY", "BaseLM", "inspect_history"]
