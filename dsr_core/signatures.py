"""Signatures: what an LM call takes and what it returns.

A signature is a class (as in DSPy): its docstring is the instructions, its annotated attributes are the
input and output fields. ``Signature("question, context: list[str] -> answer")`` builds one from a string;
the string is parsed with Python's own ``ast`` so types read exactly as they would in Python.

Signatures are immutable: every transform (``with_instructions``, ``prepend``, ``append``,
``with_updated_fields``, ``delete``) returns a new class.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal, Optional, Union, cast, get_args, get_origin

from .errors import SignatureError

FieldKind = Literal["input", "output"]


@dataclass(frozen=True)
class Field:
    """One field of a signature. ``name`` and ``annotation`` are filled in by the signature."""

    kind: FieldKind
    desc: str = ""
    prefix: str | None = None
    annotation: Any = str
    name: str = ""

    def with_(self, **changes: Any) -> Field:
        return replace(self, **changes)


def InputField(*, desc: str = "", prefix: str | None = None) -> Any:  # noqa: N802 - DSPy's name
    """Declare an input field: ``question: str = dsr.InputField(desc="...")``."""
    return Field("input", desc=desc, prefix=prefix)


def OutputField(*, desc: str = "", prefix: str | None = None) -> Any:  # noqa: N802 - DSPy's name
    """Declare an output field: ``answer: str = dsr.OutputField(desc="...")``."""
    return Field("output", desc=desc, prefix=prefix)


def infer_prefix(name: str) -> str:
    """``question`` -> ``Question:``, ``search_query`` -> ``Search Query:`` (DSPy's convention)."""
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name).replace("_", " ").split()
    return " ".join(w[:1].upper() + w[1:] for w in words) + ":"


def type_name(annotation: Any) -> str:
    """Render a type the way it appears in prompts: ``list[str]``, ``Literal['a', 'b']``."""
    origin = get_origin(annotation)
    if origin is types.UnionType:
        origin = Union
    if origin is None:
        return getattr(annotation, "__name__", str(annotation))
    args = get_args(annotation)
    if origin is Literal:
        return "Literal[" + ", ".join(repr(a) for a in args) + "]"
    origin_name = getattr(origin, "_name", None) or getattr(origin, "__name__", str(origin))
    return f"{origin_name}[{', '.join(type_name(a) for a in args)}]"


# ---------------------------------------------------------------------------------------------------------
# Parsing inline signatures


_SAFE_NAMES: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "list": list,
    "dict": dict,
    "tuple": tuple,
    "set": set,
    "bytes": bytes,
    "None": type(None),
    "Any": Any,
    "Optional": Optional,
    "Union": Union,
    "Literal": Literal,
    "List": list,
    "Dict": dict,
    "Tuple": tuple,
}


class _TypeResolver:
    def __init__(self, text: str, offset: int, custom_types: dict[str, Any]) -> None:
        self.text = text
        self.offset = offset
        self.names = {**_SAFE_NAMES, **custom_types}

    def fail(self, node: ast.AST, message: str) -> SignatureError:
        col = self.offset + getattr(node, "col_offset", 0)
        return SignatureError(f"{message} at column {col} in signature {self.text!r}")

    def resolve(self, node: ast.AST, *, in_literal: bool = False) -> Any:
        if in_literal:
            if isinstance(node, ast.Constant):
                return node.value
            if (
                isinstance(node, ast.UnaryOp)
                and isinstance(node.op, ast.USub)
                and isinstance(node.operand, ast.Constant)
                and isinstance(node.operand.value, (int, float))
            ):
                return -node.operand.value
            raise self.fail(node, "Literal[...] takes only constants")
        if isinstance(node, ast.Name):
            if node.id not in self.names:
                raise self.fail(node, f"unknown type {node.id!r} (pass it in custom_types=...)")
            return self.names[node.id]
        if isinstance(node, ast.Constant) and node.value is None:
            return type(None)
        if isinstance(node, ast.Attribute):
            base = self.resolve(node.value)
            if not hasattr(base, node.attr):
                raise self.fail(node, f"{type_name(base)} has no attribute {node.attr!r}")
            return getattr(base, node.attr)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return Union[self.resolve(node.left), self.resolve(node.right)]  # noqa: UP007
        if isinstance(node, ast.Subscript):
            base = self.resolve(node.value)
            elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            args = tuple(self.resolve(e, in_literal=base is Literal) for e in elts)
            try:
                return base[args if len(args) > 1 else args[0]]
            except TypeError as exc:
                raise self.fail(node, f"invalid type {ast.unparse(node)!r}: {exc}") from None
        raise self.fail(node, f"unsupported type expression {ast.unparse(node)!r}")


def _parse_side(text: str, side: str, start: int, custom_types: dict[str, Any]) -> list[tuple[str, Any]]:
    if not text.strip():
        raise SignatureError(f"signature {text!r} has no {side} fields; expected e.g. 'question -> answer'")
    try:
        tree = ast.parse(f"def f({text}): pass")
    except SyntaxError as exc:
        col = start + max((exc.offset or 1) - 7, 0)
        raise SignatureError(f"cannot parse {side} fields {text.strip()!r} near column {col}: {exc.msg}") from None
    fn = tree.body[0]
    assert isinstance(fn, ast.FunctionDef)
    if fn.args.defaults or fn.args.vararg or fn.args.kwarg or fn.args.kwonlyargs:
        raise SignatureError(f"{side} fields {text.strip()!r} must be plain 'name' or 'name: type' entries")
    resolver = _TypeResolver(text, start - 6, custom_types)  # "def f(" is 6 characters
    fields = []
    for arg in fn.args.args:
        annotation = str if arg.annotation is None else resolver.resolve(arg.annotation)
        fields.append((arg.arg, annotation))
    return fields


def parse_signature(text: str, custom_types: dict[str, Any] | None = None) -> list[tuple[str, FieldKind, Any]]:
    """Parse ``"a, b: int -> c: list[str]"`` into (name, kind, annotation) triples."""
    if not isinstance(text, str):
        raise SignatureError(f"a signature string was expected, got {type(text).__name__}")
    if text.count("->") != 1:
        raise SignatureError(f"signature {text!r} must contain exactly one '->' between inputs and outputs")
    left, right = text.split("->")
    custom = custom_types or {}
    inputs = _parse_side(left, "input", 0, custom)
    outputs = _parse_side(right, "output", len(left) + 2, custom)
    return [(n, "input", a) for n, a in inputs] + [(n, "output", a) for n, a in outputs]


# ---------------------------------------------------------------------------------------------------------
# The Signature class


def _default_instructions(fields: dict[str, Field]) -> str:
    inputs = ", ".join(f"`{n}`" for n, f in fields.items() if f.kind == "input")
    outputs = ", ".join(f"`{n}`" for n, f in fields.items() if f.kind == "output")
    return f"Given the fields {inputs}, produce the fields {outputs}."


def _check_name(name: str) -> None:
    if not name.isidentifier() or name.startswith("_"):
        raise SignatureError(f"field name {name!r} must be a Python identifier not starting with '_'")
    if name in _RESERVED:
        raise SignatureError(f"field name {name!r} is reserved (it is a Signature attribute)")


_RESERVED = {"instructions", "fields", "input_fields", "output_fields", "signature", "hash", "completed"}


class SignatureMeta(type):
    fields: dict[str, Field]
    instructions: str

    def __new__(mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any) -> SignatureMeta:
        fields: dict[str, Field] = {}
        for base in reversed(bases):
            fields.update(getattr(base, "fields", {}))
        annotations = namespace.get("__annotations__", {})
        module = namespace.get("__module__")
        for attr in annotations:
            if attr.startswith("_") or attr in ("instructions", "fields"):
                continue
            if not isinstance(namespace.get(attr), Field):
                raise SignatureError(
                    f"{name}.{attr}: declare it with dsr.InputField() or dsr.OutputField(), got {namespace.get(attr)!r}"
                )
        # in the order they were written; a field without an annotation is a str, as in DSPy
        for attr in [a for a, value in namespace.items() if isinstance(value, Field)]:
            marker = namespace.pop(attr)
            _check_name(attr)
            annotation = annotations.get(attr, str)
            if isinstance(annotation, str):
                annotation = _resolve_annotation_string(annotation, module, name, attr)
            fields[attr] = marker.with_(name=attr, annotation=annotation, prefix=marker.prefix or infer_prefix(attr))
        namespace["fields"] = fields
        doc = namespace.get("__doc__")
        if "instructions" not in namespace:
            # from a parent signature with fields of its own, never the docstring of the base class itself: a
            # signature without a docstring gets DSPy's default instructions (below)
            inherited = next(
                (
                    b.__dict__["instructions"]
                    for b in bases
                    if "instructions" in b.__dict__ and getattr(b, "fields", {})
                ),
                None,
            )
            namespace["instructions"] = inspect.cleandoc(doc or "") or inherited or ""
        cls = super().__new__(mcs, name, bases, namespace, **kwargs)
        if fields and not cls.instructions:
            type.__setattr__(cls, "instructions", _default_instructions(fields))
        if fields and not any(f.kind == "output" for f in fields.values()):
            raise SignatureError(f"signature {name} has no output field")
        return cls

    def __call__(cls, spec: Any = None, instructions: str | None = None, *, custom_types: dict | None = None) -> Any:
        """``Signature("question -> answer")`` builds a new signature class (instances are not used)."""
        if isinstance(spec, str):
            triples = parse_signature(spec, custom_types)
            fields = {n: Field(k, annotation=a) for n, k, a in triples}
            return make_signature(fields, instructions, base=cls)
        if isinstance(spec, dict):
            return make_signature(spec, instructions, base=cls)
        if isinstance(spec, SignatureMeta):
            return spec if instructions is None else spec.with_instructions(instructions)
        raise SignatureError(f"Signature(...) takes a string like 'question -> answer', got {spec!r}")

    # -- views ---------------------------------------------------------------------------------------------

    @property
    def input_fields(cls) -> dict[str, Field]:
        return {n: f for n, f in cls.fields.items() if f.kind == "input"}

    @property
    def output_fields(cls) -> dict[str, Field]:
        return {n: f for n, f in cls.fields.items() if f.kind == "output"}

    @property
    def signature(cls) -> str:
        """The compact string form, e.g. ``question, context -> answer``."""
        return f"{', '.join(cls.input_fields)} -> {', '.join(cls.output_fields)}"

    def describe(cls) -> dict[str, Any]:
        """A canonical JSON-able description (the basis of equality and the stable hash)."""
        return {
            "instructions": cls.instructions,
            "fields": [
                {"name": f.name, "kind": f.kind, "type": type_name(f.annotation), "desc": f.desc, "prefix": f.prefix}
                for f in cls.fields.values()
            ],
        }

    @property
    def hash(cls) -> str:
        """A stable content hash (sha256 hex prefix): same fields, types, texts -> same hash, any process."""
        cached = cls.__dict__.get("_hash")
        if cached is None:
            blob = json.dumps(cls.describe(), sort_keys=True, ensure_ascii=False)
            cached = hashlib.sha256(blob.encode()).hexdigest()[:16]
            type.__setattr__(cls, "_hash", cached)
        return cached

    @property
    def shape_hash(cls) -> str:
        """Hash of the field names, kinds and types only: what must match when loading saved state."""
        blob = json.dumps([[f.name, f.kind, type_name(f.annotation)] for f in cls.fields.values()])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def __eq__(cls, other: object) -> bool:
        if not isinstance(other, SignatureMeta):
            return NotImplemented
        return cls is other or cls.describe() == other.describe()

    def __hash__(cls) -> int:
        return hash(cls.hash)

    def __repr__(cls) -> str:
        return f"{cls.__name__}({cls.signature}, instructions={cls.instructions!r})"

    def __setattr__(cls, name: str, value: Any) -> None:
        raise AttributeError(f"signatures are immutable; use with_instructions / with_updated_fields ({name!r})")

    # -- immutable transforms --------------------------------------------------------------------------------

    def with_instructions(cls, instructions: str) -> type[Signature]:
        return make_signature(cls.fields, instructions, base=cls)

    def with_updated_fields(cls, name: str, type_: Any = None, **changes: Any) -> type[Signature]:
        """Change one field's ``desc``, ``prefix`` or type: ``sig.with_updated_fields("answer", desc="...")``."""
        if name not in cls.fields:
            raise SignatureError(f"{cls.__name__} has no field {name!r}; fields: {list(cls.fields)}")
        unknown = set(changes) - {"desc", "prefix"}
        if unknown:
            raise SignatureError(f"with_updated_fields accepts desc=, prefix=, type_=; not {sorted(unknown)}")
        if type_ is not None:
            changes["annotation"] = type_
        fields = {n: (f.with_(**changes) if n == name else f) for n, f in cls.fields.items()}
        return make_signature(fields, cls.instructions, base=cls)

    def insert(cls, index: int, name: str, field: Field, type_: Any = None) -> type[Signature]:
        """Insert a field at ``index`` among the fields of its kind (negative counts from the end)."""
        if name in cls.fields:
            raise SignatureError(f"{cls.__name__} already has a field {name!r}")
        _check_name(name)
        field = field.with_(name=name, annotation=type_ or field.annotation or str)
        same = [f for f in cls.fields.values() if f.kind == field.kind]
        pos = index if index >= 0 else len(same) + 1 + index
        same.insert(max(0, min(pos, len(same))), field)
        inputs = same if field.kind == "input" else list(cls.input_fields.values())
        outputs = same if field.kind == "output" else list(cls.output_fields.values())
        return make_signature({f.name: f for f in inputs + outputs}, cls.instructions, base=cls)

    def prepend(cls, name: str, field: Field, type_: Any = None) -> type[Signature]:
        return cls.insert(0, name, field, type_)

    def append(cls, name: str, field: Field, type_: Any = None) -> type[Signature]:
        return cls.insert(-1, name, field, type_)

    def delete(cls, name: str) -> type[Signature]:
        if name not in cls.fields:
            raise SignatureError(f"{cls.__name__} has no field {name!r}")
        return make_signature({n: f for n, f in cls.fields.items() if n != name}, cls.instructions, base=cls)


class Signature(metaclass=SignatureMeta):
    """Base class of all signatures. Subclass it, or call ``Signature("inputs -> outputs")``."""

    fields: ClassVar[dict[str, Field]]
    instructions: ClassVar[str]


def make_signature(
    fields: Mapping[str, Field | tuple[Any, Field]],
    instructions: str | None = None,
    *,
    name: str | None = None,
    base: type = Signature,
) -> type[Signature]:
    """Build a signature class from ``{name: Field}`` (or ``{name: (type, Field)}``)."""
    normalized: dict[str, Field] = {}
    for field_name, spec in fields.items():
        _check_name(field_name)
        if isinstance(spec, tuple):
            annotation, spec = spec
            spec = spec.with_(annotation=annotation)
        if not isinstance(spec, Field):
            raise SignatureError(f"field {field_name!r}: expected dsr.InputField()/OutputField(), got {spec!r}")
        normalized[field_name] = spec.with_(name=field_name, prefix=spec.prefix or infer_prefix(field_name))
    if not any(f.kind == "output" for f in normalized.values()):
        raise SignatureError("a signature needs at least one output field")
    if not any(f.kind == "input" for f in normalized.values()):
        raise SignatureError("a signature needs at least one input field")
    root = base if isinstance(base, SignatureMeta) else Signature
    # a generic name for string signatures, the user's class name for derived ones
    cls_name = name or (root.__name__ if root is not Signature else "StringSignature")
    namespace = {
        "fields": normalized,
        "instructions": instructions if instructions is not None else _default_instructions(normalized),
        "__module__": getattr(root, "__module__", __name__),
        "__doc__": None,
    }
    return cast("type[Signature]", type.__new__(SignatureMeta, cls_name, (Signature,), namespace))


def ensure_signature(spec: Any, instructions: str | None = None) -> type[Signature]:
    if isinstance(spec, SignatureMeta):
        return cast("type[Signature]", spec) if instructions is None else spec.with_instructions(instructions)
    return cast("type[Signature]", Signature(spec, instructions))  # type: ignore[call-arg]


def _resolve_annotation_string(text: str, module: str | None, cls_name: str, attr: str) -> Any:
    """Resolve a postponed annotation (``from __future__ import annotations``) in the class's module."""
    import sys

    namespace = {**vars(typing), **_SAFE_NAMES}
    if module and module in sys.modules:
        namespace.update(vars(sys.modules[module]))
    try:
        return eval(text, namespace)  # noqa: S307 - the user's own annotation, as typing.get_type_hints does
    except Exception as exc:  # noqa: BLE001 - any failure means the annotation cannot be resolved
        raise SignatureError(f"{cls_name}.{attr}: cannot resolve type annotation {text!r}: {exc}") from None
