"""ChainOfThought: Predict with a ``reasoning`` output field before the signature's own outputs."""

from __future__ import annotations

from typing import Any

from ..primitives import Prediction
from ..signatures import OutputField, ensure_signature
from .module import Module
from .predict import Predict


class ChainOfThought(Module):
    """The inner predictor is ``self.predict`` so dotted names match DSPy's (``answer.predict``)."""

    def __init__(
        self, signature: Any, *, rationale_field: Any = None, rationale_type: type = str, **config: Any
    ) -> None:
        signature = ensure_signature(signature)
        field = rationale_field or OutputField(desc="", prefix="Reasoning:")
        self.predict = Predict(signature.prepend("reasoning", field, rationale_type), **config)

    @property
    def signature(self) -> Any:
        return self.predict.signature

    async def aforward(self, **kwargs: Any) -> Prediction:  # type: ignore[override]
        return await self.predict.acall(**kwargs)

    def forward(self, **kwargs: Any) -> Prediction:  # type: ignore[override]
        return self.predict(**kwargs)

    def __repr__(self) -> str:
        return f"ChainOfThought({self.predict.signature.signature!r})"
