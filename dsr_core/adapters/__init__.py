"""Adapters turn a signature, demos and inputs into chat messages, and replies into typed outputs.

Custom field types live here too, as in DSPy's ``dspy.adapters.types``: ``History``, ``Image``, ``Code``,
``Reasoning`` and their base ``Type``.
"""

from .base import Adapter
from .chat import ChatAdapter
from .code import Code
from .custom_types import Type
from .history import History
from .image import Image
from .json_adapter import JSONAdapter
from .reasoning import Reasoning
from .tool import Tool, ToolCalls

__all__ = [
    "Adapter",
    "ChatAdapter",
    "Code",
    "History",
    "Image",
    "JSONAdapter",
    "Reasoning",
    "Tool",
    "ToolCalls",
    "Type",
]
