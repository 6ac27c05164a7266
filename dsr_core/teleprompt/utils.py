"""DSPy's ``dspy.teleprompt.utils`` helpers that programs and tests call: minibatches and candidate evaluation."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

from ..primitives import Prediction

log = logging.getLogger(__name__)


def create_minibatch(trainset: Sequence[Any], batch_size: int = 50, rng: random.Random | None = None) -> list[Any]:
    """``batch_size`` examples of ``trainset`` drawn without replacement (all of them when it is smaller)."""
    chosen = (rng or random).sample(range(len(trainset)), min(batch_size, len(trainset)))
    return [trainset[i] for i in chosen]


def eval_candidate_program(
    batch_size: int,
    trainset: Sequence[Any],
    candidate_program: Any,
    evaluate: Callable[..., Any],
    rng: random.Random | None = None,
) -> Any:
    """``evaluate`` the candidate on the whole trainset, or on a minibatch of ``batch_size`` when it is larger;
    a failed evaluation is logged and scores 0, as in DSPy."""
    try:
        if batch_size >= len(trainset):
            return evaluate(candidate_program, devset=trainset, callback_metadata={"metric_key": "eval_full"})
        minibatch = create_minibatch(trainset, batch_size, rng)
        return evaluate(candidate_program, devset=minibatch, callback_metadata={"metric_key": "eval_minibatch"})
    except Exception:
        log.error("An exception occurred during evaluation", exc_info=True)
        return Prediction(score=0.0, results=[])


__all__ = ["create_minibatch", "eval_candidate_program"]
