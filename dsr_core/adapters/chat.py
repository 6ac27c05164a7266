"""ChatAdapter: the ``[[ ## field ## ]]`` format, with a JSONAdapter fallback for replies that do not parse."""

from __future__ import annotations

import copy
import re
import sys
import types
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Union, get_args, get_origin

from ..errors import AdapterParseError
from ..primitives import Usage
from ..signatures import Field, Signature, type_name
from .base import Adapter, missing_fields_error
from .types import format_value, output_type_note, parse_value, python_type_reminder

if TYPE_CHECKING:
    from ..lm import LM

_HEADER = re.compile(r"\[\[ ## (\w+) ## \]\]")


def allows_none(annotation: Any) -> bool:
    if annotation is type(None):
        return True
    if get_origin(annotation) in (Union, types.UnionType):
        return type(None) in get_args(annotation)
    return False


def fill_optional(signature: type[Signature], fields: dict[str, Any]) -> dict[str, Any]:
    """Missing output fields that declare a default take it, then those whose type admits None become None
    (DSPy's ``apply_output_field_defaults``)."""
    for name, field in signature._outputs.items():
        if name in fields:
            continue
        if field.has_default:
            fields[name] = copy.deepcopy(field.default)
        elif allows_none(field.annotation):
            fields[name] = None
    return fields


def parse_field(adapter: str, name: str, field: Field, value: Any, text: str) -> Any:
    """One output value validated into its field's type and constraints; AdapterParseError when it is not one."""
    try:
        return parse_value(value, field.annotation, field.constraints)
    except ValueError as exc:  # pydantic's ValidationError is one; pydantic is loaded if it raised
        pydantic = sys.modules.get("pydantic")
        if pydantic is not None and isinstance(exc, pydantic.ValidationError) and exc.errors():
            first_line = str(exc.errors()[0].get("msg", exc.title))  # "Input should be less than ..."
        else:
            first_line = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise AdapterParseError(
            f"{adapter}: field {name!r} expects {type_name(field.annotation)}"
            f"{' (' + field.constraint_text + ')' if field.constraints else ''}, got {str(value)[:100]!r} "
            f"({first_line})",
            raw=text,
            field=name,
            adapter=adapter,
        ) from None


def complete_fields(adapter: str, signature: type[Signature], parsed: dict[str, Any], text: str) -> dict[str, Any]:
    """The parsed outputs in the signature's order, defaults filled in; AdapterParseError when one is missing."""
    fill_optional(signature, parsed)
    if parsed.keys() != signature._outputs.keys():
        raise missing_fields_error(adapter, signature, text, parsed)
    return {k: parsed[k] for k in signature._outputs}


def parse_fields(adapter: str, signature: type[Signature], values: Mapping[str, Any], text: str) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for name, value in values.items():
        field = signature._outputs.get(name)
        if field is not None and name not in parsed:
            parsed[name] = parse_field(adapter, name, field, value, text)
    return complete_fields(adapter, signature, parsed, text)


class ChatAdapter(Adapter):
    """DSPy's default chat format. ``use_json_fallback``: retry once with JSONAdapter on a parse failure,
    unless the reply was cut at max_tokens (the error then says so, and no second call is made)."""

    name = "ChatAdapter"

    def __init__(
        self,
        use_json_fallback: bool = True,
        *,
        use_json_adapter_fallback: bool | None = None,
        callbacks: list[Any] | None = None,
        use_native_function_calling: bool = False,
        parallel_tool_calls: bool | None = None,
    ) -> None:
        super().__init__(
            callbacks=callbacks,
            use_native_function_calling=use_native_function_calling,
            parallel_tool_calls=parallel_tool_calls,
        )
        # ``use_json_adapter_fallback`` is DSPy's name for the same switch
        self.use_json_fallback = use_json_fallback if use_json_adapter_fallback is None else use_json_adapter_fallback

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def format_field_with_value(self, fields_with_values: Mapping[Any, Any]) -> str:
        """DSPy's ``[[ ## name ## ]]`` sections for ``{(name, field) or name-with-info: value}``."""
        parts = []
        for key, value in fields_with_values.items():
            name, field = (key.name, getattr(key, "info", None)) if hasattr(key, "name") else (key, None)
            parts.append(f"[[ ## {name} ## ]]\n{format_value(field or Field('output'), value)}")
        return "\n\n".join(parts).strip()

    def format_field_structure(self, signature: type[Signature]) -> str:
        def placeholders(fields: dict[str, Field]) -> str:
            return "\n\n".join(f"[[ ## {n} ## ]]\n{{{n}}}{output_type_note(f)}" for n, f in fields.items())

        parts = [
            "All interactions will be structured in the following way, with the appropriate values filled in.",
            placeholders(signature.input_fields),
            placeholders(signature.output_fields),
            "[[ ## completed ## ]]\n",
        ]
        return "\n\n".join(parts).strip()

    def output_requirements(self, signature: type[Signature]) -> str:
        fields = ", then ".join(
            f"`[[ ## {n} ## ]]`{python_type_reminder(f)}" for n, f in signature.output_fields.items()
        )
        return (
            f"Respond with the corresponding output fields, starting with the field {fields}, "
            "and then ending with the marker for `[[ ## completed ## ]]`."
        )

    def format_assistant_message(
        self, signature: type[Signature], outputs: Mapping[str, Any], missing: str | None = None
    ) -> str:
        parts = [
            f"[[ ## {n} ## ]]\n{format_value(f, outputs.get(n, missing))}" for n, f in signature.output_fields.items()
        ]
        return "\n\n".join(parts).strip() + "\n\n[[ ## completed ## ]]\n"

    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        sections: list[tuple[str | None, list[str]]] = [(None, [])]
        for line in completion.splitlines():
            match = _HEADER.match(line.strip())
            if match:
                rest = line.strip()[match.end() :].strip()
                sections.append((match.group(1), [rest] if rest else []))
            else:
                sections[-1][1].append(line)
        values: dict[str, str] = {}
        for name, lines in sections:
            if name is not None and name not in values:
                values[name] = "\n".join(lines).strip()
        return parse_fields(self.name, signature, values, completion)

    async def arun(
        self,
        lm: LM,
        signature: type[Signature],
        demos: list[Mapping[str, Any]],
        inputs: Mapping[str, Any],
        **kwargs: Any,
    ) -> tuple[list[dict[str, Any]], Usage]:
        try:
            return await super().arun(lm, signature, demos, inputs, **kwargs)
        except AdapterParseError as exc:
            if not self.use_json_fallback or getattr(exc, "cut_at_max_tokens", False):
                raise  # a reply cut at max_tokens would be cut as JSON too: no second call for it
            spent: Usage = getattr(exc, "usage", Usage())
            from .json_adapter import JSONAdapter

            try:
                fallback = JSONAdapter(  # as DSPy's: function calling as this adapter has it
                    use_native_function_calling=self.use_native_function_calling,
                    parallel_tool_calls=self.parallel_tool_calls,
                )
                completions, usage = await fallback.arun(lm, signature, demos, inputs, **kwargs)
            except AdapterParseError as json_exc:
                error = AdapterParseError(
                    f"{exc} (the JSONAdapter fallback failed too: {json_exc})",
                    raw=exc.raw,
                    field=exc.field,
                    adapter=self.name,
                )
                error.usage = spent + getattr(json_exc, "usage", Usage())  # type: ignore[attr-defined]
                raise error from json_exc
            return completions, spent + usage
