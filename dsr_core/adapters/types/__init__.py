"""Turning values into prompt text and reply text back into typed values (pydantic does the validating).

Also DSPy's ``dspy.adapters.types`` package: the custom types are attributes here, and DSPy's submodules
(``types.tool``, ``types.image``, ``types.history``, ...) re-export them from where they live in ``adapters``."""

from __future__ import annotations

import ast
import enum
import functools
import inspect
import json
import types
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin

from ...signatures import Field, annotation_name
from ..markers import loaded

if TYPE_CHECKING:  # pydantic loads on first use: str fields, the usual case, never need it
    import pydantic

__all__ = [
    "Code",  # noqa: F822 - from __getattr__
    "History",  # noqa: F822 - from __getattr__
    "Image",  # noqa: F822 - from __getattr__
    "Reasoning",  # noqa: F822 - from __getattr__
    "Tool",  # noqa: F822 - from __getattr__
    "ToolCalls",  # noqa: F822 - from __getattr__
    "Type",  # noqa: F822 - from __getattr__
    "format_value",
    "jsonable",
    "output_type_note",
    "parse_value",
    "python_type_reminder",
]


# DSPy's dspy.adapters.types path
_CUSTOM_TYPES = frozenset({"Code", "History", "Image", "Reasoning", "Tool", "ToolCalls", "Type"})


def __getattr__(name: str) -> Any:
    if name in _CUSTOM_TYPES:  # imported on first use, as the package imports them
        from ... import adapters

        return getattr(adapters, name)
    from ..._submodules import submodule

    return submodule(__name__, name)  # ``types.tool`` without importing it first, as in DSPy


def _is_loaded_subclass(annotation: Any, *names: tuple[str, str]) -> bool:
    """Whether ``annotation`` is a subclass of one of the custom types ``(module, class)`` (only a type that
    has been imported can be one)."""
    bases = tuple(base for module, name in names if (base := loaded(module, name)) is not None)
    return bool(bases) and _is_subclass(annotation, bases)


@functools.lru_cache(maxsize=1024)
def _adapter_cached(annotation: Any) -> pydantic.TypeAdapter[Any]:
    import pydantic

    return pydantic.TypeAdapter(annotation)


def type_adapter(annotation: Any) -> pydantic.TypeAdapter[Any]:
    try:
        return _adapter_cached(annotation)
    except TypeError:  # an unhashable annotation
        import pydantic

        return pydantic.TypeAdapter(annotation)


def jsonable(value: Any) -> Any:
    """A JSON-compatible form of ``value`` (pydantic models, dataclasses, enums, sets...)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    try:
        return type_adapter(type(value)).dump_python(value, mode="json")
    except Exception:  # noqa: BLE001 - anything pydantic cannot dump is shown as text
        return str(value)


def _format_blob(blob: str) -> str:
    if "\n" not in blob and "«" not in blob and "»" not in blob:
        return f"«{blob}»"
    return "«««\n    " + blob.replace("\n", "\n    ") + "\n»»»"


def format_value(field: Field, value: Any) -> str:
    """Render an input (or demo output) value as DSPy does: lists of text numbered, structures as JSON."""
    if isinstance(value, list) and field.annotation is str:
        if not value:
            return "N/A"
        if len(value) == 1:
            return _format_blob(str(value[0]))
        return "\n".join(f"[{i + 1}] {_format_blob(str(v))}" for i, v in enumerate(value))
    if isinstance(value, str):
        return value
    plain = jsonable(value)
    if isinstance(plain, (dict, list)):
        return json.dumps(plain, ensure_ascii=False)
    return str(plain)


def _is_subclass(annotation: Any, base: type | tuple[type, ...]) -> bool:
    return inspect.isclass(annotation) and issubclass(annotation, base)


def json_schema(annotation: Any) -> dict[str, Any]:
    def type_first(d: Any) -> Any:
        if isinstance(d, Mapping):
            return {k: type_first(v) for k, v in sorted(d.items(), key=lambda kv: (kv[0] != "type", kv[0]))}
        if isinstance(d, list):
            return [type_first(v) for v in d]
        return d

    return type_first(type_adapter(annotation).json_schema())


def output_type_note(field: Field) -> str:
    """The ``# note: ...`` hint that follows an output placeholder in the structure section."""
    annotation = field.annotation
    if (
        field.kind == "input"
        or annotation is str
        or _is_loaded_subclass(annotation, ("reasoning", "Reasoning"), ("code", "Code"))
    ):
        return ""  # Reasoning reads as a str; Code's type description already says what to write
    if annotation is bool:
        desc = "must be True or False"
    elif annotation in (int, float):
        desc = f"must be a single {annotation.__name__} value"
    elif _is_subclass(annotation, enum.Enum):
        desc = "must be one of: " + "; ".join(str(m.value) for m in annotation)
    elif get_origin(annotation) is Literal:
        desc = "must exactly match (no extra characters) one of: " + "; ".join(str(a) for a in get_args(annotation))
    else:
        desc = f"must adhere to the JSON schema: {json.dumps(json_schema(annotation), ensure_ascii=False)}"
    return " " * 8 + f"# note: the value you produce {desc}"


def python_type_reminder(field: Field) -> str:
    """The `` (must be formatted as a valid Python int)`` reminder after an output in the request."""
    if field.annotation is str:
        return ""
    if field.annotation is not None and field.annotation is loaded("tool", "ToolCalls"):  # DSPy's exact-class test
        return ' (must be a JSON object like {"tool_calls": [{"name": "...", "args": {...}}]})'
    return f" (must be formatted as a valid Python {annotation_name(field.annotation)})"


def constrained(field: Field) -> Any:
    """The field's type with its pydantic constraints attached (``Annotated[int, Field(ge=0)]``)."""
    if not field.constraints:
        return field.annotation
    import pydantic

    return Annotated[field.annotation, pydantic.Field(**dict(field.constraints))]


def _strip_quotes(text: str) -> str:
    if len(text) > 1 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def parse_value(value: Any, annotation: Any, constraints: tuple[tuple[str, Any], ...] = ()) -> Any:
    """Validate a reply value into ``annotation`` (and its pydantic ``constraints``, e.g. ``(("ge", 0),)``).

    Raises ValueError (pydantic's ValidationError is one) when it cannot.
    """
    if constraints:
        import pydantic

        parsed = parse_value(value, annotation)
        checked = type_adapter(Annotated[annotation, pydantic.Field(**dict(constraints))])
        return checked.validate_python(parsed)
    if annotation is str:
        return value if isinstance(value, str) else json.dumps(jsonable(value), ensure_ascii=False)
    if _is_subclass(annotation, enum.Enum) and isinstance(value, str):
        text = _strip_quotes(value.strip())
        for member in annotation:
            if str(member.value) == text or member.name == text:
                return member
        raise ValueError(f"{text!r} is not one of {[m.value for m in annotation]}")
    origin = get_origin(annotation)
    if origin is Literal and isinstance(value, str):
        text = value.strip()
        if text.startswith("Literal[") and text.endswith("]"):
            text = text[len("Literal[") : -1]
        text = _strip_quotes(text)
        if text in get_args(annotation):
            return text
        value = text
    import pydantic

    adapter = type_adapter(annotation)
    if not isinstance(value, str):
        return adapter.validate_python(value)
    if origin in (Union, types.UnionType) and str in get_args(annotation):
        return adapter.validate_python(value)
    if _is_loaded_subclass(annotation, ("custom_types", "Type")):
        try:  # a custom type reads its own text first (Code takes the fenced block as written)
            return adapter.validate_python(value)
        except pydantic.ValidationError:
            pass
    text = value.strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    try:
        candidate: Any = json.loads(text)
    except ValueError:
        try:
            candidate = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            candidate = text
    try:
        return adapter.validate_python(candidate)
    except pydantic.ValidationError:
        if candidate is not text:
            return adapter.validate_python(text)  # e.g. "1e3" read as a float literal, wanted as str in a union
        raise
