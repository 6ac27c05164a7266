"""History: earlier turns of a conversation, given to a predictor as an input field.

``dsr.History(messages=[{"question": ..., "answer": ...}, ...])`` renders, as in DSPy's ChatAdapter, as one
user turn (the message's input fields, then the output-format reminder the current request also carries) and
one assistant turn (its output fields) per message, after the demos and before the current request; a message
with no input field (an output-only event) gets no user turn.
"""

from __future__ import annotations

from typing import Any

import pydantic


class History(pydantic.BaseModel):
    """Prior turns: a list of dicts keyed by the signature's field names.

    A message with exactly ``role`` and ``content`` keys is passed through as that chat message as it is.
    """

    messages: list[dict[str, Any]]

    model_config = pydantic.ConfigDict(
        defer_build=True, frozen=True, str_strip_whitespace=True, validate_assignment=True, extra="forbid"
    )

    def with_messages(self, messages: list[dict[str, Any]]) -> History:
        """A new History with ``messages`` appended."""
        return History(messages=[*self.messages, *messages])


def is_raw_message(message: dict[str, Any]) -> bool:
    """A chat message as the LM takes it (``{"role": "user", "content": "..."}``), not field values."""
    return set(message) == {"role", "content"} and message["role"] in ("user", "assistant", "system")
