"""The base of custom field types (``Image``, ``Code``, ...): values that render as content parts.

A custom type renders itself (``format()``) as a list of OpenAI content parts, or as plain text. In a prompt
the parts travel as a marked JSON blob inside the message text; ``split_message_content`` then cuts every
user message at those marks into text and typed parts, as DSPy's adapters do.
"""

from __future__ import annotations

import json
import re
from typing import Any, get_args, get_origin

import pydantic

CUSTOM_TYPE_START_IDENTIFIER = "<<CUSTOM-TYPE-START-IDENTIFIER>>"
CUSTOM_TYPE_END_IDENTIFIER = "<<CUSTOM-TYPE-END-IDENTIFIER>>"
_MARKED = re.compile(
    re.escape(CUSTOM_TYPE_START_IDENTIFIER) + r"(.*?)" + re.escape(CUSTOM_TYPE_END_IDENTIFIER), re.DOTALL
)


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


def _parse_parts(blob: str) -> Any:
    for parse in (json.loads, lambda text: json.loads(json.loads(f'"{text}"'))):
        try:
            return parse(blob)
        except (ValueError, TypeError):
            continue
    return None


def split_message_content(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Turn user messages that carry custom-type marks into lists of content parts (in place; returned).

    Text between the parts is kept exactly; a blob that is not JSON stays as text.
    """
    for message in messages:
        content = message.get("content")
        if message.get("role") != "user" or not isinstance(content, str) or CUSTOM_TYPE_START_IDENTIFIER not in content:
            continue
        parts: list[dict[str, Any]] = []
        last = 0
        for match in _MARKED.finditer(content):
            start, end = match.span()
            if start > last:
                parts.append({"type": "text", "text": content[last:start]})
            blob = match.group(1).strip()
            parsed = _parse_parts(blob)
            if isinstance(parsed, list) and parsed:
                parts.extend(parsed)
            else:
                parts.append({"type": "text", "text": blob})
            last = end
        if last == 0:
            continue
        if last < len(content):
            parts.append({"type": "text", "text": content[last:]})
        message["content"] = parts
    return messages
