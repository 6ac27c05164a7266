"""Pictures of a graph: a text listing for terminals and logs, and Graphviz DOT (rendered to PNG only when
Graphviz's ``dot`` program happens to be installed; nothing here needs it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .ir import PredictNode, ProgramGraph, Ref
from .validate import topological_order


def render_text(graph: ProgramGraph) -> str:
    """Nodes in run order with their signatures and where each input comes from; LM calls per run."""
    short = graph.hash[:12]
    lines = [
        f"program graph {short}"
        + (f" (parent {graph.parent[:12]})" if graph.parent else "")
        + f": {len(graph.nodes)} nodes, {graph.lm_calls_per_run} LM calls per run",
        "inputs: " + ", ".join(f"{f.name}: {f.type}" for f in graph.inputs),
    ]
    by_name = {n.name: n for n in graph.nodes}
    for name in topological_order(graph):
        node = by_name[name]
        if isinstance(node, PredictNode):
            lines.append(f"[predict] {name}: {node.signature.text}")
        else:
            runs = node.function or "unmarked Python: mark it with @step to run the graph"
            outputs = ", ".join(f.name for f in node.outputs)
            lines.append(f"[step]    {name}: {', '.join(f.name for f in node.inputs)} -> {outputs}  ({runs})")
        lines.extend(f"    {b.field} <- {b.source}" for b in node.bindings)
    lines.append("outputs:")
    lines.extend(f"    {b.field} <- {b.source}" for b in graph.returns)
    return "\n".join(lines)


def render_dot(graph: ProgramGraph) -> str:
    """A Graphviz digraph: inputs and outputs as plain labels, Predict nodes as boxes, steps as ellipses, one
    edge per field read (labelled ``source field -> input field``)."""
    lines = [
        "digraph program {",
        "  rankdir=LR;",
        f'  label="{graph.lm_calls_per_run} LM calls per run"; labelloc=t;',
        '  node [fontname="Helvetica"]; edge [fontname="Helvetica", fontsize=10];',
        '  "input" [shape=plaintext, label="inputs"];',
        '  "output" [shape=plaintext, label="outputs"];',
    ]
    for node in graph.nodes:
        if isinstance(node, PredictNode):
            label = f"{node.name}\\n{node.signature.text}"
            lines.append(f'  "{_id(node.name)}" [shape=box, style=rounded, label="{_escape(label)}"];')
        else:
            label = f"{node.name}\\n{node.function or 'unmarked Python'}"
            lines.append(f'  "{_id(node.name)}" [shape=ellipse, style=dashed, label="{_escape(label)}"];')
    for node in graph.nodes:
        lines.extend(_edge(b.source, _id(node.name), b.field) for b in node.bindings)
    lines.extend(_edge(b.source, "output", b.field) for b in graph.returns)
    lines.append("}")
    return "\n".join(lines)


def render_png(graph: ProgramGraph, path: str | Path) -> Path | None:
    """Write a PNG of the graph with Graphviz's ``dot``; None (nothing written) when ``dot`` is not installed."""
    dot = shutil.which("dot")
    if dot is None:
        return None
    target = Path(path)
    subprocess.run([dot, "-Tpng", "-o", str(target)], input=render_dot(graph).encode(), check=True, timeout=60)
    return target


def _edge(source: Ref, target: str, field: str) -> str:
    label = source.field if source.field == field else f"{source.field} -> {field}"
    return f'  "{_id(source.node) if source.node else "input"}" -> "{target}" [label="{_escape(label)}"];'


def _id(name: str) -> str:
    """A node's DOT id: its name, kept apart from the ``input``/``output`` labels."""
    return f"node:{_escape(name)}"


def _escape(text: str) -> str:
    return text.replace('"', '\\"')
