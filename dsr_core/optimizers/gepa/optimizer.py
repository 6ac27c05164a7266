"""The GEPA optimizer: its parameters and budget, and the ask/tell machine over GepaState.

Each iteration is a merge (when one is due) or a reflective mutation; see the package docstring for the
algorithm and for how ``num_proposals`` runs several iterations at once.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import NonNegativeInt, PositiveInt

from ...modules.module import Module
from ...primitives import Example
from ..base import (
    EvaluateOutcome,
    EvaluateWork,
    GenerateOutcome,
    GenerateWork,
    Optimizer,
    TraceOutcome,
    TraceWork,
    WorkKey,
    base_fields,
    ignored,
    merge_evaluations,
    rng_for,
)
from .merge import SUBSAMPLE_SIZE, merge_subsample, plan_merge
from .pareto import best_candidate, select_parent
from .reflection import minibatch, read_instruction, reflective_examples, render_examples
from .result import detailed_results
from .state import Candidate, GepaState, Iteration, Trial, trial_number, with_instructions

log = logging.getLogger(__name__)

AUTO_RUN_SETTINGS = {"light": {"n": 6}, "medium": {"n": 12}, "heavy": {"n": 18}}
REFLECT = "reflect"  # the step of a reflection request; its number is the iteration's


def auto_budget(
    num_preds: int, num_candidates: int, valset_size: int, minibatch_size: int = 35, full_eval_steps: int = 5
) -> int:
    """DSPy's metric-call budget for ``auto``: a MIPROv2-sized run of ``num_candidates`` candidates."""
    num_trials = int(max(2 * (num_preds * 2) * math.log2(num_candidates), 1.5 * num_candidates))
    total = valset_size + num_candidates * 5 + num_trials * minibatch_size
    if num_trials == 0:
        return total
    periodic_fulls = (num_trials + 1) // full_eval_steps + 1
    extra_final = 1 if num_trials < full_eval_steps else 0
    return total + (periodic_fulls + extra_final) * valset_size


def _callable_as_metric(metric: Callable[..., Any]) -> bool:
    """Can the metric be called with two, three or five arguments (a builtin without a signature: yes)?"""
    try:
        signature = inspect.signature(metric)
    except ValueError:
        return True
    for count in (2, 3, 5):
        try:
            signature.bind(*([None] * count))
        except TypeError:
            continue
        return True
    return False


class GEPA(Optimizer):
    """DSPy's ``GEPA(metric, auto=... | max_full_evals=... | max_metric_calls=..., reflection_lm=...)``.

    ``metric`` may return a number or ``Prediction(score=..., feedback=...)`` and may take GEPA's
    ``(gold, pred, trace, pred_name, pred_trace)``; it is the runner's to call (the flows pass theirs), so
    it may be left out here. ``num_proposals`` is dsr's: iterations run at once (the one-at-a-time result up
    to where the budget stops it; with more than one, the budget caps all spending, dropped work included).
    DSPy's other keywords (proposers, ``component_selector``, ``failure_score``, wandb/mlflow switches,
    ``gepa_kwargs``) are accepted; set to anything but their defaults they warn that they have no effect.
    """

    name = "GEPA"

    def __init__(
        self,
        metric: Callable[..., Any] | None = None,
        *,
        auto: Literal["light", "medium", "heavy"] | None = None,
        max_full_evals: PositiveInt | None = None,
        max_metric_calls: PositiveInt | None = None,
        reflection_minibatch_size: PositiveInt = 3,
        candidate_selection_strategy: Literal["pareto", "current_best"] = "pareto",
        reflection_lm: Any = None,
        skip_perfect_score: bool = True,
        add_format_failure_as_feedback: bool = False,
        instruction_proposer: Any = None,
        code_proposer: Any = None,
        component_selector: Any = "round_robin",
        use_merge: bool = True,
        max_merge_invocations: NonNegativeInt = 5,
        num_threads: PositiveInt | None = None,
        failure_score: float = 0.0,
        perfect_score: float = 1.0,
        log_dir: str | None = None,
        track_stats: bool = False,
        use_wandb: bool = False,
        wandb_api_key: str | None = None,
        wandb_init_kwargs: dict[str, Any] | None = None,
        track_best_outputs: bool = False,
        warn_on_score_mismatch: bool = True,
        use_mlflow: bool = False,
        seed: int = 0,
        gepa_kwargs: dict[str, Any] | None = None,
        num_proposals: PositiveInt = 1,
    ) -> None:
        if metric is not None and not isinstance(metric, Module) and not _callable_as_metric(metric):
            raise TypeError(
                "GEPA: the metric must accept (gold, pred[, trace]) or GEPA's (gold, pred, trace, pred_name, "
                "pred_trace)"
            )
        budgets = {"auto": auto, "max_full_evals": max_full_evals, "max_metric_calls": max_metric_calls}
        given = [name for name, value in budgets.items() if value is not None]
        if len(given) != 1:
            raise ValueError(
                "GEPA: exactly one of auto, max_full_evals and max_metric_calls must be set "
                f"(got {', '.join(given) if given else 'none'})"
            )
        if log_dir is not None:
            ignored(self.name, "log_dir", "the state is JSON; the optimize flow checkpoints it after every step")
        if failure_score != 0.0:
            ignored(self.name, "failure_score", "the shared runner scores a failed example 0, as Evaluate does")
        if add_format_failure_as_feedback:
            ignored(self.name, "add_format_failure_as_feedback", "failed calls are left out of the reflection")
        if instruction_proposer is not None or code_proposer is not None:
            ignored(self.name, "instruction_proposer/code_proposer", "dsr's reflection signature proposes")
        if component_selector != "round_robin":
            ignored(self.name, "component_selector", "dsr reflects on one predictor at a time, round robin")
        if use_wandb or wandb_api_key is not None or wandb_init_kwargs:
            ignored(self.name, "use_wandb", "no wandb logging; the optimize flow tracks runs in MLflow")
        if use_mlflow:
            ignored(self.name, "use_mlflow", "use dsr's optimize flow, which logs every trial to MLflow")
        if track_best_outputs:
            ignored(self.name, "track_best_outputs", "the state keeps each candidate's scores, not its outputs")
        if gepa_kwargs:
            ignored(self.name, "gepa_kwargs", "dsr implements GEPA itself, not through the gepa package")
        self.metric = metric
        self.auto = auto
        self.max_full_evals = max_full_evals
        self.max_metric_calls = max_metric_calls
        self.reflection_minibatch_size = reflection_minibatch_size
        self.candidate_selection_strategy = candidate_selection_strategy
        self.reflection_lm = reflection_lm
        self.prompt_model = reflection_lm  # the model LocalRunner answers GenerateWork with
        self.skip_perfect_score = skip_perfect_score
        self.use_merge = use_merge
        self.max_merge_invocations = max_merge_invocations
        self.num_threads = num_threads
        self.perfect_score = perfect_score
        self.failure_score = failure_score
        self.add_format_failure_as_feedback = add_format_failure_as_feedback
        self.instruction_proposer = instruction_proposer
        self.code_proposer = code_proposer
        self.component_selector = component_selector
        self.use_wandb = use_wandb
        self.wandb_init_kwargs = wandb_init_kwargs
        self.track_best_outputs = track_best_outputs
        self.warn_on_score_mismatch = warn_on_score_mismatch  # dsr has no such check to silence
        self.use_mlflow = use_mlflow
        self.gepa_kwargs = gepa_kwargs
        self.log_dir = log_dir
        self.track_stats = track_stats
        self.seed = seed
        self.num_proposals = num_proposals

    def compile(
        self,
        student: Module,
        trainset: Sequence[Example] | None = None,
        valset: Sequence[Example] | None = None,
        *,
        teacher: Module | None = None,
        **options: Any,
    ) -> Module:
        """DSPy's ``compile(student, trainset=..., valset=...)``; without a valset the trainset validates."""
        if teacher is not None:
            raise ValueError("GEPA does not use a teacher (DSPy's GEPA does not support one either)")
        return super().compile(student, trainset, valset, **options)

    # -- init ------------------------------------------------------------------------------------------------

    def budget(self, num_preds: int, n_train: int, n_val: int | None) -> int:
        """The run's metric calls: ``max_metric_calls``, or DSPy's rule for ``max_full_evals`` or ``auto``."""
        if self.auto is not None:
            n = AUTO_RUN_SETTINGS[self.auto]["n"]
            return auto_budget(num_preds, n, n_val if n_val is not None else n_train)
        if self.max_full_evals is not None:
            return self.max_full_evals * (n_train + (n_val or 0))
        assert self.max_metric_calls is not None
        return self.max_metric_calls

    def init_state(self, program: Module, trainset: Sequence[Example], valset: Sequence[Example] | None) -> GepaState:
        if not trainset:
            raise ValueError("GEPA needs a non-empty trainset")
        if valset is not None and not valset:
            raise ValueError("GEPA needs a non-empty valset (or none: the trainset then validates)")
        fields = base_fields(self.name, self.seed, program, trainset, valset)
        if not fields["predictor_names"]:
            raise ValueError("GEPA needs a program with at least one predictor")
        n_val = len(valset) if valset is not None else None
        return GepaState(
            **fields,
            program=program.dump_state(),
            val_split="val" if valset is not None else "train",
            val_indices=list(range(n_val if n_val is not None else len(trainset))),
            max_metric_calls=self.budget(len(fields["predictor_names"]), len(trainset), n_val),
        )

    def planned_trials(self, state: GepaState) -> int | None:
        """Unknown: how many evaluations the budget buys depends on what is accepted (see max_metric_calls)."""
        return None

    # -- ask -------------------------------------------------------------------------------------------------

    def ask(self, state: GepaState) -> list[Any]:
        if state.done:
            return []
        if state.phase == "baseline":
            return [EvaluateWork(candidate=0, split=state.val_split, indices=state.val_indices, program=state.program)]
        work: list[Any] = []
        for position, iteration in enumerate(state.running):
            item = self._work(state, iteration, front=position == 0)
            if item is not None:
                work.append(item)
        return work

    def _work(self, state: GepaState, it: Iteration, *, front: bool) -> Any:
        """The work ``it`` waits for (a full evaluation only once every earlier iteration is finished)."""
        parent = state.candidates[it.parents[0]]
        if it.stage == "trace":
            program = with_instructions(state.program, parent.instructions)
            return TraceWork(candidate=it.number, program=program, indices=it.indices)
        if it.stage == "reflect":
            assert it.reflection is not None
            return GenerateWork(
                key=WorkKey(step=REFLECT, number=it.number),
                signature="reflection",
                inputs=it.reflection,
                rollout=f"gepa:{state.seed}:{it.number}",
            )
        program = with_instructions(state.program, it.instructions)
        if it.stage == "minibatch":
            return EvaluateWork(
                candidate=trial_number(it.number, "minibatch"), split="train", indices=it.indices, program=program
            )
        if it.stage == "subsample":
            indices = [state.val_indices[p] for p in it.indices]
            return EvaluateWork(
                candidate=trial_number(it.number, "subsample"), split=state.val_split, indices=indices, program=program
            )
        if it.stage == "full" and front:
            return EvaluateWork(
                candidate=trial_number(it.number, "full"),
                split=state.val_split,
                indices=state.val_indices,
                program=program,
            )
        return None

    # -- tell ------------------------------------------------------------------------------------------------

    def tell(self, state: GepaState, results: list[Any]) -> GepaState:
        state = state.model_copy(deep=True)
        evaluations = {candidate: outcome for (candidate, _), outcome in merge_evaluations(results).items()}
        if state.phase == "baseline":
            self._baseline(state, evaluations[0])
        else:
            traces: dict[int, list[TraceOutcome]] = {}
            for result in results:
                if isinstance(result, TraceOutcome):
                    traces.setdefault(result.candidate, []).append(result)
            generations = {r.key.number: r for r in results if isinstance(r, GenerateOutcome) and r.key.step == REFLECT}
            for position, it in enumerate(state.running):
                if it.stage == "trace" and it.number in traces:
                    self._traced(state, position, traces[it.number])
                elif it.stage == "reflect" and it.number in generations:
                    self._reflected(state, it, generations[it.number])
                elif (
                    it.stage in ("minibatch", "subsample", "full") and trial_number(it.number, it.stage) in evaluations
                ):
                    self._evaluated(state, it, evaluations[trial_number(it.number, it.stage)])
            self._resolve(state)
        if not state.done:
            self._launch(state)
        return state

    def _baseline(self, state: GepaState, outcome: EvaluateOutcome) -> None:
        instructions = {name: state.program[name]["signature"]["instructions"] for name in state.predictor_names}
        state.candidates.append(
            Candidate(number=0, instructions=instructions, origin="seed", val_scores=outcome.scores)
        )
        state.metric_calls += len(outcome.scores)
        state.trials.append(Trial.of(0, "baseline", {"iteration": -1}, outcome))
        state.best_score = round(100.0 * state.candidates[0].mean, 4)
        state.phase = "search"

    def _traced(self, state: GepaState, position: int, outcomes: list[TraceOutcome]) -> None:
        """The parent's minibatch run: skip a perfect minibatch, else choose the component (round robin) and
        build the reflection request from its calls and feedback."""
        it = state.running[position]
        by_index = {outcome.index: outcome for outcome in outcomes}
        traces = [by_index[i] for i in it.indices]
        it.scores_before = [t.score for t in traces]
        it.metric_calls += len(traces)
        if self.skip_perfect_score and all(s >= self.perfect_score for s in it.scores_before):
            it.stage, it.outcome = "done", "skipped"
            return
        it.component_position = self._next_component(state, position)
        it.component = state.predictor_names[it.component_position]
        examples = reflective_examples(traces, it.component, rng_for(state.seed, "reflect", it.number))
        if not examples:  # the component did not run (or every run failed) on this minibatch
            it.stage, it.outcome = "done", "no_proposal"
            return
        current = state.candidates[it.parents[0]].instructions[it.component]
        it.reflection = {"current_instruction": current, "examples_with_feedback": render_examples(examples)}
        it.stage = "reflect"

    def _next_component(self, state: GepaState, position: int) -> int:
        """The parent's round-robin position, counting the choices of earlier running iterations."""
        parent = state.running[position].parents[0]
        earlier = sum(
            1
            for it in state.running[:position]
            if it.kind == "mutation" and it.parents[0] == parent and it.component_position is not None
        )
        return (state.candidates[parent].next_component + earlier) % len(state.predictor_names)

    def _reflected(self, state: GepaState, it: Iteration, outcome: GenerateOutcome) -> None:
        if outcome.error is not None and outcome.transient:
            raise RuntimeError(f"GEPA: the reflection of iteration {it.number} failed: {outcome.error}")
        reply = outcome.completions[0].get("new_instruction") if outcome.error is None and outcome.completions else None
        instruction = read_instruction(str(reply or ""))
        if not instruction:
            log.warning("GEPA iteration %d: no instruction proposed (%s)", it.number, outcome.error or "empty reply")
            it.stage, it.outcome, it.reflection = "done", "no_proposal", None
            return
        assert it.component is not None
        it.instructions = {**state.candidates[it.parents[0]].instructions, it.component: instruction}
        it.stage, it.reflection = "minibatch", None

    def _evaluated(self, state: GepaState, it: Iteration, outcome: EvaluateOutcome) -> None:
        stage = it.stage
        it.metric_calls += len(outcome.scores)
        params = {"iteration": it.number, "parent": it.parents[0]}
        if it.kind == "merge":
            assert it.ancestor is not None
            params.update(other_parent=it.parents[1], ancestor=it.ancestor)
        if stage == "full":
            it.candidate = len(state.candidates)  # the front iteration: it joins the pool in this tell
            params["candidate"] = it.candidate
            it.stage, it.outcome = "done", "accepted"
            state.candidates.append(self._new_candidate(state, it, outcome.scores))
        else:
            it.scores_after = outcome.scores
            improved = (
                sum(it.scores_after) > sum(it.scores_before)
                if stage == "minibatch"
                else sum(it.scores_after) >= max(it.scores_before)
            )
            it.stage = "full" if improved else "done"
            it.outcome = None if improved else "rejected"
        state.trials.append(Trial.of(trial_number(it.number, stage), stage, params, outcome))
        state.trials.sort(key=lambda trial: trial.number)

    def _new_candidate(self, state: GepaState, it: Iteration, val_scores: list[float]) -> Candidate:
        spent_before = state.metric_calls + it.metric_calls - len(val_scores)
        return Candidate(
            number=len(state.candidates),
            instructions=it.instructions,
            parents=it.parents,
            origin=it.kind,
            iteration=it.number,
            component=it.component,
            ancestor=it.ancestor,
            val_scores=val_scores,
            discovered_at=spent_before,
        )

    # -- committing finished iterations ----------------------------------------------------------------------

    def _resolve(self, state: GepaState) -> None:
        """Commit finished iterations in order; drop the speculative ones a one-at-a-time run would not make
        (those after an accepted iteration, and those after the budget ran out)."""
        for position, it in enumerate(state.running):
            if it.stage == "full" or it.outcome == "accepted":
                self._discard(state, position + 1)
                break
        while state.running and state.running[0].stage == "done":
            self._commit(state, state.running.pop(0))
            if state.metric_calls >= state.max_metric_calls:
                self._discard(state, 0)

    def _discard(self, state: GepaState, start: int) -> None:
        """Drop the running iterations from ``start`` on, with their trials; their numbers start again."""
        dropped = state.running[start:]
        if not dropped:
            return
        numbers = {it.number for it in dropped}
        state.discarded_metric_calls += sum(it.metric_calls for it in dropped)
        state.trials = [t for t in state.trials if t.params["iteration"] not in numbers]
        state.next_iteration = dropped[0].number
        del state.running[start:]

    def _commit(self, state: GepaState, it: Iteration) -> None:
        if it.kind == "mutation" and it.component_position is not None:
            parent = state.candidates[it.parents[0]]
            parent.next_component = (it.component_position + 1) % len(state.predictor_names)
        state.metric_calls += it.metric_calls
        if it.outcome == "accepted":
            assert it.candidate is not None
            added = state.candidates[it.candidate]
            added.next_component = max(state.candidates[p].next_component for p in it.parents)
            if it.kind == "mutation" and self.use_merge:
                state.found_new_program = True
                if state.merges_accepted < self.max_merge_invocations:
                    state.merges_due += 1
            elif it.kind == "merge":
                state.merges_due -= 1
                state.merges_accepted += 1
            state.best_score = round(100.0 * state.candidates[best_candidate(state.val_scores)].mean, 4)
        log.info("GEPA iteration %d (%s of %s): %s", it.number, it.kind, it.parents, it.outcome or "finished")
        state.history.append(it)

    # -- starting iterations ---------------------------------------------------------------------------------

    def _launch(self, state: GepaState) -> None:
        """Keep ``num_proposals`` iterations running, each started as if every earlier one will be rejected
        (its parent, component and minibatch then are the ones a one-at-a-time run would choose); or finish.
        None starts while one is on its way to the full evaluation: the later ones would be dropped."""
        while len(state.running) < self.num_proposals and all(it.stage != "full" for it in state.running):
            merge = not state.running and self._merge_due(state)
            if not self._affordable(state, merge):
                break
            number = state.next_iteration
            it = (self._merge(state, number) if not state.running else None) or self._mutation(state, number)
            state.running.append(it)
            state.next_iteration += 1
        if not state.running:
            self._finish(state)

    def _affordable(self, state: GepaState, merge: bool) -> bool:
        """May the next iteration start? One at a time: while the budget is not spent (gepa's rule; the last
        iteration may go over). With ``num_proposals > 1`` the budget caps everything spent, dropped work
        included: the next one starts only if the budget left covers the most the running iterations and it
        can still spend (each one's minibatch or subsample evaluations, and one full evaluation: the first
        iteration to need one drops the later ones)."""
        if self.num_proposals == 1:
            return state.metric_calls < state.max_metric_calls
        size = 2 * min(self.reflection_minibatch_size, state.n_train)
        if merge:
            size = max(size, min(len(state.val_indices), SUBSAMPLE_SIZE))
        return self.spend_bound(state) + size + len(state.val_indices) <= state.max_metric_calls

    @staticmethod
    def spend_bound(state: GepaState) -> int:
        """The most the run can have spent once the running iterations end, without their full evaluations:
        what is committed and dropped, what finished iterations spent, and the rest their pre-validation
        evaluations could spend (a mutation's trace and minibatch, a merge's subsample)."""
        running = sum(
            it.metric_calls if it.stage == "done" else len(it.indices) * (2 if it.kind == "mutation" else 1)
            for it in state.running
        )
        return state.metric_calls + state.discarded_metric_calls + running

    def _merge_due(self, state: GepaState) -> bool:
        return self.use_merge and state.found_new_program and state.merges_due > 0

    def _merge(self, state: GepaState, number: int) -> Iteration | None:
        """A merge iteration if one is due right after a new mutation and an untried one exists (gepa)."""
        due = self._merge_due(state)
        state.found_new_program = False
        if not due:
            return None
        rng = rng_for(state.seed, "merge", number)
        plan = plan_merge(
            state.predictor_names,
            [c.instructions for c in state.candidates],
            [c.parents for c in state.candidates],
            state.val_scores,
            state.tried_triplets,
            state.tried_merges,
            rng,
        )
        if plan is None:
            return None
        state.tried_triplets.append([plan.first, plan.second, plan.ancestor])
        state.tried_merges.append([plan.first, plan.second, *plan.sources])
        first, second = state.candidates[plan.first].val_scores, state.candidates[plan.second].val_scores
        positions = merge_subsample(first, second, rng)
        return Iteration(
            number=number,
            kind="merge",
            stage="subsample",
            parents=[plan.first, plan.second],
            indices=positions,
            instructions=plan.instructions,
            ancestor=plan.ancestor,
            sources=plan.sources,
            scores_before=[sum(first[p] for p in positions), sum(second[p] for p in positions)],
        )

    def _mutation(self, state: GepaState, number: int) -> Iteration:
        parent = select_parent(
            self.candidate_selection_strategy, state.val_scores, rng_for(state.seed, "parent", number)
        )
        batch = minibatch(state.seed, state.n_train, self.reflection_minibatch_size, number)
        return Iteration(number=number, kind="mutation", stage="trace", parents=[parent], indices=batch)

    def _finish(self, state: GepaState) -> None:
        best = state.candidates[best_candidate(state.val_scores)]
        state.result = with_instructions(state.program, best.instructions)
        state.best_score = round(100.0 * best.mean, 4)
        state.phase, state.done = "done", True

    # -- the result ------------------------------------------------------------------------------------------

    def best_so_far(self, state: GepaState) -> dict[str, Any] | None:
        """The candidate with the best mean validation score in the pool so far."""
        if state.result is not None or not state.candidates:
            return state.result
        best = state.candidates[best_candidate(state.val_scores)]
        return with_instructions(state.program, best.instructions)

    def finish(self, student: Module, state: GepaState) -> Module:
        """The best program; with ``track_stats``, DSPy's ``detailed_results`` on it too."""
        compiled = super().finish(student, state)
        if self.track_stats:
            compiled.detailed_results = detailed_results(student, state)
        return compiled
