"""BootstrapFewShotWithRandomSearch: DSPy's candidate programs, each scored on the validation set.

Candidates, in DSPy's order: zero-shot, labeled demos only, an unshuffled bootstrap, then
``num_candidate_programs`` bootstraps over a seeded shuffle of the training set with a seeded number of
demos (1..max_bootstrapped_demos). The best validation score wins; ties keep the earlier candidate.

DSPy's constructor and ``compile(student, teacher=..., trainset=..., valset=..., restrict=...,
labeled_sample=...)``; the compiled program carries DSPy's ``candidate_programs`` (best first).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, NonNegativeInt, PositiveInt

from ..modules.module import Module
from ..primitives import Example
from .base import BootstrapOutcome, BootstrapWork, EvaluateOutcome, EvaluateWork, Optimizer, OptimizerState, base_fields
from .bootstrap import BootstrapFewShot, BootstrapState, LabeledFewShot


class Candidate(BaseModel):
    seed: int  # DSPy's numbering: -3 zero-shot, -2 labeled, -1 unshuffled bootstrap, 0.. shuffled
    kind: Literal["zero-shot", "labeled", "bootstrap"]
    max_bootstrapped_demos: int = 0
    bootstrap: BootstrapState | None = None
    program: dict[str, Any] | None = None
    score: float | None = None
    subscores: list[float] = []  # per validation example, as DSPy's candidate_programs list them


class RandomSearchState(OptimizerState):
    candidates: list[Candidate]
    current: int = 0
    split: Literal["train", "val"] = "val"
    best: int | None = None


class BootstrapFewShotWithRandomSearch(Optimizer):
    name = "BootstrapFewShotWithRandomSearch"

    def __init__(
        self,
        metric: Callable[..., Any] | None = None,
        teacher_settings: dict[str, Any] | None = None,
        max_bootstrapped_demos: NonNegativeInt = 4,
        max_labeled_demos: NonNegativeInt = 16,
        max_rounds: PositiveInt = 1,
        num_candidate_programs: PositiveInt = 16,
        num_threads: PositiveInt | None = None,
        max_errors: NonNegativeInt | None = None,
        stop_at_score: float | None = None,
        metric_threshold: float | None = None,
        *,
        teacher: Module | None = None,
        restrict: list[int] | None = None,
        labeled_sample: bool = True,
        seed: int = 0,
    ) -> None:
        self.metric = metric
        self.teacher_settings = dict(teacher_settings or {})
        self.metric_threshold = metric_threshold
        self.teacher = teacher
        self.max_bootstrapped_demos = max_bootstrapped_demos
        self.max_labeled_demos = max_labeled_demos
        self.max_rounds = max_rounds
        self.num_candidate_programs = num_candidate_programs
        self.num_threads = num_threads
        self.max_errors = max_errors
        self.stop_at_score = stop_at_score
        self.restrict = restrict
        self.labeled_sample = labeled_sample
        self.seed = seed

    def configured(self, **options: Any) -> BootstrapFewShotWithRandomSearch:
        """DSPy's ``compile`` keywords ``restrict`` (the candidate seeds to try) and ``labeled_sample``."""
        unknown = set(options) - {"restrict", "labeled_sample"}
        if unknown:
            raise TypeError(f"{self.name}.compile() got unexpected keyword(s): {', '.join(sorted(unknown))}")
        optimizer = super().configured()
        for name, value in options.items():
            setattr(optimizer, name, value)
        return optimizer

    def _bootstrapper(self, max_bootstrapped_demos: int) -> BootstrapFewShot:
        return BootstrapFewShot(
            self.metric,
            metric_threshold=self.metric_threshold,
            teacher_settings=self.teacher_settings,
            teacher=self.teacher,
            max_bootstrapped_demos=max_bootstrapped_demos,
            max_labeled_demos=self.max_labeled_demos,
            max_rounds=self.max_rounds,
            max_errors=self.max_errors,
            seed=self.seed,
        )

    def init_state(
        self, program: Module, trainset: Sequence[Example], valset: Sequence[Example] | None
    ) -> RandomSearchState:
        labeled = LabeledFewShot(self.max_labeled_demos, sample=self.labeled_sample).init_state(
            program, trainset, valset
        )
        candidates = [
            Candidate(seed=-3, kind="zero-shot", program=program.reset_copy().dump_state()),
            Candidate(seed=-2, kind="labeled", program=labeled.result),
        ]
        n = len(trainset)
        plans = [(-1, list(range(n)), self.max_bootstrapped_demos)]
        for seed in range(self.num_candidate_programs):
            order = list(range(n))
            random.Random(seed).shuffle(order)  # DSPy's shuffle and size draws, for comparable candidates
            size = random.Random(seed).randint(1, self.max_bootstrapped_demos)
            plans.append((seed, order, size))
        for seed, order, size in plans:
            bootstrap = self._bootstrapper(size).init_state(program, trainset, valset, order=order)
            candidates.append(Candidate(seed=seed, kind="bootstrap", max_bootstrapped_demos=size, bootstrap=bootstrap))
        if self.restrict is not None:  # DSPy's restrict: only the candidates of these seeds
            candidates = [candidate for candidate in candidates if candidate.seed in self.restrict]
            if not candidates:
                raise ValueError(f"{self.name}: restrict={self.restrict} keeps none of the seeds -3..")
        return RandomSearchState(
            **base_fields(self.name, self.seed, program, trainset, valset),
            candidates=candidates,
            split="val" if valset else "train",
        )

    def planned_trials(self, state: RandomSearchState) -> int:
        return len(state.candidates)

    def ask(self, state: RandomSearchState) -> list[BootstrapWork | EvaluateWork]:
        if state.done:
            return []
        candidate = state.candidates[state.current]
        if candidate.program is None:
            assert candidate.bootstrap is not None
            return self._bootstrapper(candidate.max_bootstrapped_demos).ask(candidate.bootstrap)
        size = state.n_val if state.split == "val" else state.n_train
        return [
            EvaluateWork(
                candidate=state.current, program=candidate.program, split=state.split, indices=list(range(size))
            )
        ]

    def tell(self, state: RandomSearchState, results: list[Any]) -> RandomSearchState:
        state = state.model_copy(deep=True)
        candidate = state.candidates[state.current]
        if candidate.program is None:
            assert candidate.bootstrap is not None
            boot = self._bootstrapper(candidate.max_bootstrapped_demos).tell(
                candidate.bootstrap, [r for r in results if isinstance(r, BootstrapOutcome)]
            )
            if boot.done:
                candidate.program, candidate.bootstrap = boot.result, None
            else:
                candidate.bootstrap = boot
            return state
        outcome = next(r for r in results if isinstance(r, EvaluateOutcome) and r.candidate == state.current)
        candidate.score = round(100.0 * outcome.mean, 4)
        candidate.subscores = list(outcome.scores)
        if state.best is None or candidate.score > (state.best_score or 0.0):
            state.best, state.best_score = state.current, candidate.score
        state.current += 1
        reached = self.stop_at_score is not None and (state.best_score or 0.0) >= self.stop_at_score
        if state.current >= len(state.candidates) or reached:
            state.done = True
            state.result = state.candidates[state.best or 0].program
        return state

    def best_so_far(self, state: RandomSearchState) -> dict[str, Any] | None:
        """The best candidate scored so far."""
        return state.result or (state.candidates[state.best].program if state.best is not None else None)

    def finish(self, student: Module, state: RandomSearchState) -> Module:
        """The best program with DSPy's ``candidate_programs``: every scored candidate (score, subscores, seed,
        program), best first."""
        compiled = super().finish(student, state)
        scored = []
        for candidate in state.candidates:
            if candidate.score is None or candidate.program is None:
                continue
            program = student.deepcopy()
            program.load_state(candidate.program)
            scored.append(
                {"score": candidate.score, "subscores": candidate.subscores, "seed": candidate.seed, "program": program}
            )
        compiled.candidate_programs = CandidatePrograms(sorted(scored, key=lambda entry: entry["score"], reverse=True))
        return compiled


class CandidatePrograms(Sequence[dict[str, Any]]):
    """DSPy's ``candidate_programs`` list. Not a list, so that the programs in it are not taken for
    sub-modules of the program that carries it (their predictors are not its predictors)."""

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self._entries = entries

    def __getitem__(self, index: Any) -> Any:
        return self._entries[index]

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"CandidatePrograms({[(e['seed'], e['score']) for e in self._entries]})"
