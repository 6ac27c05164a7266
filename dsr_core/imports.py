"""User code named by reference (``package.module:attr``): how it is imported and how its version is told.

One import rule everywhere (configs, saved programs, ``dsr serve``): modules are found on ``sys.path`` with
the working folder on it, as ``python -m`` does, so ``examples.travel_destination.program:TravelDestination``
imports from the folder a command runs in, whichever command it is.

``code_digest`` is what makes a persisted result belong to the code that produced it: a hash over the
source files of the modules that define the referenced objects and the user modules they import (a
program's helpers, a metric's normalizer; installed libraries are versioned by their install and left
out), plus dsr_core's own source. Editing any of them gives a new digest, so a result computed by the old
code is never replayed for the new one.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import os
import sys
import sysconfig
from functools import lru_cache
from pathlib import Path
from typing import Any


def ensure_working_folder_on_path() -> None:
    """Put the working folder first on ``sys.path`` (what ``python -m`` does), once."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def import_ref(ref: str) -> Any:
    """The object ``package.module:attr`` names (``attr`` may be dotted), imported with the working folder
    on the path."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{ref!r} is not of the form 'package.module:attr'")
    ensure_working_folder_on_path()
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    return target


# -- code versions -----------------------------------------------------------------------------------------------

# dsr's own packages: versioned by dsr_code_digest, not followed as user code
DSR_PACKAGES = ("dsr_core", "tasks", "flows")


def _library_roots() -> tuple[str, ...]:
    """Folders of the standard library and installed packages: code there is versioned by its install."""
    paths = sysconfig.get_paths()
    roots = {paths.get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    return tuple(str(Path(r).resolve()) + os.sep for r in roots if r)


def _imported_names(tree: ast.AST, module_name: str, is_package: bool) -> set[str]:
    """Absolute names of the modules a source file imports (anywhere in it), relative imports resolved."""
    names: set[str] = set()
    package = module_name if is_package else module_name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target:
                names.add(target)
                names.update(f"{target}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return names


def _user_module_file(name: str, libraries: tuple[str, ...]) -> tuple[Path, bool] | None:
    """The source file of module ``name`` if it is user code (not dsr, not installed); whether it is a package."""
    if not name or name.split(".", 1)[0] in DSR_PACKAGES:
        return None
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError, AttributeError):
        return None
    origin = getattr(spec, "origin", None) if spec is not None else None
    if not origin or not origin.endswith(".py"):
        return None
    path = Path(origin).resolve()
    if str(path).startswith(libraries):
        return None
    return path, bool(spec.submodule_search_locations)


def user_code_files(module_name: str) -> dict[str, Path]:
    """The module's source and, transitively, every user module it imports (found by reading the imports,
    so the answer does not depend on what happens to be loaded in this process). Imports made by name at
    run time (``importlib.import_module(variable)``) are not seen."""
    ensure_working_folder_on_path()
    libraries = _library_roots()
    found: dict[str, Path] = {}
    pending = [module_name]
    while pending:
        name = pending.pop()
        if name in found:
            continue
        located = _user_module_file(name, libraries)
        if located is None:
            continue
        path, is_package = located
        found[name] = path
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (OSError, SyntaxError, ValueError):
            continue
        pending.extend(_imported_names(tree, name, is_package) - set(found))
    return found


@lru_cache(maxsize=1)
def dsr_code_digest() -> str:
    """sha256 over dsr_core's own source files (computed once per process: it does not change under it)."""
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def code_digest(*refs: str, include_dsr: bool = True) -> str:
    """A hash of the user code behind ``refs`` (import references; a name that is not ``module:attr``, such
    as the built-in metric ``exact_match``, stands for itself) and, with ``include_dsr``, of dsr_core.

    The same files give the same digest in any process on any machine; editing the module a ref names, or
    any user module it imports, gives a new one.
    """
    digest = hashlib.sha256(dsr_code_digest().encode() if include_dsr else b"")
    files: dict[str, Path] = {}
    for ref in sorted(set(refs)):
        digest.update(ref.encode() + b"\0")
        if ":" in ref:
            files.update(user_code_files(ref.partition(":")[0]))
    for name, path in sorted(files.items()):
        digest.update(name.encode() + b"\0")
        try:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        except OSError:
            digest.update(b"<unreadable>")
    return digest.hexdigest()[:32]
