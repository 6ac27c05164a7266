"""The SIMBA optimizer: its parameters, and the ask/tell machine over SimbaState.

A step goes through three phases: ``sample`` (trajectories of pool programs on the mini-batch, TraceWork),
``rules`` (the prompt model's advice for the candidates built by ``append_a_rule``, GenerateWork; skipped
when there are none) and ``evaluate`` (the new candidates on the mini-batch, EvaluateWork). After the last
step, ``final`` scores some winners on the whole selection set. See the package docstring.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import NonNegativeInt, PositiveFloat, PositiveInt

from ...adapters.base import describe_fields
from ...adapters.types import jsonable
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
    check_teacher_settings,
    merge_evaluations,
    rng_for,
    teacher_lm,
)
from .pool import final_positions, percentile, softmax_sample, top_programs
from .result import candidate_programs, trial_logs
from .state import Plan, Program, Rollout, SimbaState, Step, StepRecord, Strategy, Trial, program_state
from .strategies import (
    RuleUnavailable,
    append_a_demo,
    append_advice,
    drop_demos,
    make_bucket,
    modules_definition,
    rank_buckets,
    rule_request,
    trajectory,
)

log = logging.getLogger(__name__)

RULE = "rule"  # the step of an advice request; its number is the bucket's position


def _source(program: Module) -> str:
    """The program class's source, as DSPy shows it to the prompt model (its name when there is none)."""
    try:
        return inspect.getsource(type(program))
    except (OSError, TypeError):
        return f"class {type(program).__qualname__}: ...  # source not available"


class SIMBA(Optimizer):
    """DSPy's ``SIMBA(metric=..., bsize=32, num_candidates=6, max_steps=8, max_demos=4, ...)``.

    ``metric`` may return a number or ``Prediction(score=..., feedback=...)`` (the feedback reaches the
    prompt model); it is the runner's to call (the flows pass theirs), so it may be left out here.
    ``prompt_model`` proposes the rules (None: the runner's prompt model, the configured LM);
    ``teacher_settings={"lm": ...}`` makes the teacher LM the first of the sampling models. ``seed`` is
    DSPy's ``compile(seed=...)``, which is accepted too.
    """

    name = "SIMBA"

    def __init__(
        self,
        metric: Callable[..., Any] | None = None,
        *,
        bsize: PositiveInt = 32,
        num_candidates: PositiveInt = 6,
        max_steps: PositiveInt = 8,
        max_demos: NonNegativeInt = 4,
        prompt_model: Any = None,
        teacher_settings: dict[str, Any] | None = None,
        demo_input_field_maxlen: NonNegativeInt = 100_000,
        num_threads: PositiveInt | None = None,
        temperature_for_sampling: PositiveFloat = 0.2,
        temperature_for_candidates: PositiveFloat = 0.2,
        seed: int = 0,
    ) -> None:
        self.metric = metric
        self.bsize = bsize
        self.num_candidates = num_candidates
        self.max_steps = max_steps
        self.max_demos = max_demos
        self.prompt_model = prompt_model
        self.teacher_settings = dict(teacher_settings or {})
        check_teacher_settings(self.name, self.teacher_settings)
        self.demo_input_field_maxlen = demo_input_field_maxlen
        self.num_threads = num_threads
        self.temperature_for_sampling = temperature_for_sampling
        self.temperature_for_candidates = temperature_for_candidates
        self.seed = seed
        self.strategies: list[Strategy] = ["append_a_demo", "append_a_rule"] if max_demos > 0 else ["append_a_rule"]

    def compile(
        self,
        student: Module,
        trainset: Sequence[Example] | None = None,
        valset: Sequence[Example] | None = None,
        *,
        teacher: Module | None = None,
        **options: Any,
    ) -> Module:
        """DSPy's ``compile(student, trainset=..., seed=...)``. With a valset, the winners are scored on it at
        the end (DSPy scores them on the trainset, as this does without one)."""
        if teacher is not None:
            raise ValueError("SIMBA does not use a teacher program (DSPy's SIMBA takes teacher_settings instead)")
        return super().compile(student, trainset, valset, **options)

    def configured(self, **options: Any) -> SIMBA:
        """DSPy's ``compile`` keyword ``seed``."""
        seed = options.pop("seed", self.seed)
        optimizer = super().configured(**options)
        assert isinstance(optimizer, SIMBA)
        optimizer.seed = int(seed)
        return optimizer

    # -- init ------------------------------------------------------------------------------------------------

    def init_state(self, program: Module, trainset: Sequence[Example], valset: Sequence[Example] | None) -> SimbaState:
        if len(trainset) < self.bsize:
            raise ValueError(
                f"SIMBA needs a trainset of at least bsize={self.bsize} examples (got {len(trainset)}): "
                "pass more examples or a smaller bsize"
            )
        if valset is not None and not valset:
            raise ValueError("SIMBA needs a non-empty valset (or none: the trainset then selects the result)")
        fields = base_fields(self.name, self.seed, program, trainset, valset)
        if not fields["predictor_names"]:
            raise ValueError("SIMBA needs a program with at least one predictor")
        dumped = program.dump_state()
        names = fields["predictor_names"]
        baseline = Program(
            number=0,
            instructions={name: dumped[name]["signature"]["instructions"] for name in names},
            demos={name: list(dumped[name]["demos"]) for name in names},
        )
        order = list(range(len(trainset)))
        rng_for(self.seed, "shuffle", 0).shuffle(order)
        state = SimbaState(
            **fields,
            program=dumped,
            program_code=_source(program),
            fields={
                name: {
                    "inputs": describe_fields(predictor.signature.input_fields),
                    "outputs": describe_fields(predictor.signature.output_fields),
                }
                for name, predictor in program.named_predictors()
            },
            train_inputs=[jsonable(example.inputs().to_dict()) for example in trainset],
            order=order,
            shuffles=1,
            programs=[baseline],
            winners=[0],
            final_split="val" if valset is not None else "train",
        )
        self._start_step(state)
        return state

    def planned_trials(self, state: SimbaState) -> int:
        """The evaluations when every strategy yields a candidate: up to ``num_candidates + 1`` per step on
        the mini-batch, then the winners scored at the end (fewer when rules fail)."""
        per_step = min(self.num_candidates + 1, self.bsize)
        return self.max_steps * per_step + len(final_positions(self.max_steps + 1, self.num_candidates))

    # -- ask -------------------------------------------------------------------------------------------------

    def ask(self, state: SimbaState) -> list[Any]:
        if state.done:
            return []
        if state.phase == "final":
            indices = list(range(state.n_val if state.final_split == "val" else state.n_train))
            return [
                EvaluateWork(
                    candidate=len(state.programs) + position,
                    split=state.final_split,
                    indices=indices,
                    program=program_state(state.program, state.programs[number]),
                )
                for position, number in enumerate(state.final)
            ]
        step = state.step
        assert step is not None
        if state.phase == "sample":
            return [
                TraceWork(candidate=position, program=self._sampling_program(state, rollout), indices=rollout.indices)
                for position, rollout in enumerate(step.rollouts)
            ]
        if state.phase == "rules":
            return [
                GenerateWork(
                    key=WorkKey(step=RULE, number=plan.bucket),
                    signature="offer_feedback",
                    inputs=plan.request,
                    rollout=f"simba:{state.seed}:{step.number}:{plan.bucket}",
                )
                for plan in step.plans
                if plan.status == "pending" and plan.request is not None
            ]
        ready = [plan for plan in step.plans if plan.status == "ready"]
        return [
            EvaluateWork(
                candidate=len(state.programs) + position,
                split="train",
                indices=step.batch,
                program=program_state(state.program, plan),
            )
            for position, plan in enumerate(ready)
        ]

    def _sampling_program(self, state: SimbaState, rollout: Rollout) -> dict[str, Any]:
        """A pool program as sampling model ``rollout.model`` runs it: at temperature 1.0 with its own rollout
        id (a distinct sample and cache entry); with teacher settings, model 0 is the teacher LM as it is."""
        assert state.step is not None
        program = program_state(state.program, state.programs[rollout.program])
        rollout_id = state.step.number * self.num_candidates + rollout.model
        teacher = teacher_lm(self.teacher_settings) if rollout.model == 0 else None
        for name in state.predictor_names:
            entry = dict(program[name])
            config = {**(entry.get("config") or {}), "rollout_id": rollout_id}
            if teacher is not None:
                entry["lm"] = teacher.dump_state()
            else:
                config["temperature"] = 1.0
            entry["config"] = config
            program[name] = entry
        return program

    # -- tell ------------------------------------------------------------------------------------------------

    def tell(self, state: SimbaState, results: list[Any]) -> SimbaState:
        state = state.model_copy(deep=True)
        if state.done:
            return state
        if state.phase == "final":
            self._scored(state, merge_evaluations(results))
        elif state.phase == "sample":
            self._sampled(state, [r for r in results if isinstance(r, TraceOutcome)])
            self._plan(state)
        elif state.phase == "rules":
            self._advised(state, [r for r in results if isinstance(r, GenerateOutcome) and r.key.step == RULE])
            self._plan(state)
        else:
            self._evaluated(state, merge_evaluations(results))
        return state

    def _sampled(self, state: SimbaState, outcomes: list[TraceOutcome]) -> None:
        """Bucket the trajectories by example, rank the buckets, and note the batch's score percentiles."""
        step = state.step
        assert step is not None
        by_key = {(outcome.candidate, outcome.index): outcome for outcome in outcomes}
        rollout_of = {
            (rollout.model, index): position
            for position, rollout in enumerate(step.rollouts)
            for index in rollout.indices
        }
        buckets = []
        for index in step.batch:
            runs = [by_key[(rollout_of[(model, index)], index)] for model in range(self.num_candidates)]
            buckets.append(make_bucket(index, runs[0].gold, [trajectory(run) for run in runs]))
        scores = [t.score for bucket in buckets for t in bucket.trajectories]
        step.buckets = rank_buckets(buckets)
        step.p10, step.p90 = percentile(scores, 10), percentile(scores, 90)
        step.baseline_score = sum(scores) / len(scores)
        log.info("SIMBA step %d: mean trajectory score %.4f on the mini-batch", step.number, step.baseline_score)

    def _plan(self, state: SimbaState) -> None:
        """Build candidates from the ranked buckets, in order, until ``num_candidates + 1`` of them may
        succeed (a failed rule makes room for the next bucket, as in DSPy); then ask for what they need."""
        step = state.step
        assert step is not None
        while len(step.plans) < len(step.buckets) and (
            sum(plan.status != "failed" for plan in step.plans) < self.num_candidates + 1
        ):
            step.plans.append(self._build(state, step, len(step.plans)))
        if any(plan.status == "pending" for plan in step.plans):
            state.phase = "rules"
        elif any(plan.status == "ready" for plan in step.plans):
            state.phase = "evaluate"
        else:
            self._end_step(state, [])

    def _build(self, state: SimbaState, step: Step, position: int) -> Plan:
        """The candidate of the bucket at ``position``: a source program drawn from the top of the pool, some
        of its demos dropped, then a strategy drawn and applied (a rule waits for the prompt model)."""
        rng = rng_for(state.seed, "candidate", step.number, position)
        bucket = step.buckets[position]
        numbers = top_programs(state.programs, self.num_candidates)
        source = state.programs[softmax_sample(rng, state.programs, numbers, self.temperature_for_candidates)]
        demos, dropped = drop_demos(rng, source.demos, self.max_demos)
        strategy: Strategy = rng.choice(self.strategies)
        plan = Plan(
            bucket=position,
            source=source.number,
            strategy=strategy,
            dropped_demos=dropped,
            instructions=dict(source.instructions),
            demos=demos,
            status="ready",
        )
        if strategy == "append_a_demo":
            plan.demos, plan.applied = append_a_demo(bucket, demos, step.p10, self.demo_input_field_maxlen)
            return plan
        try:
            plan.request = rule_request(
                bucket,
                step.p10,
                step.p90,
                names=state.predictor_names,
                program_code=state.program_code,
                modules_defn=modules_definition(plan.instructions, state.fields),
                program_inputs=state.train_inputs[bucket.index],
            )
        except RuleUnavailable as exc:
            log.warning("SIMBA step %d, bucket %d: no rule (%s)", step.number, position, exc)
            plan.status = "failed"
            return plan
        if plan.request is not None:
            plan.status = "pending"
        return plan

    def _advised(self, state: SimbaState, outcomes: list[GenerateOutcome]) -> None:
        """Append each answered rule's advice; a failed or unreadable answer drops the candidate (DSPy skips a
        strategy that raises), an infrastructure failure stops the run so that resuming asks again."""
        step = state.step
        assert step is not None
        answers = {outcome.key.number: outcome for outcome in outcomes}
        for plan in step.plans:
            outcome = answers.get(plan.bucket)
            if plan.status != "pending" or outcome is None:
                continue
            if outcome.error is not None and outcome.transient:
                raise RuntimeError(f"SIMBA: the rule request of step {step.number} failed: {outcome.error}")
            advice = outcome.completions[0].get("module_advice") if outcome.completions else None
            if outcome.error is not None or not isinstance(advice, dict):
                log.warning(
                    "SIMBA step %d, bucket %d: no rule (%s)", step.number, plan.bucket, outcome.error or "no advice"
                )
                plan.status, plan.request = "failed", None
                continue
            plan.instructions = append_advice(plan.instructions, advice)
            plan.status, plan.applied, plan.request = "ready", True, None

    def _evaluated(self, state: SimbaState, evaluations: dict[tuple[int, str], EvaluateOutcome]) -> None:
        """Add every new candidate to the pool with its mini-batch scores; the best is the step's winner."""
        step = state.step
        assert step is not None
        ready = [plan for plan in step.plans if plan.status == "ready"]
        added = []
        for plan in ready:
            number = len(state.programs)
            outcome = evaluations[(number, "train")]
            by_index = dict(zip(outcome.indices, outcome.scores, strict=True))
            program = Program(
                number=number,
                instructions=plan.instructions,
                demos=plan.demos,
                parent=plan.source,
                step=step.number,
                strategy=plan.strategy,
                applied=plan.applied,
                dropped_demos=plan.dropped_demos,
                scores=[by_index[index] for index in step.batch],
            )
            state.programs.append(program)
            added.append(program)
            state.trials.append(
                Trial.of(number, "minibatch", {"step": step.number, "program": number, "parent": plan.source}, outcome)
            )
        self._end_step(state, added)

    def _end_step(self, state: SimbaState, added: list[Program]) -> None:
        step = state.step
        assert step is not None and step.baseline_score is not None
        means = [program.mean for program in added]
        winner = added[means.index(max(means))].number if added else None
        if winner is not None:
            state.winners.append(winner)
            state.best_score = round(100.0 * max(state.programs[n].mean for n in state.winners), 4)
        state.history.append(
            StepRecord(
                number=step.number,
                batch=step.batch,
                baseline_score=step.baseline_score,
                candidates=[program.number for program in added],
                scores=means,
                winner=winner,
            )
        )
        log.info("SIMBA step %d: candidate scores %s, winner %s", step.number, means, winner)
        state.step = None
        self._start_step(state)

    def _scored(self, state: SimbaState, evaluations: dict[tuple[int, str], EvaluateOutcome]) -> None:
        """The winners' scores on the selection set; the best (the earlier among equals) is the result."""
        state.final_scores = []
        for position, number in enumerate(state.final):
            outcome = evaluations[(len(state.programs) + position, state.final_split)]
            state.final_scores.append(outcome.mean)
            step = state.programs[number].step
            params = {"step": -1 if step is None else step, "program": number}
            state.trials.append(Trial.of(len(state.programs) + position, "final", params, outcome))
        best = state.final[state.final_scores.index(max(state.final_scores))]
        state.result = program_state(state.program, state.programs[best])
        state.best_score = round(100.0 * max(state.final_scores), 4)
        state.phase, state.done = "done", True

    # -- starting steps --------------------------------------------------------------------------------------

    def _start_step(self, state: SimbaState) -> None:
        """The next step's mini-batch (the next slice of the shuffled trainset, reshuffled when it runs out)
        and, per sampling model and example, a pool program drawn by softmax over the top programs; or, after
        the last step, the winners to score at the end."""
        number = len(state.history)
        if number >= self.max_steps:
            state.final = [state.winners[p] for p in final_positions(len(state.winners), self.num_candidates)]
            state.phase = "final"
            return
        if state.position + self.bsize > state.n_train:
            rng_for(state.seed, "shuffle", state.shuffles).shuffle(state.order)
            state.shuffles += 1
            state.position = 0
        batch = state.order[state.position : state.position + self.bsize]
        state.position += self.bsize
        rng = rng_for(state.seed, "sample", number)
        top = top_programs(state.programs, self.num_candidates)
        groups: dict[tuple[int, int], list[int]] = {}
        for model in range(self.num_candidates):
            for index in batch:
                choice = softmax_sample(rng, state.programs, top, self.temperature_for_sampling)
                groups.setdefault((model, choice), []).append(index)
        rollouts = [Rollout(model=m, program=p, indices=indices) for (m, p), indices in sorted(groups.items())]
        state.step = Step(number=number, batch=batch, rollouts=rollouts)
        state.phase = "sample"

    # -- the result ------------------------------------------------------------------------------------------

    def best_so_far(self, state: SimbaState) -> dict[str, Any] | None:
        """The step winner with the best mini-batch mean so far (the baseline before the first step)."""
        if state.result is not None or not state.winners:
            return state.result

        def mean(number: int) -> float:
            scores = state.programs[number].scores
            return sum(scores) / len(scores) if scores else 0.0

        best = max(state.winners, key=mean)  # max keeps the earlier of equals
        return program_state(state.program, state.programs[best])

    def finish(self, student: Module, state: SimbaState) -> Module:
        """The best program, with DSPy's ``candidate_programs`` and ``trial_logs`` (see result.py)."""
        compiled = super().finish(student, state)
        compiled.candidate_programs = candidate_programs(student, state)
        compiled.trial_logs = trial_logs(state)
        return compiled
