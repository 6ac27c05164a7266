"""The base of custom field types (``Image``, ``Code``, ...): values that render as content parts.

A custom type renders itself (``format()``) as a list of OpenAI content parts, or as plain text. In a prompt
the parts travel as a marked JSON blob inside the message text (``markers``), as DSPy's adapters do.
"""

from __future__ import annotations

import json
from typing import Any, get_args, get_origin

import pydantic

from .markers import CUSTOM_TYPE_END_IDENTIFIER, CUSTOM_TYPE_START_IDENTIFIER, split_message_content


class Type(pydantic.BaseModel):
    """Base class of custom types for signature fields (DSPy's ``dspy.Type``).

    Subclasses implement ``format()``: a list of content parts (``[{"type": "image_url", ...}]``) or a string.
    ``description()`` is shown to the LM next to fields of this type.
    """

    model_config = pydantic.ConfigDict(defer_build=True)  # schemas built on first use: importing stays cheap

    def format(self) -> list[dict[str, Any]] | str:
        raise NotImplementedError

    @classmethod
    def description(cls) -> str:
        return ""

    @classmethod
    def extract_custom_type_from_annotation(cls, annotation: Any) -> list[type[Type]]:
        """Every subclass of ``cls`` inside ``annotation`` (``list[dict[str, Image]]`` -> ``[Image]``)."""
        try:
            if isinstance(annotation, type) and issubclass(annotation, cls):
                return [annotation]
        except TypeError:
            pass
        if get_origin(annotation) is None:
            return []
        found: list[type[Type]] = []
        for arg in get_args(annotation):
            found.extend(cls.extract_custom_type_from_annotation(arg))
        return found

    @pydantic.model_serializer()
    def serialize_model(self) -> Any:
        formatted = self.format()
        if isinstance(formatted, list):
            return CUSTOM_TYPE_START_IDENTIFIER + json.dumps(formatted, ensure_ascii=False) + CUSTOM_TYPE_END_IDENTIFIER
        return formatted


__all__ = ["CUSTOM_TYPE_END_IDENTIFIER", "CUSTOM_TYPE_START_IDENTIFIER", "Type", "split_message_content"]
