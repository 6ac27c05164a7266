"""Program state as JSON: one entry per predictor by dotted name, plus metadata. Never pickle.

The layout is DSPy's (``{"rewrite": {...}, "answer.predict": {...}, "metadata": {...}}``, each entry with
``demos``, ``signature.instructions``, ``signature.fields[].prefix/description`` and ``lm``; a bare
Predict's file is its one entry, flat, plus ``metadata``), extended with what dsr needs to check a load:
field names, kinds and types, and signature hashes. dsr's extensions sit where DSPy 3.x's loader ignores
them: extra keys of a field or of ``metadata`` (DSPy reads only ``metadata.dependency_versions``, and
every key there must be one of its own: ``python``, ``dspy``, ``cloudpickle``). So a file saved by DSPy
3.x loads here, and DSPy 3.x loads a file saved here.

In memory (``Module.dump_state()``, optimizer states, checkpoints) a program state is always keyed by
predictor name, ``"self"`` for a bare Predict; only the file of a bare Predict is flat.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
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

    mapping = demo.toDict() if hasattr(demo, "toDict") else dict(demo)  # nested Examples as dicts, as DSPy saves
    return {k: jsonable(v) for k, v in mapping.items()}


DEPENDENCY_KEYS = ("python",)  # the keys of DSPy's dependency_versions dsr can fill truthfully
# the class markers of saved LM state that mean "an OpenAI-compatible LM": dsr's LM loads them
_BUILTIN_LM_CLASSES = {None, "dspy.clients.lm.LM", "dsr_core.lm.LM"}
_PREDICTOR_KEYS = {"signature", "demos", "lm"}


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
    """The program's state keyed by predictor name (``"self"`` for a bare Predict), plus ``metadata``."""
    from .lm import DEFAULT_API_KEY_ENV

    predictors = program.named_predictors()
    entries = {name: dump_predictor_state(p) for name, p in predictors}
    key_envs = {
        name: p.lm.api_key_env
        for name, p in predictors
        if getattr(p.lm, "api_key_env", DEFAULT_API_KEY_ENV) != DEFAULT_API_KEY_ENV
    }
    metadata: dict[str, Any] = {
        "format": FORMAT,
        "dsr_version": _version(),
        "program": f"{type(program).__module__}:{type(program).__qualname__}",
        "signature_hashes": {name: p.signature.hash for name, p in predictors},
        "dependency_versions": {"python": ".".join(platform.python_version_tuple()[:2])},
    }
    if key_envs:
        metadata["lm_api_key_env"] = key_envs  # DSPy's LM has no such setting: kept out of the lm entries
    extra = getattr(program, "state_metadata", None)
    if callable(extra):
        metadata.update(extra())  # what a program needs to rebuild itself (a GraphProgram's graph)
    return ProgramState(entries, metadata).to_json()


def other_parameters(program: Module) -> dict[str, Any]:
    """The program's parameters that are no predictor but have state of their own (a ``Retrieve``'s ``k``)."""
    predictors = {name for name, _ in program.named_predictors()}
    return {
        name: p
        for name, p in program.named_parameters()
        if name not in predictors and callable(getattr(p, "dump_state", None))
    }


def file_state(program: Module) -> ProgramState:
    """What a program file holds: DSPy's layout, an entry per parameter in the program's order, a ``Retrieve``'s
    ``{"k": ...}`` among the predictors'. Optimizer states and checkpoints keep the predictors' entries only."""
    state = ProgramState.from_json(dump_program_state(program))
    others = other_parameters(program)
    if not others:
        return state
    entries = {
        name: others[name].dump_state() if name in others else state.entries[name]
        for name, _ in program.named_parameters()
        if name in others or name in state.entries
    }
    return state.with_entries(entries)


METADATA = "metadata"  # the key of a program state's metadata, next to its predictors' entries


@dataclass(frozen=True)
class ProgramState:
    """A program state with its predictors' entries and its metadata apart.

    ``from_json`` reads the dict that program files, ``Module.dump_state()``, optimizer states and
    checkpoints hold (keyed by predictor name, or a bare Predict's flat file); ``to_json`` writes it back
    keyed, the same dict in the same order, and ``to_file`` in the layout DSPy writes.
    """

    entries: dict[str, Any]  # predictor name -> its entry (``signature``, ``demos``, ``lm``, ...)
    metadata: dict[str, Any] | None = None  # None: the state has none

    @classmethod
    def from_json(cls, state: Mapping[str, Any]) -> ProgramState:
        """Either layout; a ``metadata`` that is not an object is left out (as loading ignores it)."""
        state = keyed_layout(dict(state))
        metadata = state.get(METADATA)
        entries = {name: entry for name, entry in state.items() if name != METADATA}
        return cls(entries, metadata if isinstance(metadata, dict) else None)

    def predictors(self) -> dict[str, Any]:
        """Each predictor's entry by name, in the program's order."""
        return dict(self.entries)

    @property
    def program_ref(self) -> str | None:
        """The program class the state names (``module:Class``), if it names one."""
        ref = (self.metadata or {}).get("program")
        return ref if isinstance(ref, str) else None

    def with_entries(self, entries: Mapping[str, Any]) -> ProgramState:
        """The same metadata with other predictor entries."""
        return ProgramState(dict(entries), self.metadata)

    def to_json(self) -> dict[str, Any]:
        """The keyed layout: the predictors' entries, then ``metadata`` when there is one."""
        return {**self.entries, METADATA: self.metadata} if self.metadata is not None else dict(self.entries)

    def to_file(self) -> dict[str, Any]:
        """The layout DSPy writes (see ``file_layout``)."""
        return file_layout(self.to_json())


def file_layout(state: dict[str, Any]) -> dict[str, Any]:
    """The layout DSPy writes: a bare Predict's state (one entry, ``"self"``) flat, with ``metadata``."""
    entries = [k for k in state if k != METADATA]
    if entries == ["self"]:
        return {**state["self"], METADATA: state.get(METADATA, {})}
    return state


def keyed_layout(state: dict[str, Any]) -> dict[str, Any]:
    """The in-memory layout of any saved state: a flat predictor state becomes ``{"self": ...}``."""
    if "signature" in state and isinstance(state.get("signature"), dict) and "demos" in state:
        entry = {k: v for k, v in state.items() if k != METADATA}
        return {"self": entry, METADATA: state.get(METADATA) or {}}
    return state


def _load_predictor(
    name: str, predictor: Predict, entry: Any, source: str, metadata: dict[str, Any], allow_unsafe_lm_state: bool
) -> None:
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
    lm_state = entry.get("lm")
    lm = None
    if isinstance(lm_state, dict) and lm_state.get("model"):
        key_env = (metadata.get("lm_api_key_env") or {}).get(name)
        lm = load_lm_state({**lm_state, "api_key_env": key_env} if key_env else lm_state, where, allow_unsafe_lm_state)
    predictor.signature = signature
    predictor.demos = [dict(d) for d in demos]
    predictor.config.update(entry.get("config") or {})
    if lm is not None:
        predictor.lm = lm


def load_lm_state(state: dict[str, Any], where: str = "state", allow_unsafe_lm_state: bool = False) -> Any:
    """An LM from saved LM state: dsr's ``LM`` for an OpenAI-compatible one (dsr's or DSPy's ``dspy.LM``);
    another ``BaseLM`` subclass named by its class path only with ``allow_unsafe_lm_state`` (importing a
    class a file names runs its code), as DSPy does."""
    from .lm import LM
    from .lm.base import LM_CLASS_STATE_KEY, BaseLM

    marker = state.get(LM_CLASS_STATE_KEY)
    if marker in _BUILTIN_LM_CLASSES:
        return LM.load_state(state)
    if not allow_unsafe_lm_state:
        raise ProgramStateError(
            f"{where}: the saved LM is a custom class {marker!r}; refusing to import it. Pass "
            "allow_unsafe_lm_state=True when loading a trusted file, or set the predictor's LM after loading"
        )
    from .imports import import_ref

    module, _, name = str(marker).rpartition(".")
    try:
        cls = import_ref(f"{module}:{name}")
    except Exception as exc:  # noqa: BLE001 - reported with the class path
        raise ProgramStateError(f"{where}: cannot import LM class {marker!r}: {type(exc).__name__}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, BaseLM)):
        raise ProgramStateError(f"{where}: LM class {marker!r} is not a BaseLM subclass")
    return cls.load_state(state)


def load_program_state(
    program: Module, state: dict[str, Any], source: str = "state", *, allow_unsafe_lm_state: bool = False
) -> None:
    """Load a state (keyed, or a bare Predict's flat file) into ``program``; nothing changes on an error."""
    if not isinstance(state, dict):
        raise ProgramStateError(f"{source}: program state must be a JSON object, got {type(state).__name__}")
    prepare = getattr(program, "prepare_state", None)
    if callable(prepare):
        prepare(state, allow_unsafe_lm_state=allow_unsafe_lm_state)  # a GraphProgram builds its nodes first
    program_state = ProgramState.from_json(state)
    metadata = program_state.metadata or {}
    saved = program_state.predictors()
    predictors = dict(program.named_predictors())
    others = other_parameters(program)  # their entries are optional: a file DSPy or an older dsr wrote may lack them
    saved_others = {name: saved.pop(name) for name in list(saved) if name in others}
    if set(saved) != set(predictors):
        missing = sorted(set(predictors) - set(saved))
        extra = sorted(set(saved) - set(predictors))
        raise ProgramStateError(
            f"{source}: saved predictors {sorted(saved)} do not match the program's {sorted(predictors)}"
            + (f"; missing from the file: {missing}" if missing else "")
            + (f"; not in the program: {extra}" if extra else "")
        )
    import copy

    trial = {name: copy.copy(p) for name, p in predictors.items()}  # a failed load leaves the program as it was
    for name, predictor in trial.items():
        predictor.config = dict(predictor.config)
        _load_predictor(name, predictor, saved[name], source, metadata, allow_unsafe_lm_state)
    for name, entry in saved_others.items():  # checked on copies first, as the predictors' entries are
        copy.deepcopy(others[name]).load_state(entry)
    for name, entry in saved_others.items():
        others[name].load_state(entry)
    for name, predictor in predictors.items():
        loaded = trial[name]
        predictor.signature, predictor.demos, predictor.config = loaded.signature, loaded.demos, loaded.config
        predictor.lm = loaded.lm


PICKLE_SUFFIXES = (".pkl", ".pickle")


def save_program(program: Module, path: str | os.PathLike[str], *, whole_program: bool = False) -> None:
    """Write atomically (temporary file, then rename) so a crash never leaves half a program.

    ``whole_program`` is DSPy's ``save_program=True`` (the program pickled): refused with a pointer to JSON.
    """
    target = Path(path)
    if whole_program:
        raise ProgramStateError(
            f"{target}: save_program=True (the whole program, pickled) is not supported: dsr never pickles. "
            f"Save the state as JSON with program.save('{target.with_suffix('.json').name}') and rebuild the "
            "program from its class, or with dsr.load_program(path) when the class takes no arguments"
        )
    if target.suffix.lower() in PICKLE_SUFFIXES:
        raise ProgramStateError(
            f"{target}: dsr saves programs as JSON only (a pickle runs code when loaded); "
            f"use a .json path, e.g. {target.with_suffix('.json').name}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(file_state(program).to_file(), indent=2, ensure_ascii=False)
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

    ref = ProgramState.from_json(state).program_ref
    if not ref or ":" not in ref:
        raise ProgramStateError(f"{source}: the file does not name its program class; pass program=... to load it")
    try:
        program = import_ref(ref)()
    except Exception as exc:  # noqa: BLE001 - any import/constructor failure, reported with the reference
        raise ProgramStateError(f"{source}: cannot build program {ref!r}: {type(exc).__name__}: {exc}") from None
    if not isinstance(program, Module):
        raise ProgramStateError(f"{source}: {ref!r} is not a dsr Module")
    return program


def load_program(
    source: str | os.PathLike[str],
    program: Module | None = None,
    *,
    allow_pickle: bool = False,
    allow_unsafe_lm_state: bool = False,
) -> Module:
    """Load a program saved by dsr or by DSPy 3.x from a path, URL or ``models:/name@alias``.

    Without ``program``, the class named in the file's metadata is built (it must take no arguments).
    Pickle files are refused whatever ``allow_pickle`` says (it is accepted for DSPy's signature).
    """
    text = os.fspath(source)
    if Path(text).suffix.lower() in PICKLE_SUFFIXES:
        raise ProgramStateError(
            f"{text}: dsr loads programs from JSON only (a pickle runs code when loaded); save the program "
            "with program.save('program.json') where it was made and load that file"
        )
    state = read_program_source(source)
    if program is None:
        program = program_from_metadata(state, text)
    load_program_state(program, state, source=text, allow_unsafe_lm_state=allow_unsafe_lm_state)
    return program
