"""Reasoning: a str-like output type for a model's reasoning, shown to the LM as a plain ``str`` field."""

from __future__ import annotations

from typing import Any, ClassVar

import pydantic

from .custom_types import Type


class Reasoning(Type):
    """``reasoning: dsr.Reasoning = dsr.OutputField()``; compares equal to its text and behaves like a str."""

    content: str
    prompt_type_name: ClassVar[str] = "str"  # how adapters name the type in prompts, as DSPy does

    def format(self) -> str:
        return self.content

    @pydantic.model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if isinstance(data, cls):
            return data
        if isinstance(data, str):
            return {"content": data}
        if isinstance(data, dict) and isinstance(data.get("content"), str):
            return {"content": data["content"]}
        raise ValueError(f"Received invalid value for `Reasoning`: {data!r}")

    def __str__(self) -> str:
        return self.content

    def __repr__(self) -> str:
        return repr(self.content)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Reasoning):
            return self.content == other.content
        if isinstance(other, str):
            return self.content == other
        return False

    def __hash__(self) -> int:
        return hash(self.content)

    def __len__(self) -> int:
        return len(self.content)

    def __contains__(self, item: object) -> bool:
        return isinstance(item, str) and item in self.content

    def __getitem__(self, key: Any) -> str:
        return self.content[key]  # indexing and slicing read the text, as on a str

    def __iter__(self) -> Any:  # type: ignore[override] - the text's characters, not pydantic's fields
        return iter(self.content)

    def __add__(self, other: object) -> Any:
        if isinstance(other, Reasoning):
            return Reasoning(content=self.content + other.content)
        if isinstance(other, str):
            return self.content + other
        return NotImplemented

    def __radd__(self, other: object) -> Any:
        if isinstance(other, str):
            return other + self.content
        return NotImplemented

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            return super().__getattr__(name)  # type: ignore[misc] - pydantic's private attributes
        if hasattr(str, name):
            return getattr(self.content, name)  # str methods: .strip(), .lower(), ...
        raise AttributeError(f"`Reasoning` object has no attribute {name!r}")
