"""GEPA's merge: combine two frontier candidates that descend from a common ancestor.

For each predictor, the merged candidate takes the instruction of the descendant that changed it (when only
one did), the better descendant's when both did, and the common one otherwise. A merge is tried once per
(pair, ancestor) and once per (pair, resulting combination); it is scored first on a few validation
examples chosen to include ones where each parent wins, then, if it does at least as well as the better
parent there, on the whole validation set (gepa's MergeProposer, with its choices made in a fixed order).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from pydantic import BaseModel

from .pareto import averages, dominators

MAX_ATTEMPTS = 10  # gepa's tries at finding a pair, and at finding an untried merge
SUBSAMPLE_SIZE = 5  # gepa's validation examples a merge is first scored on


class MergePlan(BaseModel):
    """What a merge iteration combines: ``first`` and ``second`` via ``ancestor``, into ``instructions``;
    ``sources`` names, per predictor, the candidate its instruction came from."""

    first: int
    second: int
    ancestor: int
    instructions: dict[str, str]
    sources: list[int]


def ancestors(parents: Sequence[Sequence[int]], candidate: int) -> set[int]:
    """Every candidate ``candidate`` descends from."""
    found: set[int] = set()
    stack = list(parents[candidate])
    while stack:
        parent = stack.pop()
        if parent not in found:
            found.add(parent)
            stack.extend(parents[parent])
    return found


def _differs_usefully(ancestor: dict[str, str], first: dict[str, str], second: dict[str, str]) -> bool:
    """Some predictor is unchanged in one descendant and changed in the other (so merging adds something)."""
    return any((ancestor[name] in (first[name], second[name])) and first[name] != second[name] for name in ancestor)


def _combine(
    names: Sequence[str],
    instructions: Sequence[dict[str, str]],
    means: Sequence[float],
    plan: tuple[int, int, int],
    rng: random.Random,
) -> tuple[dict[str, str], list[int]]:
    first, second, ancestor = plan
    merged: dict[str, str] = {}
    sources: list[int] = []
    for name in names:
        base, one, two = instructions[ancestor][name], instructions[first][name], instructions[second][name]
        if base in (one, two) and one != two:
            source = second if base == one else first
        elif base != one and base != two:
            if means[first] != means[second]:
                source = first if means[first] > means[second] else second
            else:
                source = rng.choice([first, second])
        else:
            source = first
        merged[name] = instructions[source][name]
        sources.append(source)
    return merged, sources


def plan_merge(
    names: Sequence[str],
    instructions: Sequence[dict[str, str]],
    parents: Sequence[Sequence[int]],
    val_scores: Sequence[Sequence[float]],
    tried_triplets: Sequence[Sequence[int]],
    tried_merges: Sequence[Sequence[int]],
    rng: random.Random,
) -> MergePlan | None:
    """An untried merge of two frontier candidates with a common ancestor no better than either, or None."""
    pool = dominators(val_scores)
    if len(pool) < 2 or len(instructions) < 3:
        return None
    means = averages(val_scores)
    triplets = {tuple(t) for t in tried_triplets}
    merges = {tuple(m) for m in tried_merges}
    for _ in range(MAX_ATTEMPTS):
        plan = _pick_triplet(pool, instructions, parents, means, triplets, rng)
        if plan is None:
            continue
        merged, sources = _combine(names, instructions, means, plan, rng)
        if (plan[0], plan[1], *sources) in merges:
            continue
        return MergePlan(first=plan[0], second=plan[1], ancestor=plan[2], instructions=merged, sources=sources)
    return None


def _pick_triplet(
    pool: list[int],
    instructions: Sequence[dict[str, str]],
    parents: Sequence[Sequence[int]],
    means: Sequence[float],
    tried: set[tuple[int, ...]],
    rng: random.Random,
) -> tuple[int, int, int] | None:
    for _ in range(MAX_ATTEMPTS):
        first, second = sorted(rng.sample(pool, 2))
        of_first, of_second = ancestors(parents, first), ancestors(parents, second)
        if first in of_second or second in of_first:
            continue
        common = sorted(
            a
            for a in of_first & of_second
            if (first, second, a) not in tried
            and means[a] <= means[first]
            and means[a] <= means[second]
            and _differs_usefully(instructions[a], instructions[first], instructions[second])
        )
        if common:
            weights = [means[a] for a in common]
            ancestor = rng.choices(common, weights=weights)[0] if sum(weights) > 0 else rng.choice(common)
            return first, second, ancestor
    return None


def merge_subsample(first: Sequence[float], second: Sequence[float], rng: random.Random) -> list[int]:
    """Validation positions to score a merge on first: up to a third where each parent wins, then ties,
    then any; all of them when the validation set is this small."""
    positions = list(range(len(first)))
    if len(positions) <= SUBSAMPLE_SIZE:
        return positions
    buckets = (
        [p for p in positions if first[p] > second[p]],
        [p for p in positions if second[p] > first[p]],
        [p for p in positions if first[p] == second[p]],
    )
    each = max(1, math.ceil(SUBSAMPLE_SIZE / 3))
    chosen: list[int] = []
    for bucket in buckets:
        take = min(len(bucket), each, SUBSAMPLE_SIZE - len(chosen))
        if take > 0:
            chosen += rng.sample(bucket, take)
    rest = [p for p in positions if p not in chosen]
    chosen += rng.sample(rest, SUBSAMPLE_SIZE - len(chosen))
    return sorted(chosen)
