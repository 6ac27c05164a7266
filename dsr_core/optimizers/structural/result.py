"""The quality-vs-cost table of a structural search: one row per candidate, with its Pareto-front flag."""

from __future__ import annotations

from pydantic import BaseModel

from ...graph import AddReasoning, Fuse, Split
from .state import Candidate, StructuralState


class CostRow(BaseModel):
    """One candidate as a caller prints it. ``pareto``: no other validated candidate scores at least as
    well at no more LM calls and tokens per example while being better in one of them. ``rebootstrapped``:
    the nodes whose demos were re-bootstrapped to make this candidate (its edit reads ``Rebootstrap(...)``)."""

    candidate: int
    step: int
    parent: int | None
    graph_hash: str
    parent_hash: str | None
    edit: str
    minibatch_score: float | None
    val_score: float | None
    lm_calls: float | None
    tokens: float | None
    status: str
    reason: str
    rebootstrapped: list[str] = []
    pareto: bool = False


def describe_edit(edit: Fuse | Split | AddReasoning | None) -> str:
    """A short text for an edit (``Fuse(rewrite, expand)``, ``Split(solve: a -> b | a, b -> c)``)."""
    if edit is None:
        return "baseline"
    if isinstance(edit, Fuse):
        return f"Fuse({edit.a}, {edit.b})"
    if isinstance(edit, Split):
        return f"Split({edit.node}: {' | '.join(part.signature for part in edit.parts)})"
    return f"AddReasoning({edit.node})"


def quality_cost_table(state: StructuralState) -> list[CostRow]:
    """Every candidate in the order it was made, the validated ones flagged when on the Pareto front of
    validation score (higher is better) against LM calls and tokens per example (lower is better)."""
    rows = [_row(candidate) for candidate in state.candidates]
    validated = [c for c in state.candidates if c.val_score is not None]
    for row, candidate in zip(rows, state.candidates, strict=True):
        row.pareto = candidate.val_score is not None and not any(_dominates(o, candidate) for o in validated)
    return rows


def _row(candidate: Candidate) -> CostRow:
    return CostRow(
        candidate=candidate.number,
        step=candidate.step,
        parent=candidate.parent,
        graph_hash=candidate.graph_hash,
        parent_hash=candidate.parent_hash,
        edit=f"Rebootstrap({', '.join(candidate.rebootstrapped)})"
        if candidate.rebootstrapped
        else describe_edit(candidate.edit),
        minibatch_score=candidate.minibatch_score,
        val_score=candidate.val_score,
        lm_calls=candidate.lm_calls,
        tokens=candidate.tokens,
        status=candidate.status,
        reason=candidate.reason,
        rebootstrapped=list(candidate.rebootstrapped),
    )


def _dominates(a: Candidate, b: Candidate) -> bool:
    """Whether ``a`` is at least as good as ``b`` in score, calls and tokens and better in one (tokens
    count only when both were measured)."""
    assert a.val_score is not None and b.val_score is not None
    calls_a, calls_b = a.lm_calls or 0.0, b.lm_calls or 0.0
    tokens = a.tokens is not None and b.tokens is not None
    tokens_a, tokens_b = (a.tokens, b.tokens) if tokens else (0.0, 0.0)
    assert tokens_a is not None and tokens_b is not None
    no_worse = a.val_score >= b.val_score and calls_a <= calls_b and tokens_a <= tokens_b
    better = a.val_score > b.val_score or calls_a < calls_b or tokens_a < tokens_b
    return no_worse and better
