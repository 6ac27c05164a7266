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
        self,
        signature: Any,
        rationale_field: Any = None,
        rationale_field_type: type | None = None,
        *,
        rationale_type: type | None = None,
        **config: Any,
    ) -> None:
        """DSPy's keywords: ``rationale_field`` (a field, whose own type wins) and ``rationale_field_type``
        (``rationale_type`` is dsr's older name for it); the rest of ``config`` goes to ``Predict``."""
        signature = ensure_signature(signature)
        field_type = rationale_field_type or rationale_type or str
        if rationale_field is not None:  # DSPy: the field's annotation, not rationale_field_type
            field_type = getattr(rationale_field, "annotation", None) or str
        field = rationale_field or OutputField(desc="", prefix="Reasoning:")
        self.predict = Predict(signature.prepend("reasoning", field, field_type), **config)

    @property
    def signature(self) -> Any:
        return self.predict.signature

    async def aforward(self, **kwargs: Any) -> Prediction:  # type: ignore[override]
        return await self.predict.acall(**kwargs)

    def forward(self, **kwargs: Any) -> Prediction:  # type: ignore[override]
        return self.predict(**kwargs)

    def __repr__(self) -> str:
        return f"ChainOfThought({self.predict.signature.signature!r})"
