"""Checking a graph: well-wired, acyclic, and (for an edited graph) the same boundary as its parent.

Every problem found is reported at once, each naming the node and field concerned, so an edit that breaks
several things says so in one error.
"""

from __future__ import annotations

import typing
from collections import Counter
from typing import Any, Union, get_args, get_origin

from ..errors import SignatureError
from .ir import GraphError, PredictNode, ProgramGraph, Ref, parse_type


class GraphValidationError(GraphError):
    """A graph is not valid; ``problems`` lists what is wrong, one line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid program graph:\n" + "\n".join(f"  - {p}" for p in problems))


def validate_graph(graph: ProgramGraph, parent: ProgramGraph | None = None) -> None:
    """Raise ``GraphValidationError`` unless ``graph`` is valid (and, given ``parent``, keeps its boundary)."""
    problems = _wiring_problems(graph)
    if not problems:
        _, cycle = _order(graph)
        if cycle:
            problems.append(f"the graph has a cycle through nodes {cycle}")
    if parent is not None:
        problems.extend(_boundary_problems(graph, parent))
    if problems:
        raise GraphValidationError(problems)


def topological_order(graph: ProgramGraph) -> list[str]:
    """Node names so that every node comes after the nodes it reads (graph order among equals)."""
    order, stuck = _order(graph)
    if stuck:
        raise GraphValidationError([f"the graph has a cycle through nodes {stuck}"])
    return order


def _order(graph: ProgramGraph) -> tuple[list[str], list[str]]:
    """Kahn's algorithm: the nodes in order, and the nodes left over because they lie on or behind a cycle."""
    order: list[str] = []
    remaining = {n.name: n.sources() for n in graph.nodes}
    while remaining:
        ready = [name for name, deps in remaining.items() if not deps & remaining.keys()]
        if not ready:
            break
        order.extend(ready)
        for name in ready:
            del remaining[name]
    return order, sorted(remaining)


def _wiring_problems(graph: ProgramGraph) -> list[str]:
    problems: list[str] = []
    names = Counter(n.name for n in graph.nodes)
    problems += [f"node name {name!r} is used by {count} nodes" for name, count in names.items() if count > 1]
    outputs_of = {n.name: {f.name for f in n.output_fields} for n in graph.nodes}
    program_inputs = {f.name for f in graph.inputs}

    def check_source(where: str, source: Ref) -> None:
        if source.node is None:
            if source.field not in program_inputs:
                problems.append(f"{where} reads program input {source.field!r}, which the graph does not take")
        elif source.node not in outputs_of:
            problems.append(f"{where} reads {source}, but there is no node {source.node!r}")
        elif source.field not in outputs_of[source.node]:
            problems.append(f"{where} reads {source}, but node {source.node!r} has no output {source.field!r}")

    for node in graph.nodes:
        inputs = [f.name for f in node.input_fields]
        outputs = [f.name for f in node.output_fields]
        for name, count in Counter(inputs + outputs).items():
            if count > 1:
                problems.append(f"node {node.name!r} declares field {name!r} {count} times")
        bound = Counter(b.field for b in node.bindings)
        for name in inputs:
            if bound[name] != 1:
                problems.append(f"input {name!r} of node {node.name!r} is bound {bound[name]} times (must be once)")
        for name in bound.keys() - set(inputs):
            problems.append(f"node {node.name!r} binds {name!r}, which is not one of its inputs {inputs}")
        for binding in node.bindings:
            if binding.source.node == node.name:
                problems.append(f"input {binding.field!r} of node {node.name!r} reads the node's own output")
            else:
                check_source(f"input {binding.field!r} of node {node.name!r}", binding.source)
        if isinstance(node, PredictNode):
            try:
                node.signature.to_signature()
            except (GraphError, SignatureError) as exc:
                problems.append(f"node {node.name!r} has an unusable signature: {exc}")
    returned = Counter(b.field for b in graph.returns)
    for field in graph.outputs:
        if returned[field.name] != 1:
            problems.append(f"program output {field.name!r} is bound {returned[field.name]} times (must be once)")
    for name in returned.keys() - {f.name for f in graph.outputs}:
        problems.append(f"the graph returns {name!r}, which is not one of its declared outputs")
    for binding in graph.returns:
        check_source(f"program output {binding.field!r}", binding.source)
    return problems


def _boundary_problems(graph: ProgramGraph, parent: ProgramGraph) -> list[str]:
    problems: list[str] = []
    before = {f.name: f.type for f in parent.inputs}
    after = {f.name: f.type for f in graph.inputs}
    if before != after:
        problems.append(f"the program inputs changed from {before} to {after}")
    old = {f.name: f.type for f in parent.outputs}
    new = {f.name: f.type for f in graph.outputs}
    if old.keys() != new.keys():
        problems.append(f"the program outputs changed from {sorted(old)} to {sorted(new)}")
    for name in old.keys() & new.keys():
        actual = _returned_type(graph, name) or new[name]
        if not is_widening(old[name], actual) or not is_widening(old[name], new[name]):
            problems.append(f"program output {name!r} was {old[name]} and is now {actual}: neither equal nor wider")
    return problems


def _returned_type(graph: ProgramGraph, output: str) -> str | None:
    """The type of the field actually feeding program output ``output`` (None if it is not wired)."""
    for binding in graph.returns:
        if binding.field == output:
            try:
                return graph.field_type(binding.source)
            except GraphError:
                return None
    return None


def is_widening(old: str, new: str) -> bool:
    """Whether a value of type ``old`` is always a value of type ``new`` (equal types, ``Any``, a union
    holding the old type's members, ``Optional[old]``)."""
    if old == new:
        return True
    try:
        before, after = parse_type(old), parse_type(new)
    except GraphError:
        return False
    if after is Any or before == after:
        return True
    return _members(before) <= _members(after) if _is_union(after) else False


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, getattr(typing, "UnionType", Union))


def _members(annotation: Any) -> set[Any]:
    return set(get_args(annotation)) if _is_union(annotation) else {annotation}
