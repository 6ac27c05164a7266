"""Citations: quoted passages of the input ``Document``s, as an output field (DSPy's ``dspy.experimental.Citations``).

dsr reads them from the reply's text, as DSPy does for an LM without native citations: the field's value is
JSON, a list of ``{"cited_text", "document_index", "start_char_index", "end_char_index", ...}`` objects (or
``{"citations": [...]}``, or one such object). DSPy's native path (Anthropic's Citations API through LiteLLM:
the field is left out of the prompt and filled from the response's citation data) is not in dsr, which
talks to OpenAI-compatible endpoints; ``Citations.parse_lm_response`` reads such data when a caller has it.
"""

from typing import Any

import pydantic

from .custom_types import Type


class Citations(Type):
    """Passages quoted from the input documents, each with its document's index and its character span.

    (``citations: Citations = dsr.OutputField()``; iterate it, index it or take ``len()`` of it. This text is
    the JSON schema's description in the prompt.)
    """

    class Citation(Type):
        """One quoted passage: its exact text, its document's index and its start and end character offsets."""

        type: str = "char_location"
        cited_text: str
        document_index: int
        document_title: str | None = None
        start_char_index: int
        end_char_index: int
        supported_text: str | None = None

        def format(self) -> dict[str, Any]:  # type: ignore[override]
            out: dict[str, Any] = {
                "type": self.type,
                "cited_text": self.cited_text,
                "document_index": self.document_index,
                "start_char_index": self.start_char_index,
                "end_char_index": self.end_char_index,
            }
            if self.document_title:
                out["document_title"] = self.document_title
            if self.supported_text:
                out["supported_text"] = self.supported_text
            return out

    citations: list[Citation]

    @classmethod
    def from_dict_list(cls, citations_dicts: list[dict[str, Any]]) -> "Citations":
        return cls(citations=[cls.Citation(**item) for item in citations_dicts])

    @classmethod
    def description(cls) -> str:
        return (
            "Citations with quoted text and source references. "
            "Include the exact text being cited and information about its source."
        )

    def format(self) -> list[dict[str, Any]]:
        return [citation.format() for citation in self.citations]

    @pydantic.model_validator(mode="before")
    @classmethod
    def _normalize(cls, data: Any) -> Any:
        if isinstance(data, cls):
            return data
        if isinstance(data, list) and all(isinstance(item, dict) and "cited_text" in item for item in data):
            return {"citations": [cls.Citation(**item) for item in data]}
        if isinstance(data, dict):
            if isinstance(data.get("citations"), list):
                return {
                    "citations": [
                        cls.Citation(**item) if isinstance(item, dict) else item for item in data["citations"]
                    ]
                }
            if "citations" not in data and "cited_text" in data:
                return {"citations": [cls.Citation(**data)]}
        raise ValueError(f"Received invalid value for `Citations`: {data}")

    def __iter__(self) -> Any:  # type: ignore[override]
        return iter(self.citations)

    def __len__(self) -> int:
        return len(self.citations)

    def __getitem__(self, index: Any) -> Any:
        return self.citations[index]

    @classmethod
    def parse_lm_response(cls, response: str | dict[str, Any]) -> "Citations | None":
        """Citations from a response dict's ``citations`` list (provider citation data), else None."""
        if isinstance(response, dict) and isinstance(response.get("citations"), list):
            return cls.from_dict_list(response["citations"])
        return None
