"""DSPy's ``dspy.teleprompt.knn_fewshot``; the code lives in ``dsr_core.optimizers.knn_fewshot``."""

from ..optimizers.knn_fewshot import KNNFewShot

__all__ = ["KNNFewShot"]
