"""How custom-type values travel inside prompt text, and which custom types exist yet.

A custom type (``Image``, ``Code``, ... in ``custom_types``) renders its content parts as a marked JSON blob
inside a message's text; ``split_message_content`` cuts user messages at those marks into content parts.
Nothing here builds a pydantic model: the adapters import this module, and ``custom_types`` (pydantic's
model machinery, tens of milliseconds) is imported only when a program uses a custom type.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

CUSTOM_TYPE_START_IDENTIFIER = "<<CUSTOM-TYPE-START-IDENTIFIER>>"
CUSTOM_TYPE_END_IDENTIFIER = "<<CUSTOM-TYPE-END-IDENTIFIER>>"
_MARKED = re.compile(
    re.escape(CUSTOM_TYPE_START_IDENTIFIER) + r"(.*?)" + re.escape(CUSTOM_TYPE_END_IDENTIFIER), re.DOTALL
)


def loaded(module: str, name: str) -> Any:
    """``dsr_core.adapters.<module>.<name>`` when that module has been imported, else None.

    An adapter asks this instead of importing a custom type: no value or annotation can be of a class that
    was never defined, so while the module is not loaded the check it would make is already answered.
    """
    found = sys.modules.get(f"{__package__}.{module}")
    return getattr(found, name, None) if found is not None else None


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
