"""DSPy's ``dspy.predict.aggregation``; the code lives in ``dsr_core.modules.aggregation``."""

from ..modules.aggregation import default_normalize, majority

__all__ = ["default_normalize", "majority"]
