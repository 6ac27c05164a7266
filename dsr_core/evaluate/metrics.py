"""DSPy's ``dspy.evaluate.metrics``; the code lives in ``dsr_core.metrics``."""

from ..metrics import EM, answer_exact_match, answer_passage_match, em_score, normalize_text

__all__ = ["EM", "answer_exact_match", "answer_passage_match", "em_score", "normalize_text"]
