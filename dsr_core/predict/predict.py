"""DSPy's ``dspy.predict.predict``; the code lives in ``dsr_core.modules.predict``."""

from typing import Any

from ..modules.predict import Predict


def serialize_object(obj: Any) -> Any:
    """DSPy's helper: pydantic models as JSON-mode dicts, through lists, tuples and dicts; the rest as it is."""
    if hasattr(obj, "model_dump") and not isinstance(obj, type):
        return obj.model_dump(mode="json")
    if isinstance(obj, list):
        return [serialize_object(item) for item in obj]
    if isinstance(obj, tuple):
        return tuple(serialize_object(item) for item in obj)
    if isinstance(obj, dict):
        return {key: serialize_object(value) for key, value in obj.items()}
    return obj


__all__ = ["Predict", "serialize_object"]
