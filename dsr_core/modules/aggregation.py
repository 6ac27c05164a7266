"""majority: the most common value of a field across completions (DSPy's ``dspy.majority``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..metrics import normalize_text
from ..primitives import Completions, Prediction


def default_normalize(text: Any) -> str | None:
    """Normalized text, or None for a value that normalizes to nothing (it is then not counted)."""
    return normalize_text(text) or None


def majority(
    prediction_or_completions: Prediction | Completions | Sequence[Mapping[str, Any]],
    normalize: Callable[[Any], Any] | None = default_normalize,
    field: str | None = None,
) -> Prediction:
    """A Prediction holding the first completion whose ``field`` has the most common normalized value; ties go
    to the value seen first. ``field`` defaults to the signature's last output field (the last key without a
    signature). Values normalized to None are ignored unless every value is."""
    source = prediction_or_completions
    if isinstance(source, Prediction):
        source = source.completions
    signature = getattr(source, "signature", None)
    if not isinstance(source, (Completions, Sequence)):
        raise TypeError(
            f"majority takes a Prediction, Completions or a list of completions, got {type(source).__name__}"
        )
    completions = [dict(c) for c in source]
    if not completions:
        raise ValueError("majority needs at least one completion")
    if not field:
        outputs = list(getattr(signature, "output_fields", None) or {})
        field = outputs[-1] if outputs else list(completions[0])[-1]
    norm = normalize or (lambda value: value)
    values = [norm(c[field]) for c in completions]
    counted = [v for v in values if v is not None] or values
    counts: dict[Any, int] = {}
    for value in counted:
        counts[value] = counts.get(value, 0) + 1
    winner = max(counts, key=lambda v: counts[v])
    chosen = next(c for c, v in zip(completions, values, strict=True) if v == winner)
    usage = prediction_or_completions.usage if isinstance(prediction_or_completions, Prediction) else None
    return Prediction.from_completions([chosen], signature, usage)


__all__ = ["default_normalize", "majority"]
