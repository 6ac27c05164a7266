"""DSPy's ``dspy.teleprompt.signature_opt``: ``SignatureOptimizer``, DSPy's deprecated name for COPRO."""

import warnings
from typing import Any

from ..optimizers.copro import COPRO


class SignatureOptimizer(COPRO):
    """COPRO under its old name; ``compile(student, devset=..., eval_kwargs=...)`` as DSPy's takes them."""

    def __init__(
        self,
        prompt_model: Any = None,
        metric: Any = None,
        breadth: int = 10,
        depth: int = 3,
        init_temperature: float = 1.4,
        verbose: bool = False,
        track_stats: bool = False,
    ) -> None:
        warnings.warn(
            "SignatureOptimizer has been deprecated and replaced with COPRO", DeprecationWarning, stacklevel=2
        )
        super().__init__(prompt_model, metric, breadth, depth, init_temperature, verbose, track_stats)

    def compile(self, student: Any, *, devset: Any, eval_kwargs: Any) -> Any:  # type: ignore[override]
        return super().compile(student, trainset=devset, eval_kwargs=eval_kwargs)


__all__ = ["COPRO", "SignatureOptimizer"]
