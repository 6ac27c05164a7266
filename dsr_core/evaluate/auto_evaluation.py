"""DSPy's ``dspy.evaluate.auto_evaluation``; the code lives in ``dsr_core.metrics``."""

from ..metrics import (
    AnswerCompleteness,
    AnswerGroundedness,
    CompleteAndGrounded,
    DecompositionalSemanticRecallPrecision,
    SemanticF1,
    SemanticRecallPrecision,
)

__all__ = [
    "AnswerCompleteness",
    "AnswerGroundedness",
    "CompleteAndGrounded",
    "DecompositionalSemanticRecallPrecision",
    "SemanticF1",
    "SemanticRecallPrecision",
]
