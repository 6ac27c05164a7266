"""BaseLM, the contract a custom LM implements (DSPy's): it lives in ``dsr_core.lm.base``; this module
keeps the import path ``dsr_core.base_lm``."""

from __future__ import annotations

from .lm.base import LM_CLASS_STATE_KEY, BaseLM
from .lm.history import GLOBAL_HISTORY, record_history
from .lm.response import LMResponse, completion_outputs, completion_usage

__all__ = [
    "GLOBAL_HISTORY",
    "LM_CLASS_STATE_KEY",
    "BaseLM",
    "LMResponse",
    "completion_outputs",
    "completion_usage",
    "record_history",
]
