"""DSPy's ``dspy.utils.magicattr``: getattr/setattr/delattr along a dotted, indexed path (``"a.b[0]['k']"``).

The path is parsed as a Python expression and walked step by step: names and attributes by ``getattr``,
subscripts by ``[]`` with a literal key (a number, a negative number or a string). Calls and any other
expression are refused, so a path never runs code.
"""

from __future__ import annotations

import ast
import builtins
from typing import Any

_MISSING = object()


def _steps(path: str) -> list[tuple[str, Any]]:
    """``path`` as ``[("attr", name) | ("item", key), ...]``, outermost first."""
    if not isinstance(path, str):
        raise TypeError("Attribute name must be a string")
    body = ast.parse(path).body
    if len(body) != 1 or not isinstance(body[0], ast.Expr):
        raise ValueError(f"Invalid expression: {path}")
    steps: list[tuple[str, Any]] = []
    node: ast.AST = body[0].value
    while True:
        if isinstance(node, ast.Name):
            steps.append(("attr", node.id))
            return steps[::-1]
        if isinstance(node, ast.Attribute):
            steps.append(("attr", node.attr))
        elif isinstance(node, ast.Subscript):
            steps.append(("item", _literal(node.slice)))
        elif isinstance(node, ast.Call):
            raise ValueError("Function calls are not allowed.")
        else:
            raise NotImplementedError(f"Node is not supported: {ast.dump(node)}")
        node = node.value  # type: ignore[attr-defined]


def _literal(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        return -node.operand.value
    raise NotImplementedError(f"Subscript node is not supported: {ast.dump(node)}")


def _step(obj: Any, step: tuple[str, Any]) -> Any:
    kind, key = step
    return getattr(obj, key) if kind == "attr" else obj[key]


def get(obj: Any, attr: str, default: Any = _MISSING) -> Any:
    """The value at ``attr`` below ``obj``; ``default`` (when given) if any step fails."""
    try:
        for step in _steps(attr):
            obj = _step(obj, step)
    except Exception:
        if default is _MISSING:
            raise
        return default
    return obj


def lookup(obj: Any, attr: str) -> tuple[Any, Any, bool]:
    """The object the last step acts on, its attribute name or key, and whether that step is a subscript."""
    steps = _steps(attr)
    for step in steps[:-1]:
        obj = _step(obj, step)
    kind, key = steps[-1]
    return obj, key, kind == "item"


def set(obj: Any, attr: str, val: Any) -> None:  # noqa: A001 - DSPy's name
    owner, key, is_item = lookup(obj, attr)
    if is_item:
        owner[key] = val
    else:
        builtins.setattr(owner, key, val)


def delete(obj: Any, attr: str) -> None:
    owner, key, is_item = lookup(obj, attr)
    if is_item:
        del owner[key]
    else:
        builtins.delattr(owner, key)


__all__ = ["delete", "get", "lookup", "set"]
