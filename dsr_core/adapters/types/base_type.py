"""DSPy's ``dspy.adapters.types.base_type``; the code lives in ``dsr_core.adapters.custom_types``."""

from ..custom_types import Type

__all__ = ["Type"]
