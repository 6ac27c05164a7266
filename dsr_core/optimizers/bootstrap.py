"""LabeledFewShot and BootstrapFewShot, as ask/tell state machines with DSPy's defaults.

BootstrapFewShot runs a teacher (the student with labeled demos, unless one is given) over training
examples in order and keeps, for every predictor, the inputs/outputs of runs the metric accepts; those
become the student's demos, topped up with labeled examples. Unlike DSPy, which bootstraps one example at a
time, it asks for a batch of examples at once (``bootstrap_batch_size``) and takes successes in training
order, so the result is the same as a sequential run; the cost is at most one batch of extra LM calls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pydantic import NonNegativeInt, PositiveInt

from .._async import run_sync
from ..modules.module import Module
from ..primitives import Example
from .base import (
    BootstrapOutcome,
    BootstrapWork,
    EvaluateWork,
    LocalRunner,
    OptimizerState,
    checking_parameters,
    rng_for,
)


class Optimizer:
    """The ask/tell protocol plus ``compile`` (drive the machine in process, for notebooks)."""

    name = "Optimizer"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every optimizer's constructor checks its parameters against its annotations (checking_parameters)."""
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = checking_parameters(cls.__dict__["__init__"])  # type: ignore[method-assign]

    def init_state(self, program: Module, trainset: Sequence[Example], valset: Sequence[Example] | None) -> Any:
        raise NotImplementedError

    def ask(self, state: Any) -> list[BootstrapWork | EvaluateWork]:
        raise NotImplementedError

    def tell(self, state: Any, results: list[Any]) -> Any:
        raise NotImplementedError

    def planned_trials(self, state: Any) -> int | None:
        """How many candidate evaluations the whole run makes, when known (for progress displays)."""
        return None

    def compile(
        self,
        program: Module,
        trainset: Sequence[Example],
        valset: Sequence[Example] | None = None,
        *,
        metric: Callable[..., Any] | None = None,
        concurrency: int = 32,
    ) -> Module:
        metric = metric or getattr(self, "metric", None)
        if metric is None:
            raise ValueError(f"{self.name}.compile needs a metric")
        state = self.init_state(program, trainset, valset)
        runner = LocalRunner(
            program, trainset, valset, metric, concurrency=concurrency, prompt_lm=getattr(self, "prompt_model", None)
        )
        while not state.done:
            state = self.tell(state, run_sync(runner.run(self.ask(state))))
        compiled = program.deepcopy()
        compiled.load_state(state.result)
        return compiled


def _base_fields(optimizer: str, seed: int, program: Module, trainset: Sequence[Any], valset: Any) -> dict[str, Any]:
    return {
        "optimizer": optimizer,
        "seed": seed,
        "predictor_names": [name for name, _ in program.named_predictors()],
        "n_train": len(trainset),
        "n_val": len(valset) if valset is not None else 0,
    }


def with_demos(program_state: dict[str, Any], demos: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """A copy of a program state with each named predictor's demos replaced."""
    state = {name: dict(entry) if isinstance(entry, dict) else entry for name, entry in program_state.items()}
    for name, predictor_demos in demos.items():
        state[name] = {**state[name], "demos": [dict(d) for d in predictor_demos]}
    return state


class LabeledFewShotState(OptimizerState):
    pass


class LabeledFewShot(Optimizer):
    """Every predictor gets ``k`` labeled training examples as demos (a seeded sample, or the first k)."""

    name = "LabeledFewShot"

    def __init__(self, k: NonNegativeInt = 16, *, sample: bool = True, seed: int = 0) -> None:
        self.k = k
        self.sample = sample
        self.seed = seed

    def demos_for(self, trainset: Sequence[Example], seed: int, label: str = "labeled") -> list[dict[str, Any]]:
        k = min(self.k, len(trainset))
        chosen = rng_for(seed, label).sample(list(trainset), k) if self.sample else list(trainset)[:k]
        return [e.to_dict() for e in chosen]

    def init_state(
        self, program: Module, trainset: Sequence[Example], valset: Sequence[Example] | None
    ) -> LabeledFewShotState:
        demos = self.demos_for(trainset, self.seed)
        result = with_demos(program.dump_state(), {name: demos for name, _ in program.named_predictors()})
        return LabeledFewShotState(
            **_base_fields(self.name, self.seed, program, trainset, valset), done=True, result=result
        )

    def ask(self, state: LabeledFewShotState) -> list[BootstrapWork | EvaluateWork]:
        return []

    def tell(self, state: LabeledFewShotState, results: list[Any]) -> LabeledFewShotState:
        return state

    def compile(
        self, program: Module, trainset: Sequence[Example], valset: Sequence[Example] | None = None, **kwargs: Any
    ) -> Module:
        compiled = program.deepcopy()
        compiled.load_state(self.init_state(program, trainset, valset).result or {})
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
    # per predictor, labeled examples in a seeded order (enough to top up after removing bootstrapped ones)
    labeled_pool: dict[str, list[tuple[int, dict[str, Any]]]] = {}


class BootstrapFewShot(Optimizer):
    name = "BootstrapFewShot"

    def __init__(
        self,
        metric: Callable[..., Any] | None = None,
        *,
        metric_threshold: float | None = None,
        teacher: Module | None = None,
        max_bootstrapped_demos: NonNegativeInt = 4,
        max_labeled_demos: NonNegativeInt = 16,
        max_rounds: PositiveInt = 1,
        bootstrap_batch_size: PositiveInt | None = None,
        seed: int = 0,
    ) -> None:
        self.metric = metric
        self.metric_threshold = metric_threshold
        self.teacher = teacher
        self.max_bootstrapped_demos = max_bootstrapped_demos
        self.max_labeled_demos = max_labeled_demos
        self.max_rounds = max_rounds
        self.batch_size = bootstrap_batch_size or max(2 * max_bootstrapped_demos, 8)
        self.seed = seed

    def init_state(
        self,
        program: Module,
        trainset: Sequence[Example],
        valset: Sequence[Example] | None,
        *,
        order: list[int] | None = None,
    ) -> BootstrapState:
        student = program.reset_copy()
        teacher = (self.teacher or program).deepcopy()
        if not any(p.demos for p in teacher.predictors()):  # DSPy: a teacher without demos gets labeled ones
            labeled = LabeledFewShot(self.max_labeled_demos, seed=self.seed).demos_for(trainset, self.seed)
            for predictor in teacher.predictors():
                predictor.demos = list(labeled)
        names = [name for name, _ in program.named_predictors()]
        pool_size = self.max_labeled_demos + self.max_bootstrapped_demos
        pools = {}
        for name in names:
            shuffled = rng_for(self.seed, "raw-demos", name).sample(range(len(trainset)), len(trainset))
            pools[name] = [(i, trainset[i].to_dict()) for i in shuffled[:pool_size]]
        return BootstrapState(
            **_base_fields(self.name, self.seed, program, trainset, valset),
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
        for outcome in outcomes:
            state.attempts += 1
            if not outcome.success:
                state.failures += 1
                continue
            if self._enough(state):
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


__all__ = ["BootstrapFewShot", "BootstrapState", "LabeledFewShot", "Optimizer"]
