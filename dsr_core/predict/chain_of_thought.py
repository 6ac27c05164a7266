"""DSPy's ``dspy.predict.chain_of_thought``; the code lives in ``dsr_core.modules.chain_of_thought``."""

from ..modules.chain_of_thought import ChainOfThought

__all__ = ["ChainOfThought"]
