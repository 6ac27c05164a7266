"""DSPy's ``track_stats=True`` attributes on COPRO's compiled program, built from the finished state.

``results_latest`` and ``results_best`` map each predictor to DSPy's per-depth summary,
``{"depth": [0, 1, ...], "max": [...], "average": [...], "min": [...], "std": [...]}`` (one item per depth,
``std`` the population standard deviation, ``statistics.pstdev``, as DSPy computes it; scores are 0-100):

- ``results_latest``: the scores of the candidates evaluated at that depth, a repeated proposal with its own
  score (DSPy's "latest": the candidates of that depth's proposal request);
- ``results_best``: the ten best of every attempt scored by the end of that depth, each at its best score then.

``total_calls`` is DSPy's count of candidate evaluations (each over the whole training set); it is set whether
or not ``track_stats`` is on, as in DSPy.

Differences from DSPy 3.4.1: DSPy keys both dicts by ``id()`` of the predictors of its working copy, objects
the returned program does not hold; here the key is the predictor's name (``"self"``, ``"answer.predict"``),
as ``named_predictors()`` and the saved file name it. DSPy starts each depth's "latest" list once for all
predictors, so a later predictor's list holds the earlier predictors' scores of that depth too; here each
predictor's list is its own. With several predictors DSPy re-scores every earlier candidate at each depth (see
``copro``): those evaluations are in its ``total_calls``, and dsr, which does not make them, does not count them.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..modules.module import Module
    from .copro import Attempt, CoproState

TOP = 10  # DSPy's: results_best summarizes the ten best attempts
STAT_KEYS = ("depth", "max", "average", "min", "std")


def evaluations(attempt: Attempt) -> list[tuple[int, float]]:
    """(depth, score) of each evaluation of an attempt: its first, then each repeat (a missing score counts 0,
    as COPRO's choice of the best counts it)."""
    first = attempt.first_score if attempt.first_score is not None else attempt.score
    return [(attempt.depth, first or 0.0)] + [(r.depth, r.score or 0.0) for r in attempt.repeats]


def best_by(attempt: Attempt, depth: int) -> float | None:
    """The attempt's best score by the end of ``depth``; None when it was first proposed later."""
    scores = [score for d, score in evaluations(attempt) if d <= depth]
    return max(scores) if scores else None


def summary(scores_by_depth: Iterable[tuple[int, list[float]]]) -> dict[str, list[Any]]:
    """DSPy's per-depth summary; a depth with no scores is left out (DSPy would fail on it)."""
    stats: dict[str, list[Any]] = {key: [] for key in STAT_KEYS}
    for depth, scores in scores_by_depth:
        if not scores:
            continue
        stats["depth"].append(depth)
        stats["max"].append(max(scores))
        stats["average"].append(sum(scores) / len(scores))
        stats["min"].append(min(scores))
        stats["std"].append(statistics.pstdev(scores))
    return stats


def _depths(state: CoproState) -> range:
    return range(state.depth + 1)  # a finished state stops at the last depth


def results_latest(state: CoproState) -> dict[str, dict[str, list[Any]]]:
    """Per predictor: the summary of each depth's evaluations."""
    latest = {}
    for name in state.predictor_names:
        scored = [e for attempt in state.evaluated.get(name, []) for e in evaluations(attempt)]
        latest[name] = summary((d, [score for depth, score in scored if depth == d]) for d in _depths(state))
    return latest


def results_best(state: CoproState) -> dict[str, dict[str, list[Any]]]:
    """Per predictor: the summary of the ten best attempts by the end of each depth."""
    best = {}
    for name in state.predictor_names:
        attempts = state.evaluated.get(name, [])
        best[name] = summary((d, _top(best_by(a, d) for a in attempts)) for d in _depths(state))
    return best


def _top(scores: Iterable[float | None]) -> list[float]:
    return sorted((s for s in scores if s is not None), reverse=True)[:TOP]


def total_calls(state: CoproState) -> int:
    """The candidate evaluations the run made (each attempt's first and every repeat)."""
    return sum(len(evaluations(a)) for attempts in state.evaluated.values() for a in attempts)


def attach_depth_stats(compiled: Module, state: CoproState) -> None:
    """Set DSPy's ``results_best`` and ``results_latest`` on ``compiled`` (see the module docstring)."""
    compiled.results_best = results_best(state)
    compiled.results_latest = results_latest(state)
