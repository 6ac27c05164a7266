"""LMs: the ``BaseLM`` contract and dsr's OpenAI-compatible ``LM``, with the call history.

``client`` holds the ``LM`` (requests, cache, limits, probe), ``pools`` its SDK clients per event loop,
``retry`` the retry policy, ``failures`` the typed errors, ``response`` what a call returns, ``history``
the call history and ``inspect_history``, ``base`` the ``BaseLM`` a custom LM subclasses.
"""

from __future__ import annotations

from .base import LM_CLASS_STATE_KEY, BaseLM
from .client import (
    DEFAULT_API_KEY_ENV,
    DEFAULT_BASE_URL,
    DSPY_LM_CLASS,
    LM,
    PROBE_MESSAGES,
    PROBE_TIMEOUT,
    SAMPLING_KEYS,
)
from .history import GLOBAL_HISTORY, format_history, inspect_history, record_history
from .pools import POOL_SIZE
from .response import LMResponse, completion_outputs, completion_usage
from .retry import MAX_RETRY_AFTER

__all__ = [
    "DEFAULT_API_KEY_ENV",
    "DEFAULT_BASE_URL",
    "DSPY_LM_CLASS",
    "GLOBAL_HISTORY",
    "LM",
    "LM_CLASS_STATE_KEY",
    "MAX_RETRY_AFTER",
    "POOL_SIZE",
    "PROBE_MESSAGES",
    "PROBE_TIMEOUT",
    "SAMPLING_KEYS",
    "BaseLM",
    "LMResponse",
    "completion_outputs",
    "completion_usage",
    "format_history",
    "inspect_history",
    "record_history",
]
