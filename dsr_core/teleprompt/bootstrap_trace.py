"""DSPy's ``dspy.teleprompt.bootstrap_trace``; the code lives in ``dsr_core.optimizers.bootstrap_finetune``."""

from ..optimizers.bootstrap_finetune import FailedPrediction, TraceData, bootstrap_trace_data

__all__ = ["FailedPrediction", "TraceData", "bootstrap_trace_data"]
