"""DSPy's ``dspy.predict.multi_chain_comparison``; the code lives in ``dsr_core.modules.multi_chain_comparison``."""

from ..modules.multi_chain_comparison import MultiChainComparison

__all__ = ["MultiChainComparison"]
