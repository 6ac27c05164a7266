"""The draws SIMBA makes over its program pool and its scores: the top programs, a softmax choice among
them, the number of demos to drop, batch percentiles, and which winners are scored at the end."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from .state import Program


def top_programs(programs: Sequence[Program], k: int) -> list[int]:
    """The ``k`` best programs by mean mini-batch score (earlier first among equals), with the baseline in
    the last place if it is not among them (DSPy's ``top_k_plus_baseline``)."""
    ranked = sorted(programs, key=lambda program: program.mean, reverse=True)
    top = [program.number for program in ranked[:k]]
    if 0 not in top:
        top[-1] = 0
    return list(dict.fromkeys(top))


def softmax_sample(rng: random.Random, programs: Sequence[Program], numbers: Sequence[int], temperature: float) -> int:
    """One of ``numbers``, drawn with probability proportional to ``exp(mean score / temperature)``."""
    weights = [math.exp(programs[number].mean / temperature) for number in numbers]
    return rng.choices(list(numbers), weights=weights, k=1)[0]


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth's method: the means here are small, a few demos)."""
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile with linear interpolation between ranks (numpy's default)."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def final_positions(n_winners: int, num_candidates: int) -> list[int]:
    """Which winners (positions in the list: the baseline, then each step's) are scored at the end: up to
    ``num_candidates + 1`` of them, evenly spaced from the baseline to the last one (DSPy's rule)."""
    last, count = n_winners - 1, num_candidates + 1
    if last < 1:
        return [0]
    return list(dict.fromkeys(round(i * last / (count - 1)) for i in range(count)))
