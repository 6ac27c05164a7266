"""Code: source code as a field; ``Code["python"]`` names the language shown to the LM."""

from __future__ import annotations

import re
from typing import Any, ClassVar

import pydantic

from .custom_types import Type

_FENCED = re.compile(r"```(?:[^\n]*)\n(.*?)```", re.DOTALL)
_INLINE = re.compile(r"```(.*?)```", re.DOTALL)


def _strip_fences(code: str) -> str:
    """The code inside a markdown code block, if there is one."""
    match = _FENCED.search(code) or _INLINE.search(code)
    return match.group(1).strip() if match else code


class Code(Type):
    """``code: dsr.Code["python"] = dsr.OutputField()``; the reply's markdown fences are removed on parse."""

    code: str
    language: ClassVar[str] = "python"

    def format(self) -> str:
        return self.code

    @pydantic.model_serializer()
    def serialize_model(self) -> Any:
        return self.format()  # plain text: no content-part marks

    @classmethod
    def description(cls) -> str:
        return (
            "Code represented in a string, specified in the `code` field. If this is an output field, the code "
            f"field should follow the markdown code block format, e.g. \n```{cls.language.lower()}\n{{code}}\n```"
            f"\nProgramming language: {cls.language}"
        )

    @pydantic.model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if isinstance(data, cls):
            return data
        if isinstance(data, str):
            return {"code": _strip_fences(data)}
        if isinstance(data, dict):
            if not isinstance(data.get("code"), str):
                raise ValueError("`code` field is required for `Code` and must be a string")
            return {"code": _strip_fences(data["code"])}
        raise ValueError(f"Received invalid value for `Code`: {data!r}")

    def __class_getitem__(cls, language: Any) -> Any:  # type: ignore[override]
        if not isinstance(language, str):
            return super().__class_getitem__(language)  # type: ignore[misc]
        cached = _LANGUAGES.get((cls, language))
        if cached is None:
            cached = pydantic.create_model(f"{cls.__name__}_{language}", __base__=cls)
            cached.language = language
            _LANGUAGES[(cls, language)] = cached
        return cached


_LANGUAGES: dict[tuple[type, str], Any] = {}
