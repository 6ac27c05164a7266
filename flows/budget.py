"""Budgets: ``[run] max_cost``, ``max_lm_calls``, ``max_tokens`` and ``max_wall_time``.

A run stops at a step boundary, before a step that would take it over a cap: what the step will spend is
predicted from what the run's own steps spent so far per unit of work (a program run on one example, or one
generation by the prompt model), and the step's work is counted before it is sent. A stop is not a failure:
the flow checkpoints, finishes with the best program found so far, and marks the run ``stopped: budget``; the
same run started again with higher caps continues from that checkpoint as if it had never stopped.

The first step of a run (with nothing measured yet) always runs; so does one whose kind of work has not been
seen, with what is known of the rest predicted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dsr_core as dsr
from dsr_core.costs import Prices, known_cost
from dsr_core.evaluate import EvaluationRecord, records_judge_usage, records_usage
from dsr_core.optimizers.base import GenerateWork

PROMPT = "prompt"


def work_units(work: list[Any]) -> dict[str, int]:
    """How much work a step asks for: program runs on examples (``task``) and generations (``prompt``)."""
    units = {"task": 0, PROMPT: 0}
    for item in work:
        if isinstance(item, GenerateWork):
            units[PROMPT] += 1
        else:
            units["task"] += len(getattr(item, "indices", ()))
    return units


@dataclass
class Spend:
    """What a run has spent and done so far (kept in its checkpoint)."""

    by_role: dict[str, dsr.Usage] = field(default_factory=dict)
    units: dict[str, int] = field(default_factory=dict)  # work done, as work_units counts it
    seconds: float = 0.0  # wall time of the steps run (over every start of the run, resumes included)
    # the optimize flow's accounts step by step: one entry per step and per final evaluation, each with its
    # phase, work units, seconds and usage by role
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> dsr.Usage:
        total = dsr.Usage()
        for usage in self.by_role.values():
            total.add(usage)
        return total

    def add_step(
        self,
        by_role: dict[str, dsr.Usage],
        units: dict[str, int],
        seconds: float,
        *,
        phase: str | None = None,
    ) -> None:
        """Count a step's spend; with its ``phase``, keep it in the history too."""
        for role, usage in by_role.items():
            self.by_role.setdefault(role, dsr.Usage()).add(usage)
        for kind, count in units.items():
            self.units[kind] = self.units.get(kind, 0) + count
        self.seconds += seconds
        if phase is not None:
            self.history.append(
                {
                    "phase": phase,
                    "units": dict(units),
                    "seconds": round(seconds, 3),
                    "by_role": _as_json(by_role),
                }
            )

    def by_phase(self) -> dict[str, dict[str, Any]]:
        """What each phase of the history spent: steps, LM calls, tokens, cost (None when unknown), seconds."""
        usages: dict[str, dsr.Usage] = {}
        phases: dict[str, dict[str, Any]] = {}
        for entry in self.history:
            usage = usages.setdefault(entry["phase"], dsr.Usage())
            for values in entry["by_role"].values():
                usage.add(dsr.Usage.from_dict(values))
            row = phases.setdefault(entry["phase"], {"steps": 0, "seconds": 0.0})
            row["steps"] += 1
            row["seconds"] = round(row["seconds"] + entry["seconds"], 3)
        return {phase: {**row, **account(usages[phase])} for phase, row in phases.items()}

    def predict(self, units: dict[str, int]) -> tuple[dsr.Usage, float]:
        """The usage and seconds a step of ``units`` should take, at the rates measured so far."""
        predicted = dsr.Usage()
        for kind, count in units.items():
            done = self.units.get(kind, 0)
            if not count or not done:
                continue
            spent = self._spent_by(kind)
            share = count / done
            predicted.add(
                dsr.Usage(
                    prompt_tokens=round(spent.prompt_tokens * share),
                    completion_tokens=round(spent.completion_tokens * share),
                    lm_calls=round(spent.lm_calls * share),
                    cost=spent.cost * share,
                    unpriced_calls=round(spent.unpriced_calls * share),
                )
            )
        done = sum(self.units.values())
        seconds = self.seconds * sum(units.values()) / done if done else 0.0
        return predicted, seconds

    def _spent_by(self, kind: str) -> dsr.Usage:
        """The prompt model's spend for generations; everything else (task LM, judge) for program runs."""
        spent = dsr.Usage()
        for role, usage in self.by_role.items():
            if (role == PROMPT) == (kind == PROMPT):
                spent.add(usage)
        return spent

    def to_json(self) -> dict[str, Any]:
        return {
            "by_role": _as_json(self.by_role),
            "units": dict(self.units),
            "seconds": round(self.seconds, 3),
            "history": self.history,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None, total: dict[str, Any] | None = None) -> Spend:
        """A checkpoint's spend; one written before spend was kept has only its total (the task's)."""
        if not data:
            return cls(by_role={"task": dsr.Usage.from_dict(total or {})})
        by_role = {role: dsr.Usage.from_dict(values) for role, values in data.get("by_role", {}).items()}
        return cls(
            by_role=by_role,
            units=dict(data.get("units", {})),
            seconds=float(data.get("seconds", 0.0)),
            history=list(data.get("history", [])),
        )


def _as_json(by_role: dict[str, dsr.Usage]) -> dict[str, dict[str, Any]]:
    return {role: dict(vars(usage)) for role, usage in by_role.items()}


@dataclass(frozen=True)
class Budget:
    """The caps of ``[run]``; None where a cap is not set."""

    max_cost: float | None = None
    max_lm_calls: int | None = None
    max_tokens: int | None = None
    max_wall_time: float | None = None

    @classmethod
    def of(cls, run: Any) -> Budget | None:
        budget = cls(run.max_cost, run.max_lm_calls, run.max_tokens, run.max_wall_time)
        return budget if any(v is not None for v in vars(budget).values()) else None

    def exceeded_by(self, spend: Spend, units: dict[str, int]) -> str | None:
        """Why running a step of ``units`` would go over a cap (None when it would not)."""
        spent = spend.total
        next_usage, next_seconds = spend.predict(units)
        checks = (
            ("max_lm_calls", self.max_lm_calls, spent.lm_calls, next_usage.lm_calls, "LM calls"),
            ("max_tokens", self.max_tokens, spent.total_tokens, next_usage.total_tokens, "tokens"),
            ("max_cost", self.max_cost, spent.cost, next_usage.cost, "USD"),
            ("max_wall_time", self.max_wall_time, spend.seconds, next_seconds, "s"),
        )
        if self.max_cost is not None and spent.unpriced_calls:  # gpu_hour_price without a throughput
            return f"run.max_cost = {self.max_cost:g}: the cost of {spent.unpriced_calls} LM calls is unknown"
        for name, cap, used, coming, unit in checks:
            if cap is not None and used + coming > cap:
                return f"run.{name} = {cap:g}: {used:g} {unit} spent, the next step needs about {coming:g} more"
        return None


def account(usage: dsr.Usage, *, exact: bool = False) -> dict[str, Any]:
    """LM calls, tokens and cost of ``usage`` (the cost None when unknown; rounded to 6 places unless
    ``exact``, as trial records keep it so that they add up to the run's)."""
    cost = known_cost(usage) if not exact or usage.unpriced_calls else usage.cost
    return {"lm_calls": usage.lm_calls, "tokens": usage.total_tokens, "cost": cost}


def cost_summary(spend: Spend) -> dict[str, Any]:
    """Cost and tokens in all, by LM role and by phase, for reports and MLflow (a cost is None when unknown)."""
    return {
        "cost": known_cost(spend.total),
        "by_role": {role: account(usage) for role, usage in sorted(spend.by_role.items())},
        "by_phase": spend.by_phase(),
    }


def records_by_role(
    records: Sequence[EvaluationRecord | Mapping[str, Any]], judge_prices: Prices | None = None
) -> dict[str, dsr.Usage]:
    """An evaluation's spend split into the task's and an LM judge's (the records carry the judge's part):
    the judge's cost from its prices (its tokens are all uncached: a cached call has none)."""
    total = records_usage(records)
    judge = records_judge_usage(records)
    if not judge.lm_calls:
        return {"task": total}
    if judge_prices is not None and not judge_prices.needs_throughput:
        judge.cost = judge_prices.of(judge.prompt_tokens, judge.completion_tokens)
    else:
        judge.unpriced_calls = judge.lm_calls
    task = dsr.Usage(
        prompt_tokens=total.prompt_tokens - judge.prompt_tokens,
        completion_tokens=total.completion_tokens - judge.completion_tokens,
        lm_calls=total.lm_calls - judge.lm_calls,
        cached_calls=total.cached_calls,
        cost=max(0.0, total.cost - judge.cost),
        unpriced_calls=max(0, total.unpriced_calls - judge.unpriced_calls),
    )
    return {"task": task, "judge": judge}
