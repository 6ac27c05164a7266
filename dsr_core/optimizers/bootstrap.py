"""LabeledFewShot and BootstrapFewShot, as ask/tell state machines with DSPy's defaults.

BootstrapFewShot runs a teacher (the student with labeled demos, unless one is given) over training
examples in order and keeps, for every predictor, the inputs/outputs of runs the metric accepts; those
become the student's demos, topped up with labeled examples. Unlike DSPy, which bootstraps one example at a
time, it asks for a batch of examples at once (``bootstrap_batch_size``) and takes successes in training
order, so the result is the same as a sequential run; the cost is at most one batch of extra LM calls.

DSPy's constructors and ``compile`` keywords are accepted (``teacher``, ``teacher_settings``, ``max_errors``,
``sample``...); a keyword with no meaning here is accepted with a warning that says why.
"""

from __future__ import annotations

import copy
import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import NonNegativeInt, PositiveInt

from ..modules.module import Module
from ..primitives import Example
from .base import (
    BootstrapOutcome,
    BootstrapWork,
    EvaluateWork,
    Optimizer,
    OptimizerState,
    base_fields,
    check_teacher_settings,
    effective_max_errors,
    rng_for,
    teacher_lm,
)

log = logging.getLogger(__name__)


def labeled_demos(
    trainset: Sequence[Example], k: int, names: Sequence[str], *, sample: bool = True, seed: int = 0
) -> dict[str, list[dict[str, Any]]]:
    """DSPy's LabeledFewShot: per predictor in order, ``k`` training examples drawn by one
    ``random.Random(seed)`` (DSPy's seed is 0), or the first ``k`` when not sampling."""
    rng = random.Random(seed)
    k = min(k, len(trainset))
    demos = {}
    for name in names:
        chosen = rng.sample(range(len(trainset)), k) if sample else range(k)
        demos[name] = [trainset[i].to_dict() for i in chosen]
    return demos


def with_demos(program_state: dict[str, Any], demos: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """A copy of a program state with each named predictor's demos replaced."""
    state = {name: dict(entry) if isinstance(entry, dict) else entry for name, entry in program_state.items()}
    for name, predictor_demos in demos.items():
        state[name] = {**state[name], "demos": [dict(d) for d in predictor_demos]}
    return state


class LabeledFewShotState(OptimizerState):
    pass


class LabeledFewShot(Optimizer):
    """Every predictor gets ``k`` labeled training examples as demos: DSPy's draws (``random.Random(seed)``,
    seed 0 as in DSPy, one sample per predictor in order), or the first k with ``sample=False``."""

    name = "LabeledFewShot"

    def __init__(self, k: NonNegativeInt = 16, *, sample: bool = True, seed: int = 0) -> None:
        self.k = k
        self.sample = sample
        self.seed = seed

    def demos_for(self, trainset: Sequence[Example], names: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        return labeled_demos(trainset, self.k, names, sample=self.sample, seed=self.seed)

    def init_state(
        self, program: Module, trainset: Sequence[Example], valset: Sequence[Example] | None
    ) -> LabeledFewShotState:
        names = [name for name, _ in program.named_predictors()]
        result = with_demos(program.reset_copy().dump_state(), self.demos_for(trainset, names))
        return LabeledFewShotState(
            **base_fields(self.name, self.seed, program, trainset, valset), done=True, result=result
        )

    def ask(self, state: LabeledFewShotState) -> list[BootstrapWork | EvaluateWork]:
        return []

    def tell(self, state: LabeledFewShotState, results: list[Any]) -> LabeledFewShotState:
        return state

    def compile(  # type: ignore[override]
        self,
        student: Module,
        trainset: Sequence[Example] | None = None,
        valset: Sequence[Example] | None = None,
        *,
        sample: bool | None = None,
        **kwargs: Any,
    ) -> Module:
        """DSPy's ``compile(student, trainset=..., sample=True)``; no LM call is made."""
        if trainset is None:
            raise TypeError("LabeledFewShot.compile() needs a trainset")
        optimizer = copy.copy(self)
        if sample is not None:
            optimizer.sample = sample
        compiled = student.reset_copy()
        compiled.load_state(optimizer.init_state(student, trainset, valset).result or {})
        return compiled


class BootstrapState(OptimizerState):
    order: list[int]  # training examples in the order they are tried
    position: int = 0
    round: int = 0
    student: dict[str, Any]
    teacher: dict[str, Any]
    demos: dict[str, list[dict[str, Any]]] = {}
    bootstrapped: list[int] = []
    attempts: int = 0
    failures: int = 0
    errors: int = 0  # attempts that raised (the program or the metric), counted against max_errors
    # per predictor, labeled examples in a seeded order (enough to top up after removing bootstrapped ones)
    labeled_pool: dict[str, list[tuple[int, dict[str, Any]]]] = {}


class BootstrapFewShot(Optimizer):
    """DSPy's BootstrapFewShot: ``BootstrapFewShot(metric, metric_threshold, teacher_settings,
    max_bootstrapped_demos, max_labeled_demos, max_rounds, max_errors)`` and ``compile(student,
    teacher=..., trainset=...)``.

    The teacher (``compile(teacher=...)``, or ``teacher=`` here; the student by default) runs the training
    examples and its traces become the demos; unless it was compiled, it first gets ``max_labeled_demos``
    labeled demos, as in DSPy. ``teacher_settings`` (``{"lm": ...}`` and other dsr settings) are the settings
    it runs under; its ``lm`` is saved with the teacher's state, so it holds in the flows too. Once
    ``max_errors`` attempts raised (default: the ``max_errors`` setting, none: no limit), ``tell`` raises.
    """

    name = "BootstrapFewShot"

    def __init__(
        self,
        metric: Callable[..., Any] | None = None,
        metric_threshold: float | None = None,
        teacher_settings: dict[str, Any] | None = None,
        max_bootstrapped_demos: NonNegativeInt = 4,
        max_labeled_demos: NonNegativeInt = 16,
        max_rounds: PositiveInt = 1,
        max_errors: NonNegativeInt | None = None,
        *,
        teacher: Module | None = None,
        bootstrap_batch_size: PositiveInt | None = None,
        seed: int = 0,
    ) -> None:
        self.metric = metric
        self.metric_threshold = metric_threshold
        self.teacher_settings = dict(teacher_settings or {})
        self.teacher = teacher
        self.max_bootstrapped_demos = max_bootstrapped_demos
        self.max_labeled_demos = max_labeled_demos
        self.max_rounds = max_rounds
        self.max_errors = max_errors
        self.batch_size = bootstrap_batch_size or max(2 * max_bootstrapped_demos, 8)
        self.seed = seed
        check_teacher_settings(self.name, self.teacher_settings)

    def prepare_teacher(self, program: Module, trainset: Sequence[Example]) -> Module:
        """DSPy's teacher: a copy of the given teacher (else of the student) with the same predictors; unless
        it was compiled, reset and given labeled demos (DSPy's LabeledFewShot draws). Predictors without an
        LM of their own get ``teacher_settings["lm"]``."""
        teacher = (self.teacher or program).deepcopy()
        names = [name for name, _ in program.named_predictors()]
        if [name for name, _ in teacher.named_predictors()] != names:
            raise ValueError(
                f"{self.name}: student and teacher must have the same program structure (predictors {names} and "
                f"{[name for name, _ in teacher.named_predictors()]})"
            )
        if self.max_labeled_demos and not getattr(teacher, "_compiled", False):
            teacher = teacher.reset_copy()
            labeled = labeled_demos(trainset, self.max_labeled_demos, names)
            for name, predictor in teacher.named_predictors():
                predictor.demos = labeled[name]
        lm = teacher_lm(self.teacher_settings)
        if lm is not None:
            for predictor in teacher.predictors():
                predictor.lm = predictor.lm or lm
        return teacher

    def init_state(
        self,
        program: Module,
        trainset: Sequence[Example],
        valset: Sequence[Example] | None,
        *,
        order: list[int] | None = None,
    ) -> BootstrapState:
        student = program.reset_copy()
        teacher = self.prepare_teacher(program, trainset)
        names = [name for name, _ in program.named_predictors()]
        pool_size = self.max_labeled_demos + self.max_bootstrapped_demos
        pools = {}
        for name in names:
            shuffled = rng_for(self.seed, "raw-demos", name).sample(range(len(trainset)), len(trainset))
            pools[name] = [(i, trainset[i].to_dict()) for i in shuffled[:pool_size]]
        return BootstrapState(
            **base_fields(self.name, self.seed, program, trainset, valset),
            order=list(order) if order is not None else list(range(len(trainset))),
            student=student.dump_state(),
            teacher=teacher.dump_state(),
            demos={name: [] for name in names},
            labeled_pool=pools,
        )

    def _enough(self, state: BootstrapState) -> bool:
        return len(state.bootstrapped) >= self.max_bootstrapped_demos

    def ask(self, state: BootstrapState) -> list[BootstrapWork | EvaluateWork]:
        if state.done:
            return []
        remaining = [i for i in state.order[state.position :] if i not in state.bootstrapped]
        batch = remaining[: self.batch_size]
        return [
            BootstrapWork(
                teacher=state.teacher, indices=batch, round=state.round, metric_threshold=self.metric_threshold
            )
        ]

    def tell(self, state: BootstrapState, results: list[Any]) -> BootstrapState:
        state = state.model_copy(deep=True)
        outcomes = sorted(
            (r for r in results if isinstance(r, BootstrapOutcome)), key=lambda r: state.order.index(r.index)
        )
        limit = effective_max_errors(self.max_errors)
        for outcome in outcomes:
            if self._enough(state):  # DSPy stops trying once it has enough: later attempts do not count
                break
            state.attempts += 1
            if outcome.error is not None:
                state.errors += 1
                if limit is not None and state.errors >= limit:
                    raise RuntimeError(
                        f"{self.name}: {state.errors} bootstrap attempts failed (max_errors={limit}); "
                        f"the last, on training example {outcome.index}: {outcome.error}"
                    )
            if not outcome.success:
                state.failures += 1
                continue
            state.bootstrapped.append(outcome.index)
            for name, demo in outcome.demos.items():
                state.demos.setdefault(name, []).append(demo)
        state.position += len(outcomes)
        if state.position >= len(state.order) and not self._enough(state) and state.round + 1 < self.max_rounds:
            state.round += 1
            state.position = 0
        if self._enough(state) or state.position >= len(state.order):
            self._finalize(state)
        return state

    def _finalize(self, state: BootstrapState) -> None:
        """Every predictor gets its bootstrapped demos, topped up with labeled examples not bootstrapped."""
        taken = set(state.bootstrapped)
        demos = {}
        for name in state.predictor_names:
            augmented = state.demos.get(name, [])[: self.max_bootstrapped_demos]
            raw = [demo for index, demo in state.labeled_pool.get(name, []) if index not in taken]
            demos[name] = augmented + raw[: max(0, self.max_labeled_demos - len(augmented))]
        state.result = with_demos(state.student, demos)
        state.done = True
        log.info(
            "Bootstrapped %d full traces after %d examples for up to %d rounds, amounting to %d attempts.",
            len(state.bootstrapped),
            state.position,
            self.max_rounds,
            state.attempts,
        )


__all__ = ["BootstrapFewShot", "BootstrapState", "LabeledFewShot"]
