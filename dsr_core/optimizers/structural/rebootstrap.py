"""Re-bootstrapping the demos of the nodes an accepted Fuse or Split made: which nodes those are, which
demos the teacher's successful training runs gave them, and the graph with those demos in place."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...graph import ProgramGraph
from ..base import BootstrapOutcome


def new_nodes(child: ProgramGraph, parent: ProgramGraph) -> list[str]:
    """The Predict nodes of ``child`` that ``parent`` has no node of that name for (a fused ``a+b``, the
    parts of a split), in graph order."""
    old = {node.name for node in parent.nodes}
    return [node.name for node in child.predict_nodes() if node.name not in old]


def bootstrapped_demos(
    outcomes: Sequence[BootstrapOutcome], order: Sequence[int], nodes: Sequence[str], limit: int
) -> tuple[dict[str, list[dict[str, Any]]], list[int]]:
    """Per node of ``nodes``, the demos of the successful runs taken in ``order``, at most ``limit`` runs;
    and the training examples those runs were on. A failed run is no demo; one that failed for a transient
    reason (the LM server) raises ``RuntimeError``, so a resumed run retries it rather than keeping fewer
    demos. Raises ``ValueError`` when an example has no outcome."""
    by_index = {outcome.index: outcome for outcome in outcomes}
    demos: dict[str, list[dict[str, Any]]] = {}
    used: list[int] = []
    for index in order:
        if len(used) >= limit:
            break
        outcome = by_index.get(index)
        if outcome is None:
            raise ValueError(f"tell() got no bootstrap outcome for training example {index}")
        if outcome.transient:
            raise RuntimeError(f"re-bootstrapping training example {index} failed: {outcome.error} (resume to retry)")
        taken = {name: outcome.demos[name] for name in nodes if name in outcome.demos}
        if not outcome.success or not taken:
            continue
        used.append(index)
        for name, demo in taken.items():
            demos.setdefault(name, []).append(dict(demo))
    return demos, used


def with_node_demos(graph: ProgramGraph, demos: dict[str, list[dict[str, Any]]]) -> ProgramGraph:
    """``graph`` with the named nodes' demos replaced (every other node as it was); its parent is ``graph``."""
    nodes = [
        node.model_copy(update={"demos": demos[node.name]}) if node.name in demos else node for node in graph.nodes
    ]
    return ProgramGraph.model_validate(graph.model_copy(update={"nodes": nodes, "parent": graph.hash}).model_dump())
