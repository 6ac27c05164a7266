"""Document: text (or a PDF) an LM may cite, as an input field (DSPy's ``dspy.experimental.Document``).

It renders as DSPy renders it: an Anthropic-style ``document`` content part with citations enabled,
``{"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": ...}, ...}``, placed
in the user message like any custom type's part. dsr sends it to the OpenAI-compatible endpoint as it is
(there is no LiteLLM to translate it); ``Citations`` outputs are read from the reply's text.
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic

from .custom_types import Type


class Document(Type):
    """``Document(data="Water boils at 100°C.", title="Physics")``, or ``Document("text")``."""

    data: str
    title: str | None = None
    media_type: Literal["text/plain", "application/pdf"] = "text/plain"
    context: str | None = None

    def format(self) -> list[dict[str, Any]]:
        block: dict[str, Any] = {
            "type": "document",
            "source": {
                "type": "base64" if self.media_type == "application/pdf" else "text",
                "media_type": self.media_type,
                "data": self.data,
            },
            "citations": {"enabled": True},
        }
        if self.title:
            block["title"] = self.title
        if self.context:
            block["context"] = self.context
        return [block]

    @classmethod
    def description(cls) -> str:
        return (
            "A document containing text content that can be referenced and cited. "
            "Include the full text content and optionally a title for proper referencing."
        )

    @pydantic.model_validator(mode="before")
    @classmethod
    def _normalize(cls, data: Any) -> Any:
        if isinstance(data, (cls, dict)):
            return data
        if isinstance(data, str):
            return {"data": data}
        raise ValueError(f"Received invalid value for `Document`: {data}")

    def __str__(self) -> str:
        title = f"'{self.title}': " if self.title else ""
        return f"Document({title}{len(self.data)} chars)"
