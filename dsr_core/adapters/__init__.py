"""Adapters turn a signature, demos and inputs into chat messages, and replies into typed outputs.

Custom field types live here too, as in DSPy's ``dspy.adapters.types``: ``History``, ``Image``, ``Audio``,
``File``, ``Document``, ``Citations``, ``Code``, ``Reasoning`` and their base ``Type``.
"""

from typing import Any

from .base import Adapter
from .chat import ChatAdapter
from .json_adapter import JSONAdapter

# imported on first use: building their pydantic models costs more than the rest of ``import dsr_core``
_LAZY = {
    "Audio": "audio",
    "Citations": "citation",
    "Code": "code",
    "Document": "document",
    "File": "file",
    "History": "history",
    "Image": "image",
    "Reasoning": "reasoning",
    "Tool": "tool",
    "ToolCalls": "tool",
    "Type": "custom_types",
    "TwoStepAdapter": "two_step_adapter",
    "XMLAdapter": "xml_adapter",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    from .._submodules import submodule

    return submodule(__name__, name)  # ``adapters.chat_adapter`` without importing it first, as in DSPy


__all__ = [
    "Adapter",
    "Audio",
    "ChatAdapter",
    "Citations",
    "Code",
    "Document",
    "File",
    "History",
    "Image",
    "JSONAdapter",
    "Reasoning",
    "Tool",
    "ToolCalls",
    "TwoStepAdapter",
    "Type",
    "XMLAdapter",
]
