"""The Pareto frontier over validation examples, and how GEPA picks the parent of its next mutation.

A candidate is on the frontier of an example when no candidate scores higher on it. gepa then drops the
dominated candidates (those whose every frontier place is shared with a surviving candidate, checked from
the lowest average up) and samples a parent weighted by how many examples each survivor leads on. Ties in
gepa's set and dict orders are resolved here by candidate number, so the draw is the same on any machine.
"""

from __future__ import annotations

import random
from collections.abc import Sequence


def instance_fronts(val_scores: Sequence[Sequence[float]]) -> list[set[int]]:
    """Per validation example, the candidates (by position in ``val_scores``) with the best score on it."""
    if not val_scores:
        return []
    fronts = []
    for example in range(len(val_scores[0])):
        best = max(scores[example] for scores in val_scores)
        fronts.append({c for c, scores in enumerate(val_scores) if scores[example] == best})
    return fronts


def _is_dominated(candidate: int, others: set[int], fronts: Sequence[set[int]]) -> bool:
    """Every front ``candidate`` is on holds one of ``others`` as well."""
    return all(front & others for front in fronts if candidate in front)


def remove_dominated(fronts: Sequence[set[int]], averages: Sequence[float]) -> list[set[int]]:
    """The fronts without dominated candidates (gepa's remove_dominated_programs)."""
    programs = sorted({c for front in fronts for c in front}, key=lambda c: (averages[c], c))
    dominated: set[int] = set()
    changed = True
    while changed:
        changed = False
        for candidate in programs:
            if candidate in dominated:
                continue
            if _is_dominated(candidate, set(programs) - {candidate} - dominated, fronts):
                dominated.add(candidate)
                changed = True
                break
    return [front - dominated for front in fronts]


def dominators(val_scores: Sequence[Sequence[float]]) -> list[int]:
    """The candidates left on the frontier once the dominated are removed, in order."""
    fronts = remove_dominated(instance_fronts(val_scores), averages(val_scores))
    return sorted({c for front in fronts for c in front})


def averages(val_scores: Sequence[Sequence[float]]) -> list[float]:
    return [sum(scores) / len(scores) if scores else 0.0 for scores in val_scores]


def best_candidate(val_scores: Sequence[Sequence[float]]) -> int:
    """The candidate with the highest average (the first of equals)."""
    means = averages(val_scores)
    return means.index(max(means))


def select_parent(strategy: str, val_scores: Sequence[Sequence[float]], rng: random.Random) -> int:
    """``"pareto"``: a frontier candidate, weighted by the number of examples it leads on;
    ``"current_best"``: the best average."""
    if strategy == "current_best":
        return best_candidate(val_scores)
    fronts = remove_dominated(instance_fronts(val_scores), averages(val_scores))
    frequency: dict[int, int] = {}
    for front in fronts:
        for candidate in front:
            frequency[candidate] = frequency.get(candidate, 0) + 1
    weighted = [candidate for candidate in sorted(frequency) for _ in range(frequency[candidate])]
    return rng.choice(weighted) if weighted else best_candidate(val_scores)
