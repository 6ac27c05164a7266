"""StructuralOptimizer: the ask/tell machine that edits a program's graph (see the package docstring)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import NonNegativeFloat, NonNegativeInt, PositiveInt

from ...graph import (
    AddReasoning,
    Fuse,
    GraphError,
    GraphProgram,
    PredictNode,
    ProgramGraph,
    Split,
    StepNode,
    apply_edit,
    legal_fuses,
    split_from_proposal,
)
from ...graph.ir import REASONING
from ...modules.module import Module
from ...primitives import Example
from ..base import (
    BootstrapOutcome,
    BootstrapWork,
    EvaluateOutcome,
    EvaluateWork,
    GenerateOutcome,
    GenerateWork,
    GraphOutcome,
    GraphWork,
    Optimizer,
    TraceOutcome,
    TraceWork,
    WorkKey,
    base_fields,
    merge_evaluations,
    rng_for,
    with_live_lms,
)
from .planner import NO_FAILURES, failure_notes, ranked, ranking_inputs
from .rebootstrap import bootstrapped_demos, new_nodes, with_node_demos
from .state import Candidate, Evaluation, SplitProposal, SplitRequest, StructuralState, Trial, TrialKind

log = logging.getLogger(__name__)

SPLIT = "split"  # the step of a split question; its number is the request's
SPLIT_SIGNATURE = "propose_split"  # the key of ProposeSplit in PROPOSAL_SIGNATURES
RANK = "rank"  # the step of a ranking question; its number is the search step's
RANK_SIGNATURE = "rank_edits"  # the key of RankEdits


def graph_program_state(graph: ProgramGraph) -> dict[str, Any]:
    """The program state of ``graph`` run as a GraphProgram (the graph in its metadata, LMs as its nodes')."""
    return GraphProgram(graph).dump_state()


def node_key(node: PredictNode) -> str:
    """What a split proposal for ``node`` depends on: its name and signature (not its wiring or demos)."""
    blob = json.dumps([node.name, node.signature.model_dump(mode="json")], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class StructuralOptimizer(Optimizer):
    """``StructuralOptimizer(metric, prompt_model=..., max_steps=3, minibatch_size=8, ...)``.

    ``fuse_tolerance`` and ``min_gain`` are in score points (0-100). ``prompt_model`` proposes Splits (the
    runner's prompt model when None); ``propose_splits=False`` and ``add_reasoning=False`` leave those edits
    out. ``trace_examples`` training examples are traced to draw the student's graph.

    The planner (planner.py): before asking for splits, the current graph runs traced on
    ``diagnose_examples`` seeded training examples, and each split question shows that node's calls on the
    runs that fell short (0: no tracing, the questions say 'none'). With ``max_children``, a step with more
    children than that has the prompt model rank them and scores only the first ``max_children``; the rest
    are kept in the state as ``pruned``.

    ``rebootstrap=True``: when a Fuse or Split becomes the current graph, its new nodes get demos from its
    own successful runs on a seeded sample of training examples (``max_bootstrapped_demos`` per node, as
    BootstrapFewShot keeps them), kept only if the validation score does not drop. Off by default: it costs
    a bootstrap run and a validation run per accepted edit, and demos lengthen every prompt of the nodes
    that get them, which works against the cost a Fuse saves.
    """

    name = "Structural"

    def __init__(
        self,
        metric: Callable[..., Any] | None = None,
        *,
        prompt_model: Any = None,
        max_steps: PositiveInt = 3,
        minibatch_size: PositiveInt = 8,
        trace_examples: PositiveInt = 3,
        fuse_tolerance: NonNegativeFloat = 1.0,
        min_gain: NonNegativeFloat = 1.0,
        propose_splits: bool = True,
        add_reasoning: bool = True,
        rebootstrap: bool = False,
        max_bootstrapped_demos: PositiveInt = 4,
        diagnose_examples: NonNegativeInt = 4,
        max_children: PositiveInt | None = None,
        num_threads: PositiveInt | None = None,
        max_errors: NonNegativeInt | None = None,
        seed: int = 0,
    ) -> None:
        self.metric = metric
        self.prompt_model = prompt_model
        self.max_steps = max_steps
        self.minibatch_size = minibatch_size
        self.trace_examples = trace_examples
        self.fuse_tolerance = fuse_tolerance
        self.min_gain = min_gain
        self.propose_splits = propose_splits
        self.add_reasoning = add_reasoning
        self.rebootstrap = rebootstrap
        self.max_bootstrapped_demos = max_bootstrapped_demos
        self.diagnose_examples = diagnose_examples
        self.max_children = max_children
        self.num_threads = num_threads
        self.max_errors = max_errors
        self.seed = seed

    # -- init --------------------------------------------------------------------------------------------------
    def init_state(
        self, program: Module, trainset: Sequence[Example], valset: Sequence[Example] | None
    ) -> StructuralState:
        if not trainset:
            raise ValueError(f"{self.name} needs a non-empty trainset (its examples are traced and minibatched)")
        if valset is not None and not valset:
            raise ValueError(f"{self.name} needs a non-empty valset (or none: the trainset then validates)")
        fields = base_fields(self.name, self.seed, program, trainset, valset)
        if not fields["predictor_names"]:
            raise ValueError(f"{self.name} needs a program with at least one predictor")
        n_train = len(trainset)
        traced = rng_for(self.seed, "trace").sample(range(n_train), min(self.trace_examples, n_train))
        state = StructuralState(
            **fields,
            student=program.dump_state(),
            trace_indices=sorted(traced),
            val_split="val" if valset is not None else "train",
            val_indices=list(range(len(valset) if valset is not None else n_train)),
        )
        if isinstance(program, GraphProgram):  # already a graph: nothing to trace
            return self._baseline(state, program.to_graph())
        return state

    def planned_trials(self, state: StructuralState) -> int | None:
        """Unknown: how many children each step has depends on the graph the previous step chose."""
        return None

    # -- ask ---------------------------------------------------------------------------------------------------
    def ask(self, state: StructuralState) -> list[Any]:
        if state.done:
            return []
        if state.phase == "trace":
            return [GraphWork(program=state.student, indices=state.trace_indices)]
        if state.phase == "diagnose":
            current = state.candidates[self._current(state)]
            return [TraceWork(candidate=current.number, program=current.program, indices=state.diagnosis)]
        if state.phase == "propose":
            graph = state.candidates[self._current(state)].graph
            return [self._split_question(graph, request, state.failures) for request in state.requests]
        if state.phase == "rank":
            graph = state.candidates[self._current(state)].graph
            children = [state.candidates[number] for number in state.children]
            return [
                GenerateWork(
                    key=WorkKey(step=RANK, number=state.step),
                    signature=RANK_SIGNATURE,
                    inputs=ranking_inputs(graph, state.failures, children),
                )
            ]
        if state.phase == "rebootstrap":
            teacher = state.candidates[self._current(state)].program
            return [BootstrapWork(teacher=teacher, indices=state.bootstrap)]
        return [
            EvaluateWork(
                candidate=e.trial, program=state.candidates[e.candidate].program, split=e.split, indices=e.indices
            )
            for e in state.pending
        ]

    @staticmethod
    def _split_question(graph: ProgramGraph, request: SplitRequest, failures: dict[str, str]) -> GenerateWork:
        node = graph.node(request.node)
        assert isinstance(node, PredictNode)
        return GenerateWork(
            key=WorkKey(step=SPLIT, number=request.number),
            signature=SPLIT_SIGNATURE,
            inputs={
                "step_signature": node.signature.text,
                "step_instructions": node.signature.instructions,
                "failures": failures.get(node.name, NO_FAILURES),
            },
        )

    # -- tell --------------------------------------------------------------------------------------------------
    def tell(self, state: StructuralState, results: list[Any]) -> StructuralState:
        state = state.model_copy(deep=True)
        if state.done:
            return state
        if state.phase == "trace":
            outcome = next((r for r in results if isinstance(r, GraphOutcome)), None)
            if outcome is None:
                raise ValueError(f"{self.name}: tell() got no GraphOutcome for the trace step")
            return self._baseline(state, self._traced_graph(outcome))
        if state.phase == "diagnose":
            return self._take_diagnosis(state, [r for r in results if isinstance(r, TraceOutcome)])
        if state.phase == "propose":
            self._take_proposals(state, [r for r in results if isinstance(r, GenerateOutcome)])
            return self._branch(state)
        if state.phase == "rank":
            return self._take_ranking(state, [r for r in results if isinstance(r, GenerateOutcome)])
        if state.phase == "rebootstrap":
            return self._take_demos(state, [r for r in results if isinstance(r, BootstrapOutcome)])
        evaluated = self._record(state, results)
        if state.phase == "baseline":
            baseline = state.candidates[0]
            self._set_val(baseline, *evaluated[0])
            baseline.status, baseline.reason = "chosen", "the program as given"
            state.current, state.best_score = 0, baseline.val_score
            return self._next_step(state)
        if state.phase == "minibatch":
            return self._screen(state, evaluated)
        if state.phase == "reconfirm":
            return self._keep_demos(state, evaluated)
        return self._decide(state, evaluated)

    def _traced_graph(self, outcome: GraphOutcome) -> ProgramGraph:
        if outcome.error is not None:
            if outcome.transient:
                raise RuntimeError(f"{self.name}: tracing the program failed: {outcome.error} (resume to retry)")
            raise GraphError(f"{self.name}: the program cannot be drawn as a graph: {outcome.error}")
        assert outcome.graph is not None
        graph = ProgramGraph.model_validate(outcome.graph)
        opaque = [n.name for n in graph.nodes if isinstance(n, StepNode) and n.function is None]
        if opaque:
            raise GraphError(
                f"{self.name}: the program's graph cannot run on its own: the values of step nodes {opaque} are "
                "made by plain Python the trace could not name; mark the module-level function that makes each "
                "with @dsr_core.graph.step and run again"
            )
        return graph

    def _baseline(self, state: StructuralState, graph: ProgramGraph) -> StructuralState:
        state.candidates = [
            Candidate(
                number=0,
                step=0,
                graph_hash=graph.hash,
                parent_hash=graph.parent,
                lm_calls_per_run=graph.lm_calls_per_run,
                program=graph_program_state(graph),
                status="baseline",
            )
        ]
        state.pending = [Evaluation(trial=0, candidate=0, split=state.val_split, indices=state.val_indices)]
        state.phase = "baseline"
        return state

    def _record(self, state: StructuralState, results: list[Any]) -> dict[int, tuple[float, EvaluateOutcome]]:
        """The score (0-100) and outcome of every pending evaluation, by candidate; each becomes a trial."""
        merged = merge_evaluations(results)
        kind: TrialKind = (
            "baseline" if state.phase == "baseline" else "minibatch" if state.phase == "minibatch" else "val"
        )
        evaluated = {}
        for e in state.pending:
            outcome = merged.get((e.trial, e.split))
            if outcome is None:
                raise ValueError(f"{self.name}: tell() got no evaluation of trial {e.trial} ({e.split})")
            trial = Trial.of(e.trial, kind, {"candidate": e.candidate, "step": state.step}, outcome)
            evaluated[e.candidate] = (trial.score, outcome)
            state.trials.append(trial)
        state.pending = []
        return evaluated

    @staticmethod
    def _set_val(candidate: Candidate, score: float, outcome: EvaluateOutcome) -> None:
        """The validation score and the measured cost per example (the graph's count when not measured)."""
        n = max(len(outcome.scores), 1)
        candidate.val_score = score
        candidate.lm_calls = round(outcome.lm_calls / n, 4) if outcome.lm_calls else float(candidate.lm_calls_per_run)
        tokens = outcome.prompt_tokens + outcome.completion_tokens
        candidate.tokens = round(tokens / n, 4) if tokens else None

    # -- a search step ---------------------------------------------------------------------------------------
    def _next_step(self, state: StructuralState) -> StructuralState:
        """Start the next step from the current graph: ask for split proposals first when there are new
        nodes to ask about, else enumerate the children."""
        if state.step >= self.max_steps:
            return self._finish(state)
        state.step += 1
        state.children, state.minibatch, state.failures = [], [], {}
        if self.propose_splits:
            graph = state.candidates[self._current(state)].graph
            new = [node for node in graph.predict_nodes() if node_key(node) not in state.proposals]
            state.requests = [SplitRequest(number=i, node=node.name, key=node_key(node)) for i, node in enumerate(new)]
        if self.diagnose_examples and (state.requests or self.max_children is not None):
            size = min(self.diagnose_examples, state.n_train)
            state.diagnosis = sorted(rng_for(self.seed, "diagnose", state.step).sample(range(state.n_train), size))
            state.phase = "diagnose"
            return state
        return self._propose_or_branch(state)

    def _propose_or_branch(self, state: StructuralState) -> StructuralState:
        """The split questions when there are any to ask, else the step's children."""
        if state.requests:
            state.phase = "propose"
            return state
        return self._branch(state)

    def _take_diagnosis(self, state: StructuralState, outcomes: list[TraceOutcome]) -> StructuralState:
        """The failure notes of the current graph's traced runs; then the split questions (or the children)."""
        current = self._current(state)
        runs = [o for o in outcomes if o.candidate == current]
        if {o.index for o in runs} != set(state.diagnosis):
            raise ValueError(
                f"{self.name}: tell() got traces of {sorted(o.index for o in runs)}, not {state.diagnosis}"
            )
        transient = [o for o in runs if o.transient]
        if transient:
            raise RuntimeError(
                f"{self.name}: tracing the current graph failed on {len(transient)} example(s): "
                f"{transient[0].error} (resume to retry)"
            )
        state.failures = failure_notes(state.candidates[current].graph, runs)
        state.diagnosis = []
        return self._propose_or_branch(state)

    def _take_proposals(self, state: StructuralState, outcomes: list[GenerateOutcome]) -> None:
        by_number = {o.key.number: o for o in outcomes if o.key.step == SPLIT}
        for request in state.requests:
            outcome = by_number.get(request.number)
            if outcome is None:
                raise ValueError(f"{self.name}: tell() got no answer to split question {request.number}")
            if outcome.error is not None:
                if outcome.transient:
                    raise RuntimeError(
                        f"{self.name}: the prompt model failed on the split of {request.node!r}: {outcome.error}"
                    )
                log.info("no split proposal for node %r: %s", request.node, outcome.error)
            state.proposals[request.key] = [
                SplitProposal(
                    node=request.node,
                    sub_signatures=[str(s) for s in c["sub_signatures"]],
                    sub_instructions=[str(s) for s in c.get("sub_instructions") or []],
                )
                for c in outcome.completions
                if isinstance(c.get("sub_signatures"), list)
            ]
        state.requests = []

    def _edits(self, state: StructuralState, graph: ProgramGraph) -> list[Fuse | Split | AddReasoning]:
        """Every candidate edit of ``graph``: legal Fuses, the proposed Splits that apply, AddReasoning."""
        edits: list[Fuse | Split | AddReasoning] = list(legal_fuses(graph))
        for node in graph.predict_nodes():
            for proposal in state.proposals.get(node_key(node), []):
                try:
                    edits.append(
                        split_from_proposal(graph, node.name, proposal.sub_signatures, proposal.sub_instructions)
                    )
                except GraphError as exc:
                    log.info("split proposal for %r does not apply: %s", node.name, exc)
        if self.add_reasoning:
            for node in graph.predict_nodes():
                names = {f.name for f in (*node.signature.inputs, *node.signature.outputs)}
                if REASONING.name not in names:
                    edits.append(AddReasoning(node=node.name))
        return edits

    def _branch(self, state: StructuralState) -> StructuralState:
        """Make the step's children (new graphs only) and score them and their parent on one minibatch."""
        parent = state.candidates[self._current(state)]
        graph = parent.graph
        seen = {c.graph_hash for c in state.candidates}
        for edit in self._edits(state, graph):
            try:
                child = apply_edit(graph, edit)
                program = graph_program_state(child)
            except GraphError as exc:
                log.info("%r does not give a runnable graph: %s", edit, exc)
                continue
            if child.hash in seen:
                continue
            seen.add(child.hash)
            state.children.append(len(state.candidates))
            state.candidates.append(
                Candidate(
                    number=len(state.candidates),
                    step=state.step,
                    parent=parent.number,
                    graph_hash=child.hash,
                    parent_hash=graph.hash,
                    edit=edit,
                    lm_calls_per_run=child.lm_calls_per_run,
                    program=program,
                )
            )
        if not state.children:
            return self._finish(state)
        if self.max_children is not None and len(state.children) > self.max_children:
            state.phase = "rank"
            return state
        return self._start_minibatch(state)

    def _take_ranking(self, state: StructuralState, outcomes: list[GenerateOutcome]) -> StructuralState:
        """The first ``max_children`` children in the prompt model's order; the others are pruned."""
        assert self.max_children is not None
        outcome = next((o for o in outcomes if o.key.step == RANK and o.key.number == state.step), None)
        if outcome is None:
            raise ValueError(f"{self.name}: tell() got no answer to the ranking question of step {state.step}")
        if outcome.error is not None and outcome.transient:
            raise RuntimeError(f"{self.name}: the prompt model failed to rank step {state.step}: {outcome.error}")
        order, used = ranked(state.children, outcome.completions)
        how = "by the prompt model" if used else "in the order they were made (the prompt model gave no ranking)"
        for position, number in enumerate(order, start=1):
            if position > self.max_children:
                child = state.candidates[number]
                child.status = "pruned"
                child.reason = f"ranked {position} of {len(order)} {how}; max_children={self.max_children}"
        state.children = order[: self.max_children]
        return self._start_minibatch(state)

    def _start_minibatch(self, state: StructuralState) -> StructuralState:
        """The parent and the step's children on one seeded sample of training examples."""
        parent = state.candidates[self._current(state)]
        size = min(self.minibatch_size, state.n_train)
        state.minibatch = sorted(rng_for(self.seed, "minibatch", state.step).sample(range(state.n_train), size))
        start = state.next_trial
        state.pending = [
            Evaluation(trial=start + i, candidate=number, split="train", indices=state.minibatch)
            for i, number in enumerate([parent.number, *state.children])
        ]
        state.phase = "minibatch"
        return state

    def _screen(self, state: StructuralState, evaluated: dict[int, tuple[float, EvaluateOutcome]]) -> StructuralState:
        """Keep the children that look promising on the minibatch: a Fuse no worse than the parent minus the
        tolerance, any other edit strictly better; confirm those on the validation set."""
        parent_score = evaluated[self._current(state)][0]
        promising = []
        for number in state.children:
            child = state.candidates[number]
            child.minibatch_score, child.parent_minibatch_score = evaluated[number][0], parent_score
            if isinstance(child.edit, Fuse):
                keep = child.minibatch_score >= parent_score - self.fuse_tolerance
                rule = f">= parent {parent_score:g} - {self.fuse_tolerance:g}"
            else:
                keep = child.minibatch_score > parent_score
                rule = f"> parent {parent_score:g}"
            if keep:
                promising.append(number)
            else:
                child.status, child.reason = "screened_out", f"minibatch {child.minibatch_score:g} is not {rule}"
        if not promising:
            return self._finish(state)
        start = state.next_trial
        state.pending = [
            Evaluation(trial=start + i, candidate=number, split=state.val_split, indices=state.val_indices)
            for i, number in enumerate(promising)
        ]
        state.phase = "confirm"
        return state

    def _decide(self, state: StructuralState, evaluated: dict[int, tuple[float, EvaluateOutcome]]) -> StructuralState:
        """Apply the acceptance rules on the validation set; the best accepted child becomes current."""
        parent = state.candidates[self._current(state)]
        accepted = []
        for number, (score, outcome) in evaluated.items():
            child = state.candidates[number]
            self._set_val(child, score, outcome)
            ok, child.reason = self._acceptance(child, parent)
            child.status = "accepted" if ok else "rejected"
            if ok:
                accepted.append(child)
        if not accepted:
            return self._finish(state)
        best = max(accepted, key=lambda c: (c.val_score or 0.0, -(c.lm_calls or 0.0), -(c.tokens or 0.0)))
        best.status = "chosen"
        state.current, state.best_score = best.number, best.val_score
        if self.rebootstrap and isinstance(best.edit, Fuse | Split):
            return self._start_rebootstrap(state)
        return self._next_step(state)

    def _acceptance(self, child: Candidate, parent: Candidate) -> tuple[bool, str]:
        """A Fuse: score >= parent's - fuse_tolerance and fewer LM calls or tokens per example. A Split or
        AddReasoning: score > parent's + min_gain. Returns the verdict and why."""
        assert child.val_score is not None and parent.val_score is not None
        if isinstance(child.edit, Fuse):
            floor = parent.val_score - self.fuse_tolerance
            fewer_calls = (child.lm_calls or 0.0) < (parent.lm_calls or 0.0)
            fewer_tokens = child.tokens is not None and parent.tokens is not None and child.tokens < parent.tokens
            cost = (
                f"{child.lm_calls:g} vs {parent.lm_calls:g} LM calls, "
                f"{child.tokens if child.tokens is not None else '?'} vs "
                f"{parent.tokens if parent.tokens is not None else '?'} tokens per example"
            )
            if child.val_score < floor:
                return False, f"val {child.val_score:g} < parent {parent.val_score:g} - {self.fuse_tolerance:g}"
            if not (fewer_calls or fewer_tokens):
                return False, f"no cheaper: {cost}"
            return True, f"val {child.val_score:g} >= parent {parent.val_score:g} - {self.fuse_tolerance:g}; {cost}"
        target = parent.val_score + self.min_gain
        if child.val_score > target:
            return True, f"val {child.val_score:g} > parent {parent.val_score:g} + {self.min_gain:g}"
        return False, f"val {child.val_score:g} is not > parent {parent.val_score:g} + {self.min_gain:g}"

    # -- re-bootstrapping the demos of an accepted edit's new nodes ----------------------------------------------
    def _start_rebootstrap(self, state: StructuralState) -> StructuralState:
        """Run the chosen child as the teacher on a seeded sample of training examples (as many as
        BootstrapFewShot tries in one batch)."""
        size = min(state.n_train, max(2 * self.max_bootstrapped_demos, 8))
        state.bootstrap = rng_for(self.seed, "rebootstrap", state.step).sample(range(state.n_train), size)
        state.phase = "rebootstrap"
        return state

    def _take_demos(self, state: StructuralState, outcomes: list[BootstrapOutcome]) -> StructuralState:
        """The chosen child with its new nodes' demos from the successful runs, as a candidate of its own to
        confirm on the validation set; nothing to confirm when no run gave a demo or the demos change nothing."""
        child = state.candidates[self._current(state)]
        assert child.parent is not None  # a Fuse or Split child
        nodes = new_nodes(child.graph, state.candidates[child.parent].graph)
        try:
            demos, used = bootstrapped_demos(outcomes, state.bootstrap, nodes, self.max_bootstrapped_demos)
        except ValueError as exc:
            raise ValueError(f"{self.name}: {exc}") from None
        except RuntimeError as exc:
            raise RuntimeError(f"{self.name}: {exc}") from None
        state.bootstrap = []
        graph = with_node_demos(child.graph, demos)
        if not demos or graph.hash in {c.graph_hash for c in state.candidates}:
            why = "no successful training run" if not demos else "the same demos"
            child.reason += f"; re-bootstrapping {nodes} gave {why}"
            return self._next_step(state)
        number = len(state.candidates)
        state.candidates.append(
            Candidate(
                number=number,
                step=state.step,
                parent=child.number,
                graph_hash=graph.hash,
                parent_hash=child.graph_hash,
                lm_calls_per_run=graph.lm_calls_per_run,
                program=graph_program_state(graph),
                rebootstrapped=sorted(demos, key=nodes.index),
                demo_examples=used,
            )
        )
        state.pending = [
            Evaluation(trial=state.next_trial, candidate=number, split=state.val_split, indices=state.val_indices)
        ]
        state.phase = "reconfirm"
        return state

    def _keep_demos(
        self, state: StructuralState, evaluated: dict[int, tuple[float, EvaluateOutcome]]
    ) -> StructuralState:
        """The re-bootstrapped child becomes current when it scores no worse than the child without its demos."""
        child = state.candidates[self._current(state)]
        ((number, (score, outcome)),) = evaluated.items()
        candidate = state.candidates[number]
        self._set_val(candidate, score, outcome)
        assert candidate.val_score is not None and child.val_score is not None
        if candidate.val_score >= child.val_score:
            candidate.status = "chosen"
            candidate.reason = f"val {candidate.val_score:g} >= {child.val_score:g} without the re-bootstrapped demos"
            child.status = "accepted"
            child.reason += f"; its re-bootstrapped demos (candidate {number}) were kept"
            state.current, state.best_score = number, candidate.val_score
        else:
            candidate.status = "rejected"
            candidate.reason = f"val {candidate.val_score:g} < {child.val_score:g} without the re-bootstrapped demos"
        return self._next_step(state)

    def _finish(self, state: StructuralState) -> StructuralState:
        current = state.candidates[self._current(state)]
        state.phase, state.done = "done", True
        state.result, state.best_score = current.program, current.val_score
        state.requests, state.pending, state.bootstrap, state.diagnosis, state.failures = [], [], [], [], {}
        return state

    def best_so_far(self, state: StructuralState) -> dict[str, Any] | None:
        """The current graph (the best accepted so far), once the baseline is scored."""
        if state.result is not None or state.current is None:
            return state.result
        return state.candidates[state.current].program

    @staticmethod
    def _current(state: StructuralState) -> int:
        assert state.current is not None  # set once the baseline is scored
        return state.current

    # -- the compiled program ----------------------------------------------------------------------------------
    def finish(self, student: Module, state: StructuralState) -> Module:
        """The best graph as a GraphProgram, its predictors on the student's live LMs, marked compiled."""
        assert state.result is not None
        compiled = with_live_lms(GraphProgram.from_program_state(state.result), [student])
        compiled._compiled = True
        return compiled
