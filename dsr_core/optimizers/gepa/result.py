"""DSPy's ``detailed_results`` of a finished GEPA run (``track_stats=True``)."""

from __future__ import annotations

from dataclasses import dataclass

from ...modules.module import Module
from .pareto import instance_fronts
from .state import GepaState, with_instructions


@dataclass(frozen=True)
class GepaResult:
    """DSPy's ``detailed_results`` (``track_stats=True``): every candidate as a program, its parents, its
    validation scores, and the run's totals."""

    candidates: list[Module]
    parents: list[list[int | None]]
    val_aggregate_scores: list[float]
    val_subscores: list[list[float]]
    per_val_instance_best_candidates: list[set[int]]
    discovery_eval_counts: list[int]
    total_metric_calls: int
    num_full_val_evals: int
    seed: int

    @property
    def best_idx(self) -> int:
        scores = self.val_aggregate_scores
        return scores.index(max(scores))

    @property
    def best_candidate(self) -> Module:
        return self.candidates[self.best_idx]


def detailed_results(student: Module, state: GepaState) -> GepaResult:
    """Every candidate of a finished state as DSPy's GEPA reports them."""
    programs = []
    for candidate in state.candidates:
        program = student.deepcopy()
        program.load_state(with_instructions(state.program, candidate.instructions))
        programs.append(program)
    return GepaResult(
        candidates=programs,
        parents=[list(c.parents) or [None] for c in state.candidates],
        val_aggregate_scores=[c.mean for c in state.candidates],
        val_subscores=state.val_scores,
        per_val_instance_best_candidates=instance_fronts(state.val_scores),
        discovery_eval_counts=[c.discovered_at for c in state.candidates],
        total_metric_calls=state.metric_calls + state.discarded_metric_calls,  # everything spent
        num_full_val_evals=1 + sum(1 for t in state.trials if t.kind == "full"),
        seed=state.seed,
    )
