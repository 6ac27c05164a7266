"""MIPROv2's search: which trials come next (TPE's choices, minibatches, periodic full evaluations) and what
their scores mean for the result.

The search is a pure function of the state: each step rebuilds an Optuna study from the trial history kept
in the state (baseline, minibatch and full evaluations, as DSPy feeds its study), with DSPy's
``TPESampler(multivariate=True)`` seeded from the seed and the number of trials so far, and asks it for
the next trials; ``tell`` derives the same trials again and records their scores, so the state holds
finished trials only. Evaluate outcomes are merged per trial, however the caller sharded the work.
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass
from typing import Any

from ..base import EvaluateWork, merge_evaluations, rng_for
from .state import MiproState, Trial

ASKS_PER_TRIAL = 10  # attempts at a choice not already in the batch, per parallel trial


@functools.cache
def quiet_optuna() -> None:
    """Optuna logs every trial it is told at INFO: set its logging to warnings, once per process (a caller
    may set it otherwise afterwards). Imports optuna, which the search needs from its first trial on."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def num_trials_for(num_predictors: int, num_candidates: int, *, zeroshot: bool) -> int:
    """DSPy's budget: max(2 * variables * log2(candidates), 1.5 * candidates), two variables per predictor
    (instruction and demo set; one when optimizing zero-shot)."""
    variables = num_predictors if zeroshot else 2 * num_predictors
    return int(max(2 * variables * math.log2(num_candidates), 1.5 * num_candidates))


@dataclass(frozen=True)
class TrialSearch:
    """The search's settings, as MIPROv2 was given them."""

    minibatch_size: int
    minibatch_full_eval_steps: int
    parallel_trials: int
    zeroshot: bool  # instructions only: no demo-set parameter

    def planned(self, state: MiproState) -> int:
        """Evaluations the run makes at most: the baseline, ``num_trials`` trials and, with minibatches, a full
        evaluation after every ``minibatch_full_eval_steps`` trials and after the last (DSPy's count)."""
        full = -(-state.num_trials // self.minibatch_full_eval_steps) if state.minibatch else 0
        return 1 + state.num_trials + full

    # -- ask ---------------------------------------------------------------------------------------------------
    def evaluation(self, state: MiproState, trial: Trial) -> EvaluateWork:
        program = state.program if trial.kind == "baseline" else self.candidate(state, trial.params)
        return EvaluateWork(
            candidate=trial.number, program=program, split=state.val_split, indices=self.indices(state, trial)
        )

    @staticmethod
    def indices(state: MiproState, trial: Trial) -> list[int]:
        if trial.kind == "minibatch":
            return [state.val_indices[position] for position in trial.minibatch]
        return list(state.val_indices)

    def candidate(self, state: MiproState, params: dict[str, int]) -> dict[str, Any]:
        """The program with each predictor's chosen instruction and (unless zero-shot) demo set."""
        program = copy.deepcopy(state.program)
        for i, name in enumerate(state.predictor_names):
            entry = program[name]
            entry["signature"]["instructions"] = state.instructions[i][params[f"{i}_predictor_instruction"]]
            if not self.zeroshot:
                demos = state.demo_sets[params[f"{i}_predictor_demos"]].demos or {}
                entry["demos"] = copy.deepcopy(demos[name])
        return program

    def next_trials(self, state: MiproState) -> list[Trial]:
        """The trials to evaluate next: the baseline first; a full evaluation when one is due; else the next
        choices TPE proposes (up to ``parallel_trials``, never past a full evaluation); none when done.

        ``ask`` evaluates them and ``tell`` records them under the same numbers: both derive them from the
        state, so the state holds finished trials only."""
        number, val_size = len(state.trials), len(state.val_indices)
        if not state.trials:
            baseline = {name: 0 for name in self._param_names(state)}  # DSPy's record of the default program
            return [Trial(number=0, kind="baseline", params=baseline, n_examples=val_size)]
        full = self._due_full_evaluation(state)
        if full is not None:
            return [Trial(number=number, kind="full", params=full, n_examples=val_size)]
        searched = self._searched(state)
        count = min(self.parallel_trials, state.num_trials - searched)
        if state.minibatch:
            count = min(count, self.minibatch_full_eval_steps - searched % self.minibatch_full_eval_steps)
        trials = []
        for n, params in enumerate(self._sample(state, count) if count > 0 else [], start=number):
            if not state.minibatch:
                trials.append(Trial(number=n, kind="full", params=params, n_examples=val_size))
                continue
            positions = rng_for(state.seed, "minibatch", n).sample(range(val_size), self.minibatch_size)
            trials.append(
                Trial(number=n, kind="minibatch", params=params, n_examples=len(positions), minibatch=positions)
            )
        return trials

    @staticmethod
    def _searched(state: MiproState) -> int:
        """Trials TPE chose so far (the baseline and DSPy's periodic full evaluations aside)."""
        return sum(trial.kind == ("minibatch" if state.minibatch else "full") for trial in state.trials)

    def _due_full_evaluation(self, state: MiproState) -> dict[str, int] | None:
        """After every ``minibatch_full_eval_steps`` minibatch trials and after the last one: the choice to
        evaluate on the whole validation set, if any is left."""
        if not state.minibatch or state.trials[-1].kind != "minibatch":
            return None
        searched = self._searched(state)
        if searched % self.minibatch_full_eval_steps and searched < state.num_trials:
            return None
        return self._best_unevaluated(state)

    # -- tell --------------------------------------------------------------------------------------------------
    def record(self, state: MiproState, results: list[Any]) -> None:
        """Record the scores of the trials ``next_trials`` gives; once the last is in, the result and done."""
        merged = merge_evaluations(results)
        for trial in self.next_trials(state):
            expected = sorted(self.indices(state, trial))
            outcome = merged.get((trial.number, state.val_split))
            if outcome is None or outcome.indices != expected:
                covered = len(outcome.indices) if outcome is not None else 0
                raise ValueError(
                    f"MIPROv2: the results for trial {trial.number} cover {covered} rows, not its {len(expected)} examples"
                )
            trial.score, trial.errors = round(100.0 * outcome.mean, 2), outcome.errors  # a percentage, as Evaluate
            state.trials.append(trial)
            if trial.kind != "minibatch" and (state.best_score is None or trial.score > state.best_score):
                state.best_trial, state.best_score = trial.number, trial.score
        if self._searched(state) >= state.num_trials and self._due_full_evaluation(state) is None:
            best = state.trials[state.best_trial or 0]
            state.result = (
                copy.deepcopy(state.program) if best.kind == "baseline" else self.candidate(state, best.params)
            )
            state.phase, state.done = "done", True

    @staticmethod
    def _best_unevaluated(state: MiproState) -> dict[str, int] | None:
        """DSPy's ``get_program_with_highest_avg_score``: the choice with the best mean minibatch score among
        those not fully evaluated yet (the first seen among equals)."""
        scores: dict[tuple[tuple[str, int], ...], list[float]] = {}
        choices: dict[tuple[tuple[str, int], ...], dict[str, int]] = {}
        for trial in state.trials:
            if trial.kind == "minibatch" and trial.score is not None:
                key = tuple(sorted(trial.params.items()))
                scores.setdefault(key, []).append(trial.score)
                choices.setdefault(key, trial.params)
        evaluated = {tuple(sorted(trial.params.items())) for trial in state.trials if trial.kind == "full"}
        ranked = sorted(scores, key=lambda key: sum(scores[key]) / len(scores[key]), reverse=True)  # stable
        return next((choices[key] for key in ranked if key not in evaluated), None)

    # -- TPE ---------------------------------------------------------------------------------------------------
    def _param_names(self, state: MiproState) -> list[str]:
        """DSPy's Optuna parameter names: per predictor an instruction and (unless zero-shot) a demo set."""
        kinds = ("instruction",) if self.zeroshot else ("instruction", "demos")
        return [f"{i}_predictor_{kind}" for i in range(len(state.predictor_names)) for kind in kinds]

    def _distributions(self, state: MiproState) -> dict[str, Any]:
        from optuna.distributions import CategoricalDistribution

        distributions: dict[str, Any] = {}
        for i in range(len(state.predictor_names)):
            distributions[f"{i}_predictor_instruction"] = CategoricalDistribution(range(len(state.instructions[i])))
            if not self.zeroshot:
                distributions[f"{i}_predictor_demos"] = CategoricalDistribution(range(len(state.demo_sets)))
        return distributions

    def _sample(self, state: MiproState, count: int) -> list[dict[str, int]]:
        """Up to ``count`` distinct choices from TPE over the trial history (fewer only if there are not as many)."""
        import optuna

        distributions = self._distributions(state)
        sampler = optuna.samplers.TPESampler(
            seed=rng_for(state.seed, "tpe", len(state.trials)).randrange(2**32),
            multivariate=True,
            constant_liar=self.parallel_trials > 1,  # trials asked but not told count as (bad) results
        )
        study = optuna.create_study(direction="maximize", sampler=sampler)
        for trial in state.trials:
            study.add_trial(
                optuna.trial.create_trial(params=trial.params, distributions=distributions, value=trial.score)
            )
        chosen: list[dict[str, int]] = []
        for _ in range(ASKS_PER_TRIAL * count):
            params = study.ask(distributions).params
            params = {name: int(params[name]) for name in distributions}
            if params not in chosen:
                chosen.append(params)
            if len(chosen) == count:
                break
        return chosen
