"""DSPy's ``dspy.predict.program_of_thought``; the code lives in ``dsr_core.modules.program_of_thought``."""

from ..modules.program_of_thought import ProgramOfThought

__all__ = ["ProgramOfThought"]
