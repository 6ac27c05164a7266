"""DSPy's ``dspy.predict.code_act``; the code lives in ``dsr_core.modules.code_act``."""

from ..modules.code_act import CodeAct

__all__ = ["CodeAct"]
