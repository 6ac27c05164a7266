"""MultiChainComparison: read M reasoning attempts and produce one holistic answer (DSPy's module).

The signature gets ``reasoning_attempt_1`` ... ``reasoning_attempt_M`` inputs and a ``rationale`` output
before its own outputs; each attempt is shown as ``«I'm trying to <reasoning> I'm not sure but my
prediction is <answer>»``, using the first line of each.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..primitives import Prediction
from ..signatures import InputField, OutputField, ensure_signature
from .module import Module
from .predict import Predict


class MultiChainComparison(Module):
    """``MultiChainComparison("question -> answer", M=3)(completions, question=...)``.

    ``completions`` are M predictions (or dicts) with a ``rationale`` or ``reasoning`` and the signature's
    last output field. The inner predictor is ``self.predict`` (sampled at ``temperature``).
    """

    def __init__(self, signature: Any, M: int = 3, temperature: float = 0.7, **config: Any) -> None:  # noqa: N803
        self.M = M
        signature = ensure_signature(signature)
        *_, self.last_key = signature.output_fields.keys()
        for idx in range(M):
            signature = signature.append(
                f"reasoning_attempt_{idx + 1}",
                InputField(prefix=f"Student Attempt #{idx + 1}:", desc="${reasoning attempt}"),
            )
        signature = signature.prepend(
            "rationale",
            OutputField(
                prefix="Accurate Reasoning: Thank you everyone. Let's now holistically",
                desc="${corrected reasoning}",
            ),
        )
        self.predict = Predict(signature, temperature=temperature, **config)

    def _inputs(self, completions: Sequence[Mapping[str, Any]], kwargs: dict[str, Any]) -> dict[str, Any]:
        attempts = []
        for completion in completions:
            rationale = completion.get("rationale", completion.get("reasoning")) or ""
            rationale = str(rationale).strip().split("\n")[0].strip()
            answer = str(completion[self.last_key]).strip().split("\n")[0].strip()
            attempts.append(f"«I'm trying to {rationale} I'm not sure but my prediction is {answer}»")
        if len(attempts) != self.M:
            raise ValueError(
                f"The number of attempts ({len(attempts)}) doesn't match the expected number M ({self.M}). "
                "Please set the correct value for M when initializing MultiChainComparison."
            )
        return {**{f"reasoning_attempt_{i + 1}": a for i, a in enumerate(attempts)}, **kwargs}

    async def aforward(self, completions: Sequence[Mapping[str, Any]], **kwargs: Any) -> Prediction:  # type: ignore[override]
        return await self.predict.acall(**self._inputs(completions, kwargs))

    def forward(self, completions: Sequence[Mapping[str, Any]], **kwargs: Any) -> Prediction:  # type: ignore[override]
        return self.predict(**self._inputs(completions, kwargs))

    def __repr__(self) -> str:
        return f"MultiChainComparison({self.predict.signature.signature!r}, M={self.M})"


__all__ = ["MultiChainComparison"]
