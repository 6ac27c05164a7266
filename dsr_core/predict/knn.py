"""DSPy's ``dspy.predict.knn``; the code lives in ``dsr_core.modules.knn``."""

from ..modules.knn import KNN

__all__ = ["KNN"]
