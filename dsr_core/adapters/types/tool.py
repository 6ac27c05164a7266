"""DSPy's ``dspy.adapters.types.tool``; the code lives in ``dsr_core.adapters.tool``."""

from ..tool import Tool, ToolCalls, convert_input_schema_to_tool_args

__all__ = ["Tool", "ToolCalls", "convert_input_schema_to_tool_args"]
