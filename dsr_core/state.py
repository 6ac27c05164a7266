"""Program state as JSON: one entry per predictor by dotted name, plus metadata. Never pickle.

The layout is DSPy's (``{"rewrite": {...}, "answer.predict": {...}, "metadata": {...}}``, each entry with
``demos``, ``signature.instructions``, ``signature.fields[].prefix/description`` and ``lm``), extended with
what dsr needs to check a load: field names, kinds and types, and signature hashes. So a file saved by
DSPy 3.x loads here, and a file saved here carries everything DSPy reads.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ProgramStateError
from .signatures import type_name

if TYPE_CHECKING:
    from .modules.module import Module
    from .modules.predict import Predict

FORMAT = "dsr-program/1"


def _version() -> str:
    from . import __version__

    return __version__


def _jsonable_demo(demo: Any) -> dict[str, Any]:
    from .adapters.types import jsonable

    mapping = demo.to_dict() if hasattr(demo, "to_dict") else dict(demo)
    return {k: jsonable(v) for k, v in mapping.items()}


def dump_predictor_state(predictor: Predict) -> dict[str, Any]:
    sig = predictor.signature
    return {
        "traces": [],
        "train": [],
        "demos": [_jsonable_demo(d) for d in predictor.demos],
        "signature": {
            "instructions": sig.instructions,
            "fields": [
                {
                    "name": f.name,
                    "kind": f.kind,
                    "type": type_name(f.annotation),
                    "prefix": f.prefix,
                    "description": f.desc,
                }
                for f in sig.fields.values()
            ],
        },
        "lm": predictor.lm.dump_state() if predictor.lm is not None else None,
        "config": {k: v for k, v in predictor.config.items() if isinstance(v, (str, int, float, bool, type(None)))},
    }


def dump_program_state(program: Module) -> dict[str, Any]:
    predictors = program.named_predictors()
    state: dict[str, Any] = {name: dump_predictor_state(p) for name, p in predictors}
    state["metadata"] = {
        "format": FORMAT,
        "dsr_version": _version(),
        "program": f"{type(program).__module__}:{type(program).__qualname__}",
        "signature_hashes": {name: p.signature.hash for name, p in predictors},
        "dependency_versions": {"python": ".".join(platform.python_version_tuple()[:2]), "dsr": _version()},
    }
    return state


def _load_predictor(name: str, predictor: Predict, entry: Any, source: str) -> None:
    from .lm import LM

    where = f"{source}: predictor {name!r}"
    if not isinstance(entry, dict) or "signature" not in entry:
        raise ProgramStateError(f"{where}: entry is not predictor state (no 'signature' key)")
    saved = entry["signature"]
    saved_fields = saved.get("fields", [])
    fields = list(predictor.signature.fields.values())
    if len(saved_fields) != len(fields):
        raise ProgramStateError(
            f"{where}: saved signature has {len(saved_fields)} fields, the program's has {len(fields)} "
            f"({predictor.signature.signature}); the program's shape differs from the saved one"
        )
    for field, saved_field in zip(fields, saved_fields, strict=True):
        expected = (saved_field.get("name"), saved_field.get("kind"), saved_field.get("type"))
        actual = (field.name, field.kind, type_name(field.annotation))
        if expected[0] is not None and expected != actual:
            raise ProgramStateError(
                f"{where}: saved field {expected[0]!r} ({expected[1]}, {expected[2]}) does not match the "
                f"program's field {actual[0]!r} ({actual[1]}, {actual[2]})"
            )
    signature = predictor.signature.with_instructions(saved.get("instructions", predictor.signature.instructions))
    for field, saved_field in zip(fields, saved_fields, strict=True):
        desc = saved_field.get("description", "")
        if desc == f"${{{field.name}}}":
            desc = ""  # DSPy's placeholder for "no description"
        signature = signature.with_updated_fields(field.name, desc=desc, prefix=saved_field.get("prefix") or None)
    demos = entry.get("demos", [])
    if not isinstance(demos, list) or not all(isinstance(d, dict) for d in demos):
        raise ProgramStateError(f"{where}: 'demos' must be a list of objects")
    predictor.signature = signature
    predictor.demos = [dict(d) for d in demos]
    predictor.config.update(entry.get("config") or {})
    lm_state = entry.get("lm")
    if isinstance(lm_state, dict) and lm_state.get("model"):
        allowed = {"model", "api_base", "api_key_env", "temperature", "max_tokens"}
        predictor.lm = LM(**{k: v for k, v in lm_state.items() if k in allowed and v is not None})


def load_program_state(program: Module, state: dict[str, Any], source: str = "state") -> None:
    if not isinstance(state, dict):
        raise ProgramStateError(f"{source}: program state must be a JSON object, got {type(state).__name__}")
    saved = {k: v for k, v in state.items() if k != "metadata"}
    predictors = dict(program.named_predictors())
    if set(saved) != set(predictors):
        missing = sorted(set(predictors) - set(saved))
        extra = sorted(set(saved) - set(predictors))
        raise ProgramStateError(
            f"{source}: saved predictors {sorted(saved)} do not match the program's {sorted(predictors)}"
            + (f"; missing from the file: {missing}" if missing else "")
            + (f"; not in the program: {extra}" if extra else "")
        )
    for name, predictor in predictors.items():
        _load_predictor(name, predictor, saved[name], source)


def save_program(program: Module, path: str | os.PathLike[str]) -> None:
    """Write atomically (temporary file, then rename) so a crash never leaves half a program."""
    target = Path(path)
    if target.suffix.lower() in (".pkl", ".pickle"):
        raise ProgramStateError(f"{target}: dsr saves programs as JSON only; use a .json path")
    target.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(dump_program_state(program), indent=2, ensure_ascii=False)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(data)
    os.replace(tmp, target)


def read_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProgramStateError(f"{path}: no such program file") from None
    try:
        state = json.loads(text)
    except ValueError as exc:
        raise ProgramStateError(f"{path}: not valid JSON ({exc}); is the file truncated?") from None
    if not isinstance(state, dict):
        raise ProgramStateError(f"{path}: program state must be a JSON object")
    return state


SOURCES_ENTRY_POINT = "dsr.program_sources"


def read_program_source(source: str | os.PathLike[str]) -> dict[str, Any]:
    """Program JSON from a path, an fsspec URL (``s3://...``), or a scheme registered under the
    ``dsr.program_sources`` entry point group (dsr registers ``models:/`` for the MLflow registry)."""
    text = os.fspath(source)
    scheme, sep, _ = text.partition(":/")
    if sep and len(scheme) > 1:
        from importlib.metadata import entry_points

        for entry in entry_points(group=SOURCES_ENTRY_POINT, name=scheme):
            return entry.load()(text)  # type: ignore[no-any-return]
        if scheme == "models":
            raise ProgramStateError(f"{text}: loading from the MLflow registry needs dsr's flows package installed")
    if "://" not in text or text.startswith("file://"):
        return read_state(text.removeprefix("file://"))
    import fsspec

    try:
        with fsspec.open(text, "r", encoding="utf-8") as handle:
            state = json.load(handle)
    except FileNotFoundError:
        raise ProgramStateError(f"{text}: no such program file") from None
    except ValueError as exc:
        raise ProgramStateError(f"{text}: not valid JSON ({exc}); is the file truncated?") from None
    if not isinstance(state, dict):
        raise ProgramStateError(f"{text}: program state must be a JSON object")
    return state


def program_from_metadata(state: dict[str, Any], source: str) -> Module:
    """Build the program a saved state names in ``metadata.program`` (``module:Class``, no arguments)."""
    from .imports import import_ref
    from .modules.module import Module

    ref = (state.get("metadata") or {}).get("program")
    if not ref or ":" not in ref:
        raise ProgramStateError(f"{source}: the file does not name its program class; pass program=... to load it")
    try:
        program = import_ref(ref)()
    except Exception as exc:  # noqa: BLE001 - any import/constructor failure, reported with the reference
        raise ProgramStateError(f"{source}: cannot build program {ref!r}: {type(exc).__name__}: {exc}") from None
    if not isinstance(program, Module):
        raise ProgramStateError(f"{source}: {ref!r} is not a dsr Module")
    return program


def load_program(source: str | os.PathLike[str], program: Module | None = None) -> Module:
    """Load a program saved by dsr or by DSPy 3.x from a path, URL or ``models:/name@alias``.

    Without ``program``, the class named in the file's metadata is built (it must take no arguments).
    """
    state = read_program_source(source)
    if program is None:
        program = program_from_metadata(state, os.fspath(source))
    load_program_state(program, state, source=os.fspath(source))
    return program
