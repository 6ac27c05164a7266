"""Find the order code in a customer message, sampling again until the answer passes a check.

The answer has a checkable form: an order code is two capital letters, a dash and four digits, and it is
copied from the message. ``reward`` scores that without the label (1.0: well formed and in the message; 0.5:
well formed only; 0.0 otherwise), so it can run on every request in production. ``CheckedOrderCode`` is
``BestOfN`` over the one-predictor ``OrderCode``: up to 3 attempts at temperature 1.0, the first that reaches
reward 1.0 wins, else the best one. ``RefinedOrderCode`` is the same with ``Refine``, which also asks the
LM for advice after a failed attempt and shows it to the next one as a hint.

The optimizer tunes the predictor inside (``module.predict``): a bootstrapped demo is the attempt that won
on a training message whose code was right. The bundled 135M model answers in JSON (which llama.cpp
constrains to the schema) far better than in the chat format, so the predictor uses the JSONAdapter.
"""

from __future__ import annotations

import re
from typing import Any

import dsr_core as dsr
from dsr_core.modules.refine import BestOfN, Refine

CODE = re.compile(r"[A-Z]{2}-\d{4}")


class FindOrderCode(dsr.Signature):
    """Find the order code in a customer message. An order code is two capital letters, a dash and four digits."""

    message: str = dsr.InputField()
    order_code: str = dsr.OutputField(desc="the order code, copied exactly from the message")


class OrderCode(dsr.Module):
    def __init__(self) -> None:
        self.predict = dsr.Predict(FindOrderCode, adapter=dsr.JSONAdapter())

    async def aforward(self, message: str) -> dsr.Prediction:
        return await self.predict.acall(message=message)


def reward(args: dict[str, Any], prediction: dsr.Prediction) -> float:
    """1.0 for a well-formed code found in the message, 0.5 for a well-formed one that is not there, else 0.0."""
    code = str(prediction.order_code).strip()
    if not CODE.fullmatch(code):
        return 0.0
    return 1.0 if code in args["message"] else 0.5


class CheckedOrderCode(BestOfN):
    """``BestOfN(OrderCode(), N=3, reward_fn=reward, threshold=1.0)``; its predictor is ``module.predict``."""

    def __init__(self, attempts: int = 3) -> None:
        super().__init__(OrderCode(), N=attempts, reward_fn=reward, threshold=1.0)


class RefinedOrderCode(Refine):
    """``Refine(OrderCode(), N=3, reward_fn=reward, threshold=1.0)``: advice from the LM between attempts."""

    def __init__(self, attempts: int = 3) -> None:
        super().__init__(OrderCode(), N=attempts, reward_fn=reward, threshold=1.0)


def code_match(example: dsr.Example, prediction: dsr.Prediction, trace: object = None) -> bool:
    """The predicted order code is the labeled one, exactly (surrounding spaces ignored)."""
    return str(prediction.order_code).strip() == example.order_code
