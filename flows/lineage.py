"""Candidate lineage of the optimizers that keep a pool of candidates (GEPA, SIMBA, Structural).

One row per candidate, in the order the optimizer made them::

    {"candidate": 3, "parents": [1], "origin": "mutation of encode", "step": 2, "score": 83.33,
     "scored_on": "val", "lm_calls": None, "tokens": None, "pareto": True, "best": False, "status": None}

``score`` is 0-100 on ``scored_on`` (the validation split, or the minibatch a candidate was only screened
on); ``lm_calls`` and ``tokens`` are per example where the optimizer measures cost (Structural);
``pareto`` is None where the optimizer keeps no frontier (SIMBA); ``best`` marks the candidate the run
returns (or would return now). Rows come from the optimizer's state alone, so a checkpoint is enough.
"""

from __future__ import annotations

import json
from typing import Any

from dsr_core.optimizers.base import OptimizerState
from dsr_core.optimizers.gepa import GepaState, dominators
from dsr_core.optimizers.gepa.pareto import best_candidate
from dsr_core.optimizers.simba import SimbaState
from dsr_core.optimizers.structural import StructuralState, quality_cost_table

LineageRow = dict[str, Any]

STATE_TYPES: dict[str, type[OptimizerState]] = {"GEPA": GepaState, "SIMBA": SimbaState, "Structural": StructuralState}


def as_state(state: OptimizerState | dict[str, Any]) -> OptimizerState | None:
    """An optimizer state, from a state or its checkpoint JSON; None for an optimizer that keeps no lineage."""
    if isinstance(state, OptimizerState):
        return state
    kind = STATE_TYPES.get(str(state.get("optimizer")))
    return kind.model_validate(state) if kind is not None else None


def lineage_rows(
    state: OptimizerState | dict[str, Any], trials: list[dict[str, Any]] | None = None
) -> list[LineageRow] | None:
    """The lineage of ``state`` (a state or its JSON), or None when its optimizer keeps none. With the run's
    trial records, a Structural candidate's row also has its seconds per example on the validation set."""
    loaded = as_state(state)
    if isinstance(loaded, GepaState):
        return _gepa(loaded)
    if isinstance(loaded, SimbaState):
        return _simba(loaded)
    if isinstance(loaded, StructuralState):
        return _structural(loaded, _val_latency(trials or []))
    return None


def _val_latency(trials: list[dict[str, Any]]) -> dict[int, float]:
    """Seconds per example of each Structural candidate's latest validation-set trial."""
    found: dict[int, float] = {}
    for trial in trials:
        candidate = json.loads(trial.get("choice") or "{}").get("candidate")
        if trial.get("split") == "val" and candidate is not None and trial.get("latency") is not None:
            found[int(candidate)] = float(trial["latency"])
    return found


def step_metrics(rows: list[LineageRow]) -> dict[str, float]:
    """Per-step metrics of a lineage: the pool size and, where the optimizer keeps a Pareto front (GEPA,
    Structural), the front's size and its best score."""
    metrics = {"candidates": float(len(rows))}
    front = [row["score"] for row in rows if row["pareto"] and row["score"] is not None]
    if any(row["pareto"] is not None for row in rows):
        metrics["frontier_size"] = float(len(front))
        if front:
            metrics["frontier_best_score"] = float(max(front))
    return metrics


def _row(candidate: int, parents: list[int], origin: str, step: int | None, **values: Any) -> LineageRow:
    row: LineageRow = {
        "candidate": candidate,
        "parents": parents,
        "origin": origin,
        "step": step,
        "score": None,
        "scored_on": None,
        "lm_calls": None,
        "tokens": None,
        "latency": None,  # seconds per example
        "pareto": None,
        "best": False,
        "status": None,
    }
    row.update(values)
    return row


def _percent(value: float) -> float:
    return round(100.0 * value, 4)


def _gepa(state: GepaState) -> list[LineageRow]:
    scores = state.val_scores
    front = set(dominators(scores)) if scores else set()
    best = best_candidate(scores) if scores else None
    rows = []
    for position, candidate in enumerate(state.candidates):
        origin: str = candidate.origin
        if candidate.origin == "mutation" and candidate.component:
            origin = f"mutation of {candidate.component}"
        elif candidate.origin == "merge" and candidate.ancestor is not None:
            origin = f"merge (common ancestor #{candidate.ancestor})"
        rows.append(
            _row(
                candidate.number,
                list(candidate.parents),
                origin,
                candidate.iteration,
                score=_percent(candidate.mean),
                scored_on=state.val_split,
                pareto=position in front,
                best=position == best,
            )
        )
    return rows


def _simba(state: SimbaState) -> list[LineageRow]:
    final = dict(zip(state.final, state.final_scores))  # noqa: B905 - while the final phase runs, fewer scores
    best = max(final, key=lambda number: (final[number], -number)) if final else None
    winners = set(state.winners[1:])  # the first is the program as given
    rows = []
    for program in state.programs:
        if program.parent is None or program.strategy is None:
            origin = "seed"
        else:
            origin = program.strategy + ("" if program.applied else " (no change)")
            if program.dropped_demos:
                origin += f", {program.dropped_demos} demos dropped"
        if program.number in final:
            score, scored_on = _percent(final[program.number]), state.final_split
        elif program.scores:
            score, scored_on = _percent(program.mean), "minibatch"
        else:
            score, scored_on = None, None
        rows.append(
            _row(
                program.number,
                [] if program.parent is None else [program.parent],
                origin,
                program.step,
                score=score,
                scored_on=scored_on,
                best=program.number == best,
                status="step winner" if program.number in winners else None,
            )
        )
    return rows


def _structural(state: StructuralState, latency: dict[int, float]) -> list[LineageRow]:
    rows = []
    for cost in quality_cost_table(state):
        validated = cost.val_score is not None
        rows.append(
            _row(
                cost.candidate,
                [] if cost.parent is None else [cost.parent],
                cost.edit,
                cost.step,
                score=cost.val_score if validated else cost.minibatch_score,
                scored_on=state.val_split if validated else ("minibatch" if cost.minibatch_score is not None else None),
                lm_calls=cost.lm_calls,
                tokens=cost.tokens,
                latency=latency.get(cost.candidate),
                pareto=cost.pareto,
                best=cost.candidate == state.current,
                status=cost.status,
            )
        )
    return rows


__all__ = ["LineageRow", "as_state", "lineage_rows", "step_metrics"]
