"""Signatures: what an LM call takes and what it returns.

A signature is a class (as in DSPy): its docstring is the instructions, its annotated attributes are the
input and output fields. ``Signature("question, context: list[str] -> answer")`` builds one from a string;
the string is parsed with Python's own ``ast`` so types read exactly as they would in Python.

Signatures are immutable: every transform (``with_instructions``, ``prepend``, ``append``,
``with_updated_fields``, ``delete``) returns a new class.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import importlib
import inspect
import json
import re
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any, ClassVar, Literal, Optional, Union, cast, get_args, get_origin

from .._submodules import submodule
from ..errors import SignatureError

FieldKind = Literal["input", "output"]


class _Undefined:
    """No default, as pydantic's ``PydanticUndefined``, without importing pydantic_core for it (about 15 ms of
    ``import dsr_core``). One instance; copies and pickles of it are that instance."""

    def __repr__(self) -> str:
        return "PydanticUndefined"

    def __copy__(self) -> _Undefined:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _Undefined:
        return self

    def __reduce__(self) -> str:
        return "PydanticUndefined"


PydanticUndefined: Any = _Undefined()


# pydantic constraint keywords and how DSPy describes them to the LM, in DSPy's words
CONSTRAINT_TEXT = {
    "gt": "greater than: ",
    "ge": "greater than or equal to: ",
    "lt": "less than: ",
    "le": "less than or equal to: ",
    "min_length": "minimum length: ",
    "max_length": "maximum length: ",
    "multiple_of": "a multiple of the given number: ",
    "allow_inf_nan": "allow 'inf', '-inf', 'nan' values: ",
}


class FieldDeclarationError(SignatureError, TypeError):
    """A signature attribute is annotated but not declared with InputField/OutputField (a TypeError in DSPy)."""


@dataclass(frozen=True)
class Field:
    """One field of a signature. ``name`` and ``annotation`` are filled in by the signature.

    ``desc`` is empty when the field has no description (DSPy writes ``${name}`` there: see
    ``json_schema_extra``). ``constraints`` holds pydantic constraint keywords (``ge=0``, ``max_length=5``):
    they are described in the prompt and enforced when a reply is parsed. ``default`` is used for an input
    the caller leaves out.
    """

    kind: FieldKind
    desc: str = ""
    prefix: str | None = None
    annotation: Any = str
    name: str = ""
    default: Any = PydanticUndefined
    constraints: tuple[tuple[str, Any], ...] = ()
    extra: tuple[tuple[str, Any], ...] = ()  # other keywords given (format=, parser=, ...), kept for DSPy code
    type_undefined: bool = False  # declared without a type annotation (a str, not type-checked on input)

    def __post_init__(self) -> None:
        core = sys.modules.get("pydantic_core")  # loaded already if a caller passed pydantic's own sentinel
        if core is not None and self.default is core.PydanticUndefined:
            object.__setattr__(self, "default", PydanticUndefined)

    def with_(self, **changes: Any) -> Field:
        return replace(self, **changes)

    @property
    def has_default(self) -> bool:
        return self.default is not PydanticUndefined

    @property
    def description(self) -> str:
        return self.desc

    @property
    def constraint_text(self) -> str:
        """``minimum length: 5, maximum length: 10``: the constraints as DSPy renders them in the prompt."""
        return ", ".join(f"{CONSTRAINT_TEXT[k]}{v}" for k, v in self.constraints if k in CONSTRAINT_TEXT)

    @property
    def json_schema_extra(self) -> dict[str, Any]:
        """DSPy's view of the field (``field.json_schema_extra["desc"]``, ``["prefix"]``, ``["constraints"]``)."""
        extra: dict[str, Any] = dict(self.extra)
        extra.update(
            {
                "__dspy_field_type": self.kind,
                "prefix": self.prefix if self.prefix is not None else infer_prefix(self.name) + ":",
                "desc": self.desc or f"${{{self.name}}}",
            }
        )
        if self.constraint_text:
            extra["constraints"] = self.constraint_text
        return extra

    def is_required(self) -> bool:
        return not self.has_default


def _make_field(kind: FieldKind, desc: str | None, prefix: str | None, default: Any, kwargs: dict[str, Any]) -> Field:
    description = kwargs.pop("description", None)
    constraints = tuple((k, kwargs.pop(k)) for k in list(kwargs) if k in CONSTRAINT_TEXT or k == "pattern")
    return Field(
        kind,
        desc=desc if desc is not None else (description or ""),
        prefix=prefix,
        default=default,
        constraints=constraints,
        extra=tuple(kwargs.items()),
    )


def InputField(  # noqa: N802 - DSPy's name
    *, desc: str | None = None, prefix: str | None = None, default: Any = PydanticUndefined, **kwargs: Any
) -> Any:
    """Declare an input field: ``question: str = dsr.InputField(desc="...")``.

    Also takes pydantic's ``description=`` and constraint keywords (``ge``, ``le``, ``min_length``, ...).
    """
    return _make_field("input", desc, prefix, default, kwargs)


def OutputField(  # noqa: N802 - DSPy's name
    *, desc: str | None = None, prefix: str | None = None, default: Any = PydanticUndefined, **kwargs: Any
) -> Any:
    """Declare an output field: ``answer: int = dsr.OutputField(desc="...", ge=0)``.

    Constraint keywords are described to the LM and enforced on the parsed reply.
    """
    return _make_field("output", desc, prefix, default, kwargs)


def infer_prefix(name: str) -> str:
    """DSPy's prefix from a field name: ``search_query`` -> ``Search Query``, ``isHTTPSecure`` -> ``Is HTTP Secure``.

    The signature adds the colon (``Search Query:``), as DSPy does.
    """
    spaced = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    spaced = re.sub("([a-z0-9])([A-Z])", r"\1_\2", spaced)
    spaced = re.sub(r"([a-zA-Z])(\d)", r"\1_\2", spaced)
    spaced = re.sub(r"(\d)([a-zA-Z])", r"\1_\2", spaced)
    return " ".join(w if w.isupper() else w.capitalize() for w in spaced.split("_"))


def _prefix(name: str) -> str:
    return infer_prefix(name) + ":"


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


def annotation_name(annotation: Any) -> str:
    """A type as DSPy's adapters name it in prompts: ``list[str]``, ``Literal['a', 'b']``, ``UnionType[...]``.

    Unlike ``type_name`` (dsr's stable name for saved state), a PEP 604 union from a class annotation keeps
    its own origin name, as DSPy renders it, and str-like custom types (``Reasoning``) read as ``str``.
    """
    prompt_name = getattr(annotation, "prompt_type_name", None)
    if isinstance(prompt_name, str):
        return prompt_name
    origin = get_origin(annotation)
    if origin is None:
        return getattr(annotation, "__name__", str(annotation))
    args = get_args(annotation)
    if origin is Literal:
        inner = ", ".join(_quote_literal(a) if isinstance(a, str) else annotation_name(a) for a in args)
    else:
        inner = ", ".join(annotation_name(a) for a in args)
    return f"{annotation_name(origin)}[{inner}]"


def _quote_literal(text: str) -> str:
    if "'" in text and '"' not in text:
        return f'"{text}"'
    return "'" + (text.replace("'", "\\'") if '"' in text else text) + "'"


# ---------------------------------------------------------------------------------------------------------
# Parsing inline signatures


# names a string signature may use without custom_types: builtins and typing's names, as in DSPy
_SAFE_NAMES: dict[str, Any] = {
    **{name: getattr(typing, name) for name in typing.__all__ if not name.startswith("_")},
    **{t.__name__: t for t in (int, str, float, bool, list, tuple, dict, set, frozenset, complex, bytes, bytearray)},
    "None": type(None),
    "NoneType": type(None),
    "Optional": Optional,
    "Union": Union,
    "Literal": Literal,
    "Any": Any,
    "List": list,
    "Dict": dict,
    "Tuple": tuple,
}


def _from_caller_frames(name: str) -> Any:
    """The object ``name`` refers to in the code that built the signature (DSPy resolves names this way).

    Frames of dsr itself are skipped; the first frame (locals, then globals) that knows the name wins.
    """
    frame = sys._getframe(1)
    try:
        for _ in range(100):
            if frame is None:
                break
            module = frame.f_globals.get("__name__", "")
            if not (module == "dsr_core" or module.startswith("dsr_core.")):
                if name in frame.f_locals:
                    return frame.f_locals[name]
                if name in frame.f_globals:
                    return frame.f_globals[name]
            frame = frame.f_back
    finally:
        del frame
    if name in vars(builtins) and isinstance(vars(builtins)[name], type):
        return vars(builtins)[name]
    try:
        return importlib.import_module(name)  # ``datetime.date``, ``pathlib.Path`` (DSPy does the same)
    except ImportError:
        raise KeyError(name) from None


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
                try:
                    self.names[node.id] = _from_caller_frames(node.id)
                except KeyError:
                    raise self.fail(node, f"unknown type {node.id!r} (pass it in custom_types=...)") from None
            return self.names[node.id]
        if isinstance(node, ast.Constant) and node.value is None:
            return type(None)
        if isinstance(node, ast.Constant) and node.value is Ellipsis:
            return Ellipsis  # tuple[int, ...]
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


def _parse_side(text: str, side: str, start: int, custom_types: dict[str, Any]) -> list[tuple[str, Any, bool]]:
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
        fields.append((arg.arg, annotation, arg.annotation is None))
    return fields


def parse_signature(text: str, custom_types: dict[str, Any] | None = None) -> list[tuple[str, FieldKind, Any, bool]]:
    """Parse ``"a, b: int -> c: list[str]"`` into (name, kind, annotation, declared-without-type) tuples."""
    if not isinstance(text, str):
        raise SignatureError(f"a signature string was expected, got {type(text).__name__}")
    if text.count("->") != 1:
        raise SignatureError(f"signature {text!r} must contain exactly one '->' between inputs and outputs")
    left, right = text.split("->")
    custom = custom_types or {}
    inputs = _parse_side(left, "input", 0, custom)
    outputs = _parse_side(right, "output", len(left) + 2, custom)
    duplicates = sorted({i[0] for i in inputs} & {o[0] for o in outputs})
    if duplicates:
        raise SignatureError(
            f"Input and output fields must have distinct names, but found duplicates: '{', '.join(duplicates)}'."
        )
    return [(n, "input", a, u) for n, a, u in inputs] + [(n, "output", a, u) for n, a, u in outputs]


# ---------------------------------------------------------------------------------------------------------
# The Signature class


def _inputs_first(fields: dict[str, Field]) -> dict[str, Field]:
    """Inputs, then outputs, each in the order written (DSPy's ``fields`` order)."""
    return {
        **{n: f for n, f in fields.items() if f.kind == "input"},
        **{n: f for n, f in fields.items() if f.kind == "output"},
    }


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


def _views(fields: dict[str, Field]) -> dict[str, dict[str, Field]]:
    """The inputs and the outputs of ``fields``, made once per class: the request path reads them several
    times per call (``input_fields`` and ``output_fields`` hand out copies)."""
    return {
        "_inputs": {n: f for n, f in fields.items() if f.kind == "input"},
        "_outputs": {n: f for n, f in fields.items() if f.kind == "output"},
    }


class SignatureMeta(type):
    fields: dict[str, Field]
    instructions: str
    _inputs: dict[str, Field]  # input_fields and output_fields, never handed out (read-only)
    _outputs: dict[str, Field]

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
                raise FieldDeclarationError(
                    f"{name}.{attr}: declare it with dsr.InputField() or dsr.OutputField(), got {namespace.get(attr)!r}"
                )
        # in the order they were written; a field without an annotation is a str, as in DSPy
        for attr in [a for a, value in namespace.items() if isinstance(value, Field)]:
            marker = namespace.pop(attr)
            _check_name(attr)
            annotation = annotations.get(attr, str)
            if isinstance(annotation, str):
                annotation = _resolve_annotation_string(annotation, module, name, attr)
            fields[attr] = marker.with_(
                name=attr,
                annotation=annotation,
                prefix=marker.prefix or _prefix(attr),
                type_undefined=attr not in annotations,
            )
        fields = _inputs_first(fields)
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
        for attribute, view in _views(fields).items():
            type.__setattr__(cls, attribute, view)
        if fields and not cls.instructions:
            type.__setattr__(cls, "instructions", _default_instructions(fields))
        if fields and not any(f.kind == "output" for f in fields.values()):
            raise SignatureError(f"signature {name} has no output field")
        return cls

    def __call__(
        cls,
        spec: Any = None,
        instructions: str | None = None,
        signature_name: str | None = None,
        *,
        custom_types: dict | None = None,
    ) -> Any:
        """``Signature("question -> answer", "instructions")`` builds a new signature class (never an instance).

        ``spec`` may also be a dict ``{name: (type, Field)}`` or ``{name: Field}``, as in DSPy.
        """
        if isinstance(spec, (str, Mapping)):
            return make_signature(spec, instructions, signature_name, custom_types, base=cls)
        if isinstance(spec, SignatureMeta):
            return spec if instructions is None else spec.with_instructions(instructions)
        raise SignatureError(f"Signature(...) takes a string like 'question -> answer', got {spec!r}")

    # -- views ---------------------------------------------------------------------------------------------

    @property
    def input_fields(cls) -> dict[str, Field]:
        return dict(cls._inputs)

    @property
    def output_fields(cls) -> dict[str, Field]:
        return dict(cls._outputs)

    @property
    def signature(cls) -> str:
        """The compact string form, e.g. ``question, context -> answer``."""
        return f"{', '.join(cls.input_fields)} -> {', '.join(cls.output_fields)}"

    def describe(cls) -> dict[str, Any]:
        """A canonical JSON-able description (the basis of equality and the stable hash)."""
        return {
            "instructions": cls.instructions,
            "fields": [
                {
                    "name": f.name,
                    "kind": f.kind,
                    "type": type_name(f.annotation),
                    "desc": f.desc,
                    "prefix": f.prefix,
                    **({"constraints": f.constraint_text} if f.constraints else {}),
                }
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

    def equals(cls, other: Any) -> bool:
        """DSPy's comparison: the same instructions and, per field name, the same DSPy metadata."""
        if not isinstance(other, SignatureMeta):
            return False
        if cls.instructions != other.instructions or cls.fields.keys() != other.fields.keys():
            return False
        return all(cls.fields[n].json_schema_extra == other.fields[n].json_schema_extra for n in cls.fields)

    def dump_state(cls) -> dict[str, Any]:
        """DSPy's signature state: the instructions and each field's prefix and description."""
        return {
            "instructions": cls.instructions,
            "fields": [
                {"prefix": f.json_schema_extra["prefix"], "description": f.json_schema_extra["desc"]}
                for f in cls.fields.values()
            ],
        }

    def load_state(cls, state: Mapping[str, Any]) -> type[Signature]:
        """A new signature with ``dump_state``'s instructions, prefixes and descriptions (fields by position)."""
        fields = dict(cls.fields)
        for (name, field), saved in zip(list(fields.items()), state.get("fields", []), strict=False):
            desc = saved.get("description", field.desc)
            fields[name] = field.with_(
                prefix=saved.get("prefix", field.prefix), desc="" if desc == f"${{{name}}}" else desc
            )
        return make_signature(fields, state.get("instructions", cls.instructions), base=cls)

    def with_updated_fields(cls, name: str, type_: Any = None, **changes: Any) -> type[Signature]:
        """Change one field's ``desc``, ``prefix`` or type: ``sig.with_updated_fields("answer", desc="...")``."""
        if name not in cls.fields:
            raise SignatureError(f"{cls.__name__} has no field {name!r}; fields: {list(cls.fields)}")
        field = cls.fields[name]
        updates: dict[str, Any] = {k: changes.pop(k) for k in ("desc", "prefix") if k in changes}
        if "description" in changes:
            updates.setdefault("desc", changes.pop("description"))
        if type_ is not None:
            updates["annotation"] = type_
        if changes:  # any other DSPy field metadata (format=, parser=, ...)
            updates["extra"] = tuple({**dict(field.extra), **changes}.items())
        fields = {n: (f.with_(**updates) if n == name else f) for n, f in cls.fields.items()}
        return make_signature(fields, cls.instructions, base=cls)

    def insert(cls, index: int, name: str, field: Field, type_: Any = None) -> type[Signature]:
        """Insert a field at ``index`` among the fields of its kind (negative counts from the end)."""
        if name in cls.fields:
            raise SignatureError(f"{cls.__name__} already has a field {name!r}")
        _check_name(name)
        field = field.with_(name=name, annotation=type_ or field.annotation or str)
        same = [f for f in cls.fields.values() if f.kind == field.kind]
        pos = index if index >= 0 else len(same) + 1 + index
        if pos < 0 or pos > len(same):
            raise SignatureError(
                f"Invalid index to insert: {index}, index must be in the range of [{len(same) - 1}, {len(same)}] "
                f"for {field.kind} fields, but received: {index}."
            )
        same.insert(pos, field)
        inputs = same if field.kind == "input" else list(cls.input_fields.values())
        outputs = same if field.kind == "output" else list(cls.output_fields.values())
        return make_signature({f.name: f for f in inputs + outputs}, cls.instructions, base=cls)

    def prepend(cls, name: str, field: Field, type_: Any = None) -> type[Signature]:
        return cls.insert(0, name, field, type_)

    def append(cls, name: str, field: Field, type_: Any = None) -> type[Signature]:
        return cls.insert(-1, name, field, type_)

    def delete(cls, name: str) -> type[Signature]:
        """A new signature without ``name`` (a name it does not have is ignored, as in DSPy)."""
        return make_signature({n: f for n, f in cls.fields.items() if n != name}, cls.instructions, base=cls)


class Signature(metaclass=SignatureMeta):
    """Base class of all signatures. Subclass it, or call ``Signature("inputs -> outputs")``."""

    fields: ClassVar[dict[str, Field]]
    instructions: ClassVar[str]


def make_signature(
    signature: str | Mapping[str, Any],
    instructions: str | None = None,
    signature_name: str | None = None,
    custom_types: Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
    base: type = Signature,
) -> type[Signature]:
    """Build a signature class, as DSPy's ``make_signature``.

    ``signature`` is a string (``"question, context: list[str] -> answer: int"``; names of types are looked up
    in ``custom_types``, then in the calling code, as DSPy does) or a dict ``{name: Field}`` /
    ``{name: (type, Field)}``. ``signature_name`` (or ``name``) names the class.
    """
    if isinstance(signature, str):
        triples = parse_signature(signature, dict(custom_types or {}))
        fields: Mapping[str, Any] = {n: Field(k, annotation=a, type_undefined=u) for n, k, a, u in triples}
    elif isinstance(signature, Mapping):
        fields = signature
    else:
        raise SignatureError(f"make_signature takes a string or a dict of fields, got {signature!r}")
    normalized: dict[str, Field] = {}
    for field_name, spec in fields.items():
        if not isinstance(field_name, str):
            raise SignatureError(f"Field names must be strings, but received: {field_name}.")
        _check_name(field_name)
        if isinstance(spec, tuple):
            if len(spec) != 2:
                raise SignatureError(f"field {field_name!r}: expected (type, Field), got {spec!r}")
            annotation, spec = spec
            if isinstance(spec, Field):
                spec = spec.with_(annotation=str if annotation is None else annotation)
        if not isinstance(spec, Field):
            raise SignatureError(f"field {field_name!r}: expected dsr.InputField()/OutputField(), got {spec!r}")
        normalized[field_name] = spec.with_(name=field_name, prefix=spec.prefix or _prefix(field_name))
    normalized = _inputs_first(normalized)
    if not any(f.kind == "output" for f in normalized.values()):
        raise SignatureError("a signature needs at least one output field")
    root = base if isinstance(base, SignatureMeta) else Signature
    # a generic name for string signatures, the user's class name for derived ones
    cls_name = signature_name or name or (root.__name__ if root is not Signature else "StringSignature")
    namespace = {
        "fields": normalized,
        **_views(normalized),
        "instructions": instructions if instructions is not None else _default_instructions(normalized),
        "__module__": getattr(root, "__module__", __name__),
        "__doc__": None,
    }
    return cast("type[Signature]", type.__new__(SignatureMeta, cls_name, (Signature,), namespace))


def ensure_signature(spec: Any, instructions: str | None = None) -> type[Signature]:
    """A signature class from a string or a signature class (DSPy's ``ensure_signature``)."""
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


def __getattr__(name: str) -> ModuleType:
    return submodule(__name__, name)  # ``signatures.field`` without importing it first, as in DSPy
