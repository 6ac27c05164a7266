"""The structural search's planner: what went wrong, per node, and which edits to try first.

Before the prompt model is asked how to split a node, the current graph runs traced (``TraceWork``) on a few
seeded training examples. The runs that fell short of a full score become the ``failures`` the split
question shows: per Predict node, what it was given and what it answered on those examples, next to what the
program should have answered and what the metric said. When a step has more children than
``max_children``, the prompt model ranks the edits (``RankEdits``) from the graph, those failures and a
numbered list of the edits, and only the first ``max_children`` are scored; an answer that is not a ranking
keeps the order the edits were made in.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ...graph import ProgramGraph
from ...graph.render import render_text
from ..base import TraceOutcome
from .result import describe_edit
from .state import Candidate

NO_FAILURES = "none"
_VALUE_CHARS = 300  # a value longer than this is cut in the failure notes


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= _VALUE_CHARS else text[:_VALUE_CHARS] + "..."


def _fields(values: dict[str, Any]) -> str:
    return "; ".join(f"{name}: {_short(value)}" for name, value in values.items()) or "(nothing)"


def failing(outcomes: Sequence[TraceOutcome]) -> list[TraceOutcome]:
    """The traced runs that fell short of a full score (or failed), in example order."""
    return sorted((o for o in outcomes if o.error is not None or o.score < 1.0), key=lambda o: o.index)


def failure_notes(graph: ProgramGraph, outcomes: Sequence[TraceOutcome]) -> dict[str, str]:
    """Per Predict node of ``graph``: its calls on the failing runs, with the expected outputs and the metric's
    feedback ('none' for a node when no run failed)."""
    runs = failing(outcomes)
    notes: dict[str, str] = {}
    for node in graph.predict_nodes():
        entries = []
        for number, run in enumerate(runs, start=1):
            head = f"Example {number} (score {run.score:g}; expected {_fields(run.gold)})"
            if run.error is not None:
                entries.append(f"{head}: the program failed: {_short(run.error)}")
                continue
            lines = [head + ":"]
            for call in run.calls.get(node.name, []):
                lines.append(f"  the step was given {_fields(call.inputs)}")
                lines.append(f"  and answered {_fields(call.outputs)}")
            if not run.calls.get(node.name):
                lines.append("  the step was not called")
            feedback = run.predictor_feedback.get(node.name) or run.feedback
            if feedback:
                lines.append(f"  feedback: {_short(feedback)}")
            entries.append("\n".join(lines))
        notes[node.name] = "\n\n".join(entries) if entries else NO_FAILURES
    return notes


def ranking_inputs(graph: ProgramGraph, notes: dict[str, str], children: Sequence[Candidate]) -> dict[str, str]:
    """What ``RankEdits`` reads: the graph as text, the failures per node, the children's edits numbered."""
    failures = "\n\n".join(f"Step {name}:\n{text}" for name, text in notes.items() if text != NO_FAILURES)
    edits = "\n".join(f"{i}. {describe_edit(child.edit)}" for i, child in enumerate(children, start=1))
    return {"program": render_text(graph), "failures": failures or NO_FAILURES, "edits": edits}


def ranked(children: Sequence[int], completions: Sequence[dict[str, Any]]) -> tuple[list[int], bool]:
    """``children`` in the order the first usable ranking gives (numbers from 1; unknown and repeated numbers
    ignored, unranked children after the ranked ones in their own order), and whether a ranking was used."""
    for completion in completions:
        ranking = completion.get("ranking")
        if not isinstance(ranking, list):
            continue
        order: list[int] = []
        for entry in ranking:
            try:
                position = int(entry) - 1
            except (TypeError, ValueError):
                continue
            if 0 <= position < len(children) and children[position] not in order:
                order.append(children[position])
        if order:
            return order + [c for c in children if c not in order], True
    return list(children), False
