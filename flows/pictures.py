"""Pictures of an optimization for MLflow (matplotlib, no display needed): the candidate lineage as a tree,
a structural search's quality against cost, and a program graph when Graphviz is not there to draw it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dsr_core.graph import PredictNode, ProgramGraph, topological_order

from .lineage import LineageRow

FRONT_COLOR = "#d62728"
BEST_COLOR = "#2ca02c"
INPUTS, OUTPUTS = "<inputs>", "<outputs>"  # the graph's boundary (no node name has angle brackets)
MAX_INCHES = 40.0  # a picture of a very large pool stays a file a browser opens


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# -- lineage ---------------------------------------------------------------------------------------------------


def tree_layout(rows: Sequence[LineageRow]) -> dict[int, tuple[float, float]]:
    """Per candidate, (x, depth): depth is one more than its deepest parent; within a depth, candidates sit
    near the mean position of their parents (then in the order they were made), so edges cross little."""
    depth: dict[int, int] = {}
    for row in rows:  # parents are always made before their children
        known = [depth[p] for p in row["parents"] if p in depth]
        depth[row["candidate"]] = 1 + max(known) if known else 0
    position: dict[int, tuple[float, float]] = {}
    for level in range(max(depth.values(), default=-1) + 1):
        members = [row for row in rows if depth[row["candidate"]] == level]

        def anchor(row: LineageRow) -> float:
            xs = [position[p][0] for p in row["parents"] if p in position]
            return sum(xs) / len(xs) if xs else 0.0

        members.sort(key=lambda row: (anchor(row), row["candidate"]))
        offset = (len(members) - 1) / 2
        for i, row in enumerate(members):
            position[row["candidate"]] = (i - offset, float(level))
    return position


def _label(row: LineageRow) -> str:
    score = "-" if row["score"] is None else f"{row['score']:.1f}"
    if row["scored_on"] == "minibatch":
        score += " (minibatch)"
    origin = row["origin"] if len(row["origin"]) <= 28 else row["origin"][:27] + "…"
    return f"#{row['candidate']}  {score}\n{origin}"


def plot_lineage(rows: Sequence[LineageRow], path: Path, title: str) -> None:
    """The lineage tree: one box per candidate (number, score, how it was made), an arrow from each parent
    to its child (a merge has two), the Pareto front outlined in red and the best candidate in green."""
    plt = _pyplot()
    layout = tree_layout(rows)
    widest = max(
        (sum(1 for x, y in layout.values() if y == level) for level in {y for _, y in layout.values()}), default=1
    )
    levels = 1 + int(max((y for _, y in layout.values()), default=0))
    figure, axes = plt.subplots(
        figsize=(min(MAX_INCHES, max(6.0, 2.2 * widest)), min(MAX_INCHES, max(3.0, 1.3 * levels + 1))), dpi=100
    )
    for row in rows:
        x, y = layout[row["candidate"]]
        for parent in row["parents"]:
            if parent in layout:
                px, py = layout[parent]
                axes.annotate(
                    "",
                    xy=(x, -y + 0.18),
                    xytext=(px, -py - 0.18),
                    arrowprops={"arrowstyle": "->", "color": "#555555", "lw": 1.0, "shrinkA": 2, "shrinkB": 2},
                )
    for row in rows:
        x, y = layout[row["candidate"]]
        edge = BEST_COLOR if row["best"] else FRONT_COLOR if row["pareto"] else "#777777"
        axes.text(
            x,
            -y,
            _label(row),
            ha="center",
            va="center",
            fontsize=8,
            bbox={
                "boxstyle": "round,pad=0.3",
                "facecolor": "white",
                "edgecolor": edge,
                "linewidth": 2.0 if row["best"] or row["pareto"] else 1.0,
            },
        )
    xs = [x for x, _ in layout.values()] or [0.0]
    axes.set_xlim(min(xs) - 0.8, max(xs) + 0.8)
    axes.set_ylim(-(levels - 1) - 0.6, 0.6)
    axes.axis("off")
    legend = "boxes: candidate, score, origin; red: Pareto front; green: best" if rows else "no candidates yet"
    axes.set_title(f"{title}\n{legend}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


# -- quality against cost ----------------------------------------------------------------------------------------


def plot_quality_cost(rows: Sequence[LineageRow], path: Path, title: str) -> bool:
    """Validation score against LM calls per example for every validated candidate, the Pareto front
    highlighted and joined. False (nothing written) when no candidate was validated."""
    points = [row for row in rows if row["scored_on"] not in (None, "minibatch") and row["lm_calls"] is not None]
    if not points:
        return False
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(8, 5), dpi=100)
    rest = [row for row in points if not row["pareto"]]
    front = sorted((row for row in points if row["pareto"]), key=lambda row: (row["lm_calls"], -row["score"]))
    axes.scatter([r["lm_calls"] for r in rest], [r["score"] for r in rest], s=36, color="#999999", label="candidate")
    axes.scatter(
        [r["lm_calls"] for r in front], [r["score"] for r in front], s=64, color=FRONT_COLOR, label="Pareto front"
    )
    if len(front) > 1:
        axes.step([r["lm_calls"] for r in front], [r["score"] for r in front], where="post", color=FRONT_COLOR, lw=1)
    at: dict[tuple[float, float], list[str]] = {}  # candidates at the same point share one label
    for row in points:
        at.setdefault((row["lm_calls"], row["score"]), []).append(f"#{row['candidate']} {row['origin']}")
    for point, names in at.items():
        axes.annotate("\n".join(names), point, textcoords="offset points", xytext=(6, 4), fontsize=8)
    scores = [row["score"] for row in points]
    axes.set_ylim(max(0.0, min(scores) - 10.0), max(scores) + 5.0)
    axes.set_xlabel("LM calls per example")
    axes.set_ylabel("validation score")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.margins(x=0.25)
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return True


# -- program graphs ----------------------------------------------------------------------------------------------


def plot_graph(graph: ProgramGraph, path: Path, title: str) -> None:
    """A program graph left to right: the inputs, every node in run order (Predict nodes as boxes, steps as
    dashed boxes), the outputs; an arrow per pair of connected nodes, labelled with the fields it carries.
    Arrows that pass over nodes arc above them."""
    plt = _pyplot()
    from matplotlib.patches import FancyArrowPatch

    order = [INPUTS, *topological_order(graph), OUTPUTS]
    column = {name: 3.0 * i for i, name in enumerate(order)}
    fields: dict[tuple[str, str], list[str]] = {}  # per (source, target): the fields the arrow carries
    for target, bindings in [*((node.name, node.bindings) for node in graph.nodes), (OUTPUTS, graph.returns)]:
        for binding in bindings:
            read = binding.source.field
            label = read if read == binding.field else f"{read} -> {binding.field}"
            fields.setdefault((binding.source.node or INPUTS, target), []).append(label)
    skips = max((round((column[b] - column[a]) / 3.0) for a, b in fields), default=1)
    texts = {name: _node_text(graph, name) for name in order}
    longest = max(len(line) for text, _ in texts.values() for line in text.splitlines())
    spacing = max(2.4, 0.075 * longest + 0.9)  # inches between node centres: room for the widest label
    figure, axes = plt.subplots(figsize=(min(MAX_INCHES, spacing * len(order) + 1), 2.5 + 0.5 * skips), dpi=100)
    axes.set_aspect("equal")
    boxes = {}
    for name, (text, style) in texts.items():
        label = axes.text(
            column[name],
            0,
            text,
            ha="center",
            va="center",
            fontsize=8,
            zorder=3,
            bbox={"boxstyle": "round,pad=0.4", "edgecolor": "#333333", **style},
        )
        boxes[name] = label.get_bbox_patch()
    top = 1.0
    for (source, target), labels in fields.items():
        x1, x2 = column[source], column[target]
        rad = -0.12 * (round((x2 - x1) / 3.0) - 1)  # adjacent nodes: straight; farther: a higher arc
        axes.add_patch(
            FancyArrowPatch(
                (x1, 0),
                (x2, 0),
                connectionstyle=f"arc3,rad={rad}",
                arrowstyle="-|>",
                mutation_scale=12,
                color="#555555",
                patchA=boxes[source],  # the arrow starts and ends at the boxes' edges
                patchB=boxes[target],
                shrinkA=2,
                shrinkB=2,
                zorder=2,
            )
        )
        height = -0.5 * rad * (x2 - x1) + 0.12  # the middle of arc3's curve: half way to its control point
        axes.text((x1 + x2) / 2, height, "\n".join(labels), ha="center", va="bottom", fontsize=7)
        top = max(top, height + 0.3 * len(labels) + 0.2)
    axes.set_xlim(-1.5, column[OUTPUTS] + 1.5)
    axes.set_ylim(-0.7, top)
    axes.axis("off")
    axes.set_title(f"{title}: {graph.lm_calls_per_run} LM calls per run (graph {graph.hash[:12]})", fontsize=10)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _node_text(graph: ProgramGraph, name: str) -> tuple[str, dict[str, str]]:
    """A node's box: its name and signature (or step function), and its fill and outline style."""
    if name in (INPUTS, OUTPUTS):
        boundary = graph.inputs if name == INPUTS else graph.outputs
        text = ("inputs\n" if name == INPUTS else "outputs\n") + "\n".join(f.name for f in boundary)
        return text, {"facecolor": "#f2f2f2", "linestyle": "-"}
    node = graph.node(name)
    if isinstance(node, PredictNode):
        return f"{name}\n{node.signature.text}", {"facecolor": "#dbe9f6", "linestyle": "-"}
    return f"{name}\n{node.function or 'Python step'}", {"facecolor": "#f7f7f7", "linestyle": "--"}


__all__ = ["plot_graph", "plot_lineage", "plot_quality_cost", "tree_layout"]
