"""XMLAdapter: DSPy's ``<field>...</field>`` format.

Prompts are DSPy 3.4.1's: every field is an element, a structured output (a list, a dict, a pydantic model or a
TypedDict) is asked for and shown in demos as nested XML (``<item>`` per list entry, an element per key), and
str outputs in demos are escaped (``&amp;``, ``&lt;``) so the model learns to write well-formed XML.

Replies are read as XML. Where DSPy gives up on a reply that is not well-formed (an answer with a bare ``&`` or
``<``, as in "AT&T" or "x < 3"), dsr reads each output element by its tags instead, so such a reply costs no
second, JSON-format call.
"""

from __future__ import annotations

import functools
import html
import re
import types
from collections import defaultdict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Union, get_args, get_origin

from ..errors import AdapterParseError
from ..signatures import Field, Signature
from .chat import ChatAdapter, complete_fields, parse_field, parse_fields
from .markers import loaded
from .types import format_value, jsonable, output_type_note, type_adapter

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

_ELEMENT = re.compile(r"<(?P<name>\w+)>(?P<content>.*?)</(?P=name)>", re.DOTALL)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;")


def uses_nested_xml(annotation: Any) -> bool:
    """Whether an output of this type is written as nested elements: lists, dicts, TypedDicts and pydantic
    models, but not dsr's own custom types (``Code``, ``ToolCalls``, ...), which keep their text form."""
    args = [arg for arg in get_args(annotation) if arg is not type(None)]
    if get_origin(annotation) in (Union, types.UnionType) and len(args) == 1:
        annotation = args[0]  # Optional[X] is written as X
    origin = get_origin(annotation)
    item = get_args(annotation)[0] if origin is list and get_args(annotation) else annotation
    custom = loaded("custom_types", "Type")
    if custom is not None and isinstance(item, type) and issubclass(item, custom):
        return False
    if origin in (list, dict):
        return True
    if not isinstance(annotation, type):
        return False
    from typing_extensions import is_typeddict

    if is_typeddict(annotation):
        return True
    import pydantic

    return issubclass(annotation, pydantic.BaseModel)


@functools.lru_cache(maxsize=1024)
def _cached_schema(annotation: Any) -> dict[str, Any]:
    return type_adapter(annotation).json_schema(by_alias=False)


def _schema(annotation: Any) -> dict[str, Any]:
    """pydantic's JSON schema, properties in declaration order (the order the prompt shows them); made once
    per type (every parse reads each output field's), and only read, never changed, by its callers."""
    try:
        return _cached_schema(annotation)
    except TypeError:  # an unhashable annotation
        return type_adapter(annotation).json_schema(by_alias=False)


def value_to_xml(value: Any, tag: str, key: str | None = None) -> str:
    """A JSON-like value as nested elements: ``<item>`` per list entry, an element per dict key (``<entry
    key="...">`` for a key that is no element name), ``<tag />`` for None and empty lists."""
    attributes = f' key="{html.escape(key)}"' if key is not None else ""
    if isinstance(value, list):
        inner = "".join(value_to_xml(entry, "item") for entry in value)
        return f"<{tag}{attributes}>{inner}</{tag}>" if inner else f"<{tag}{attributes} />"
    if isinstance(value, dict):
        inner_parts = []
        for name, entry in value.items():
            name = str(name)
            is_tag = (name[:1] + name[1:].replace("-", "_").replace(".", "_")).isidentifier()
            inner_parts.append(value_to_xml(entry, name) if is_tag else value_to_xml(entry, "entry", name))
        return f"<{tag}{attributes}>{''.join(inner_parts)}</{tag}>"
    if value is None:
        return f"<{tag}{attributes} />"
    return f"<{tag}{attributes}>{_escape(str(value))}</{tag}>"


def schema_to_xml(tag: str, schema: Mapping[str, Any], definitions: Mapping[str, Any], seen: frozenset = frozenset()):
    """The element skeleton a structured output is asked in: ``<answer><item>...</item></answer>``."""
    reference = schema.get("$ref")
    if reference:
        name = reference.rsplit("/", 1)[-1]
        if name in seen:  # a recursive model: one level is enough to show the shape
            return f"<{tag}>...</{tag}>"
        return schema_to_xml(tag, definitions[name], definitions, seen | {name})
    choices = schema.get("anyOf")
    if choices:
        chosen = next((choice for choice in choices if choice.get("type") != "null"), choices[0])
        return schema_to_xml(tag, chosen, definitions, seen)
    if schema.get("type") == "array":
        return f"<{tag}>{schema_to_xml('item', schema.get('items', {}), definitions, seen)}</{tag}>"
    inner = "".join(
        schema_to_xml(name, child, definitions, seen) for name, child in schema.get("properties", {}).items()
    )
    return f"<{tag}>{inner or '...'}</{tag}>"


def _xml_schema(tag: str, annotation: Any) -> str:
    schema = _schema(annotation)
    return schema_to_xml(tag, schema, schema.get("$defs", {}))


def _children(element: Element) -> dict[str, list[Element]]:
    grouped: dict[str, list[Element]] = defaultdict(list)
    for child in element:
        grouped[child.attrib.get("key", child.tag) if child.tag == "entry" else child.tag].append(child)
    return grouped


def elements_to_value(elements: list[Element], schema: Mapping[str, Any], definitions: Mapping[str, Any]) -> Any:
    """The JSON-like value of a field's elements, read as ``schema`` says (then validated by the field's type)."""
    import xml.etree.ElementTree as ET

    schema = definitions.get(schema.get("$ref", "").rsplit("/", 1)[-1], schema)
    first = elements[0]
    choices = schema.get("anyOf")
    if choices:
        if {"type": "null"} in choices and not list(first) and not (first.text or "").strip():
            return None
        choices = [choice for choice in choices if choice.get("type") != "null"]
        schema = choices[0]
        if list(first):  # nested elements: the first structured choice reads them
            schema = next((choice for choice in choices if choice.get("type") != "string"), schema)
    if schema.get("type") == "array":
        if len(elements) == 1 and not list(first):
            text = (first.text or "").strip()
            if not text:
                return []
            if text.startswith("["):
                return text  # written as JSON: the type's validation reads it
        if len(elements) == 1:
            items = _children(first).get("item")
            if items:
                elements = items
        return [elements_to_value([element], schema.get("items", {}), definitions) for element in elements]
    if schema.get("type") == "string" and list(first):  # markup inside a str answer is part of the answer
        return (first.text or "") + "".join(ET.tostring(child, encoding="unicode") for child in first)
    grouped = _children(first)
    if not grouped:
        if schema.get("type") == "object" and not (first.text or "").strip():
            return {}
        texts = [(element.text or "").strip() for element in elements]
        return texts[0] if len(texts) == 1 else texts
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", {})
    extra = extra if isinstance(extra, dict) else {}
    return {name: elements_to_value(items, properties.get(name, extra), definitions) for name, items in grouped.items()}


class XMLAdapter(ChatAdapter):
    """DSPy's XMLAdapter: fields as ``<name>`` elements; the JSONAdapter fallback as ChatAdapter's."""

    name = "XMLAdapter"

    def format_field_with_value(self, fields_with_values: Mapping[Any, Any]) -> str:
        """One element per field, for ``{(name, field) or name-with-info: value}``."""
        parts = []
        for key, value in fields_with_values.items():
            name, field = (key.name, getattr(key, "info", None)) if hasattr(key, "name") else (key, None)
            parts.append(self._element(name, field or Field("input"), value))
        return "\n\n".join(parts).strip()

    @staticmethod
    def _element(name: str, field: Field, value: Any) -> str:
        if field.kind == "output" and uses_nested_xml(field.annotation):
            plain = jsonable(value)
            if isinstance(plain, (dict, list)):
                return value_to_xml(plain, name)
        text = format_value(field, value)
        if field.kind == "output" and field.annotation is str:
            text = _escape(text)
        return f"<{name}>\n{text}\n</{name}>"

    def format_field_structure(self, signature: type[Signature]) -> str:
        def skeleton(name: str, field: Field) -> str:
            if field.kind == "output" and uses_nested_xml(field.annotation):
                return _xml_schema(name, field.annotation)
            return self._element(name, field, f"{{{name}}}{output_type_note(field)}")

        groups = (signature.input_fields, signature.output_fields)
        return "\n\n".join(
            [
                "All interactions will be structured in the following way, with the appropriate values filled in.",
                *("\n\n".join(skeleton(n, f) for n, f in group.items()) for group in groups),
            ]
        )

    def format_user_message(
        self,
        signature: type[Signature],
        inputs: Mapping[str, Any],
        prefix: str = "",
        main_request: bool = False,
        suffix: str = "",
    ) -> str:
        elements = [self._element(n, f, inputs[n]) for n, f in signature._inputs.items() if n in inputs]
        parts = [prefix, "\n\n".join(elements)]
        if main_request:
            parts.append(self.output_requirements(signature))
        parts.append(suffix)
        return "\n\n".join(parts).strip()

    def output_requirements(self, signature: type[Signature]) -> str:
        tags = ", then ".join(f"`<{name}>`" for name in signature.output_fields)
        nested = [
            _xml_schema(n, f.annotation) for n, f in signature.output_fields.items() if uses_nested_xml(f.annotation)
        ]
        return f"Respond with the corresponding output fields wrapped in XML tags {tags}." + (
            f" Use this nested XML structure: {' '.join(nested)}" if nested else ""
        )

    def format_assistant_message(
        self, signature: type[Signature], outputs: Mapping[str, Any], missing: str | None = None
    ) -> str:
        parts = [self._element(n, f, outputs.get(n, missing)) for n, f in signature.output_fields.items()]
        return "\n\n".join(parts).strip()

    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        import xml.etree.ElementTree as ET

        try:
            root = ET.fromstring(f"<dspy_root>{completion}</dspy_root>")
        except ET.ParseError:
            return self._parse_by_tags(signature, completion)
        elements = _children(root)
        values: dict[str, Any] = {}
        for name, field in signature._outputs.items():
            if name not in elements:
                continue
            schema = _schema(field.annotation)
            candidates = [schema, *schema.get("anyOf", [])]
            for candidate in candidates:  # the schema, then each of its alternatives, until one reads
                value = elements_to_value(elements[name], candidate, schema.get("$defs", {}))
                try:
                    values[name] = parse_field(self.name, name, field, value, completion)
                    break
                except AdapterParseError:
                    if candidate is candidates[-1]:
                        raise
        return complete_fields(self.name, signature, values, completion)

    def _parse_by_tags(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        """A reply that is not well-formed XML: each output's first ``<name>...</name>``, its text unescaped."""
        values: dict[str, Any] = {}
        for match in _ELEMENT.finditer(completion):
            name = match.group("name")
            if name in signature._outputs and name not in values:
                values[name] = html.unescape(match.group("content").strip())
        return parse_fields(self.name, signature, values, completion)
