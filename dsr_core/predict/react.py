"""DSPy's ``dspy.predict.react``; the code lives in ``dsr_core.modules.react`` (``Tool`` in ``dsr_core.adapters.tool``)."""

from ..adapters.tool import Tool, ToolCalls
from ..modules.react import ReAct

__all__ = ["ReAct", "Tool", "ToolCalls"]
