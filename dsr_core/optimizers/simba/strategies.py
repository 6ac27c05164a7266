"""How SIMBA turns a bucket (every trajectory of one mini-batch example) into a new candidate: rank the
buckets, drop some of the source program's demos, then ``append_a_demo`` (the best trajectory's calls as
demos) or ``append_a_rule`` (ask the prompt model to contrast a better and a worse trajectory, and append
its advice to each predictor's instructions). DSPy's simba_utils, over JSON trajectories."""

from __future__ import annotations

import json
import random
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from ..base import TraceOutcome
from .pool import poisson
from .state import Bucket, Trajectory

TRUNCATED = "\n\t\t... <TRUNCATED FOR BREVITY>"
NOT_AVAILABLE = "N/A"


def trajectory(outcome: TraceOutcome) -> Trajectory:
    """A traced run as a trajectory (a failed run scores 0 and has no calls, as DSPy scores it)."""
    return Trajectory(score=outcome.score, outputs=outcome.outputs, feedback=outcome.feedback, calls=outcome.calls)


def make_bucket(index: int, gold: dict[str, Any], trajectories: Sequence[Trajectory]) -> Bucket:
    """One example's trajectories, best first (equal scores keep the sampling models' order)."""
    ordered = sorted(trajectories, key=lambda t: t.score, reverse=True)
    best, worst = ordered[0].score, ordered[-1].score
    average = sum(t.score for t in ordered) / len(ordered)
    return Bucket(
        index=index,
        gold=gold,
        trajectories=ordered,
        max_to_min_gap=best - worst,
        max_score=best,
        max_to_avg_gap=best - average,
    )


def rank_buckets(buckets: Sequence[Bucket]) -> list[Bucket]:
    """The buckets by (max-to-min gap, max score, max-to-avg gap), largest first: the examples where the
    programs disagree most come first, since contrasting their trajectories is most informative."""
    return sorted(buckets, key=lambda b: (b.max_to_min_gap, b.max_score, b.max_to_avg_gap), reverse=True)


def drop_demos(
    rng: random.Random, demos: Mapping[str, list[dict[str, Any]]], max_demos: int
) -> tuple[dict[str, list[dict[str, Any]]], int]:
    """DSPy's demo drop before a strategy runs: a Poisson number of positions (at least one once a predictor
    holds ``max_demos``), drawn with repetition, removed from every predictor. Returns the demos and the
    number of positions drawn."""
    most = max((len(d) for d in demos.values()), default=0)
    cap = max_demos if max_demos > 0 else 3
    count = min(max(poisson(rng, most / cap), int(most >= cap)), most)
    dropped = {rng.randrange(most) for _ in range(count)}
    kept = {name: [d for i, d in enumerate(items) if i not in dropped] for name, items in demos.items()}
    return kept, count


def append_a_demo(
    bucket: Bucket, demos: Mapping[str, list[dict[str, Any]]], p10: float, maxlen: int
) -> tuple[dict[str, list[dict[str, Any]]], bool]:
    """The best trajectory's last call of each predictor appended to that predictor's demos (inputs longer
    than ``maxlen`` characters truncated; 0: none), unless its score is at or below the batch's 10th
    percentile. Returns the demos and whether they changed."""
    good = bucket.trajectories[0]
    if good.score <= p10:
        return dict(demos), False
    added = dict(demos)
    for name, calls in good.calls.items():
        if not calls or name not in added:
            continue
        call = calls[-1]
        inputs = {
            key: f"{str(value)[:maxlen]}{TRUNCATED}" if maxlen and len(str(value)) > maxlen else value
            for key, value in call.inputs.items()
        }
        added[name] = [*added[name], {"augmented": True, **inputs, **call.outputs}]
    return added, True


def _steps(calls: Mapping[str, Sequence[Any]], names: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {"module_name": name, "inputs": call.inputs, "outputs": call.outputs}
        for name in names
        for call in calls.get(name, ())
    ]


def _text(value: Any) -> str:
    """An input value as DSPy passes it: a string as is, anything else as indented JSON."""
    return value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)


class RuleUnavailable(Exception):
    """The bucket's best trajectory has no outputs to show (its run failed): DSPy's strategy fails on it."""


def rule_request(
    bucket: Bucket,
    p10: float,
    p90: float,
    *,
    names: Sequence[str],
    program_code: str,
    modules_defn: str,
    program_inputs: dict[str, Any],
) -> dict[str, Any] | None:
    """The OfferFeedback inputs contrasting the bucket's best and worst trajectories, or None when DSPy's
    guard declines (best at or below the 10th percentile, or worst at or above the 90th). When the two score
    the same, the one on the wrong side of the percentiles is shown as not available, as DSPy does.

    Values are DSPy's indented JSON text, except the reward values and module names, which keep their
    types (the fields declare float and list[str]: a string there is a type mismatch warned about on every
    request); the prompt then shows the names as compact JSON."""
    good, bad = bucket.trajectories[0], bucket.trajectories[-1]
    if good.score <= p10 or bad.score >= p90:
        return None
    good_view: dict[str, Any] = {"score": good.score, "outputs": good.outputs, "steps": _steps(good.calls, names)}
    bad_view: dict[str, Any] = {"score": bad.score, "outputs": bad.outputs or {}, "steps": _steps(bad.calls, names)}
    if good.score <= bad.score:
        blank = bad_view if good.score > p90 else good_view
        blank.update(score=NOT_AVAILABLE, outputs={NOT_AVAILABLE: "Prediction not available"}, steps=[])
    if good_view["outputs"] is None:
        raise RuleUnavailable("the better trajectory has no outputs")
    inputs = {
        "program_code": program_code,
        "modules_defn": modules_defn,
        "program_inputs": program_inputs,
        "oracle_metadata": bucket.gold,
        "better_program_trajectory": good_view["steps"],
        "better_program_outputs": good_view["outputs"],
        "worse_program_trajectory": bad_view["steps"],
        "worse_program_outputs": bad_view["outputs"],
        "worse_reward_value": bad_view["score"],
        "better_reward_value": good_view["score"],
        "worse_reward_info": reward_info(bad),
        "better_reward_info": reward_info(good),
        "module_names": list(names),
    }
    typed = {"worse_reward_value", "better_reward_value", "module_names"}
    return {key: value if key in typed else _text(value) for key, value in inputs.items()}


def reward_info(trajectory: Trajectory) -> dict[str, Any]:
    """What the metric said beyond the score (DSPy: the fields of its Prediction other than ``score``)."""
    return {"feedback": trajectory.feedback} if trajectory.feedback is not None else {}


def append_advice(instructions: Mapping[str, str], advice: Mapping[str, Any]) -> dict[str, str]:
    """Each predictor's instructions with the advice addressed to it appended as a new paragraph."""
    return {name: f"{text}\n\n{advice[name]}" if name in advice else text for name, text in instructions.items()}


def modules_definition(instructions: Mapping[str, str], fields: Mapping[str, Mapping[str, str]]) -> str:
    """DSPy's ``inspect_modules``: each predictor's input and output fields and its current instructions."""
    separator = "-" * 80
    indent = "\n" + "\t" * 2
    parts = [separator]
    for name, text in instructions.items():
        parts.append(f"Module {name}")
        parts.append("\n\tInput Fields:")
        parts.append(indent.join(["", *fields[name]["inputs"].splitlines()]))
        parts.append("\tOutput Fields:")
        parts.append(indent.join(["", *fields[name]["outputs"].splitlines()]))
        parts.append(f"\tOriginal Instructions: {indent.join(['', *textwrap.dedent(text).splitlines()])}")
        parts.append(separator)
    return "\n".join(part.strip("\n") for part in parts)
