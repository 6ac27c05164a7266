"""DSPy's ``dspy.predict.parallel``; the code lives in ``dsr_core.modules.parallel``."""

from ..modules.parallel import Parallel

__all__ = ["Parallel"]
