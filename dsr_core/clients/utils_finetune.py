"""DSPy's ``dspy.clients.utils_finetune``; the code lives in ``dsr_core.lm.finetune``."""

from ..lm.finetune import TrainDataFormat, TrainingStatus, infer_data_format

__all__ = ["TrainDataFormat", "TrainingStatus", "infer_data_format"]
