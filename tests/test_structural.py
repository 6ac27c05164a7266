"""StructuralOptimizer: Fuse, Split and AddReasoning searched as an ask/tell machine, on the test server.

The responder models a small world by field name, as a capable model would: every output field follows its
rule from the inputs and the outputs before it. Two failure modes make structure matter: a call asked for
more than ``max_outputs`` fields loses track of the last one, and a call that must produce ``keywords`` and
the ``answer`` built from them together gets the answer wrong on the questions ``hard`` picks. A world
``misled_by_demos`` gets every answer wrong in a call that shows it demos (to test re-bootstrapping).
"""

from __future__ import annotations

import json

import pytest

import dsr_core as dsr
from dsr_core._async import run_sync
from dsr_core.graph import AddReasoning, Fuse, GraphError, GraphProgram, Split, step
from dsr_core.optimizers.base import EvaluateWork, GraphWork, LocalRunner, merge_evaluations
from dsr_core.optimizers.structural import StructuralOptimizer, StructuralState, describe_edit, quality_cost_table

PROPOSED_SPLIT = (["1. question -> keywords", "2. question, keywords -> answer"], ["List the keywords.", "Answer."])


def _keywords(values):
    return (values.get("query") or values["question"].upper()).replace(" ", ",")


RULES = {
    "query": lambda v: v["question"].upper(),
    "keywords": _keywords,
    "answer": lambda v: f"{v['question']}:{v.get('keywords') or _keywords(v)}",
    "reasoning": lambda v: "thinking it through",
}


def world(*, max_outputs=3, hard=lambda question: False, misled_by_demos=False):
    """The responder: the rules, the failure modes, and a sensible answer to a split proposal."""

    def respond(request):
        if "sub_signatures" in request.output_fields:
            return request.reply(sub_signatures=PROPOSED_SPLIT[0], sub_instructions=PROPOSED_SPLIT[1])
        if "ranking" in request.output_fields:  # the planner's ranking: the second edit first
            return request.reply(ranking=[2, 1])
        values = dict(request.inputs)
        produced = {}
        for name in request.output_fields:
            produced[name] = values[name] = RULES[name](values)
        asked = [name for name in request.output_fields if name != "reasoning"]
        if len(asked) > max_outputs:
            produced[asked[-1]] = "lost track"
        if {"keywords", "answer"} <= set(asked) and hard(values["question"]):
            produced["answer"] = "confused"
        if misled_by_demos and request.demos and "answer" in produced:
            produced["answer"] = "copied from a demo"
        return request.reply(**produced)

    return respond


@pytest.fixture
def lm(server):
    """An uncached LM on the test server, so every run's requests reach it and can be counted."""
    server.responder = world()
    return dsr.LM("test-model", api_base=server.url, cache=False, retry_backoff=(0.01, 0.05), timeout=5.0)


@pytest.fixture(autouse=True)
def configured(lm):
    dsr.configure(lm=lm)


def labeled(*questions):
    return [
        dsr.Example(question=q, answer=f"{q}:{q.upper().replace(' ', ',')}").with_inputs("question") for q in questions
    ]


TRAIN = labeled("what is rain", "why is the sky blue", "how do birds fly", "where is lima")
VAL = labeled("who wrote faust", "what is snow", "when is noon", "how do fish swim")
HALF_HARD_VAL = labeled("who wrote faust?", "what is snow", "when is noon?", "how do fish swim")


def exact(example, prediction, trace=None):
    return prediction.answer == example.answer


def ends_with_question_mark(question):
    return question.endswith("?")


# -- programs ----------------------------------------------------------------------------------------------------------


class ThreeSteps(dsr.Module):
    """rewrite -> expand -> answer: adjacent steps a capable model can do in one call."""

    def __init__(self):
        self.rewrite = dsr.Predict("question -> query")
        self.expand = dsr.Predict("query -> keywords")
        self.answer = dsr.Predict("question, keywords -> answer")

    def forward(self, question):
        query = self.rewrite(question=question).query
        keywords = self.expand(query=query).keywords
        return dsr.Prediction(answer=self.answer(question=question, keywords=keywords).answer)


class Overloaded(dsr.Module):
    """One call asked for the keywords and the answer built from them."""

    def __init__(self):
        self.solve = dsr.Predict("question -> keywords, answer")

    async def aforward(self, question):
        return await self.solve.acall(question=question)


@step(output="passages")
def retrieve(query: str) -> list[str]:
    return [f"doc about {query}"]


class RetrieveAnswer(dsr.Module):
    """rewrite -> retrieve (a marked Python step) -> answer: no two Predict nodes are adjacent."""

    def __init__(self):
        self.rewrite = dsr.Predict("question -> query")
        self.answer = dsr.Predict("question, passages: list[str] -> answer")

    async def aforward(self, question):
        query = (await self.rewrite.acall(question=question)).query
        return await self.answer.acall(question=question, passages=retrieve(query))


class UnmarkedContext(dsr.Module):
    """Plain Python between the calls that is not marked as a step."""

    def __init__(self):
        self.rewrite = dsr.Predict("question -> query")
        self.answer = dsr.Predict("question, context: list[str] -> answer")

    async def aforward(self, question):
        query = (await self.rewrite.acall(question=question)).query
        return await self.answer.acall(question=question, context=[query])


def outputs(prediction):
    return dict(prediction.items())


def requests_per_example(server, program, examples):
    """Server requests per example when ``program`` runs on ``examples`` (each run counted)."""
    counts = []
    for example in examples:
        server.reset_stats()
        program(**example.inputs())
        counts.append(server.stats.requests)
    return counts


def drive(optimizer, student, trainset, valset, *, state=None, checkpoints=None):
    """Run the ask/tell machine in process, from ``state`` if given; every state after a tell is dumped to
    JSON and loaded back (and kept in ``checkpoints``), as the optimize flow checkpoints it."""
    runner = LocalRunner(student, trainset, valset, exact, prompt_lm=optimizer.prompt_model)
    state = state or optimizer.init_state(student, trainset, valset)
    while not state.done:
        state = optimizer.tell(state, run_sync(runner.run(optimizer.ask(state))))
        text = state.model_dump_json()
        if checkpoints is not None:
            checkpoints.append(text)
        state = StructuralState.model_validate_json(text)
    return state


# -- fusing --------------------------------------------------------------------------------------------------------------


def test_fuse_cuts_lm_calls_from_three_to_two_at_equal_score(server):
    server.responder = world(max_outputs=2)
    student = ThreeSteps()
    optimizer = StructuralOptimizer(metric=exact, minibatch_size=4)
    compiled = optimizer.compile(student, TRAIN, VAL)

    assert isinstance(compiled, GraphProgram) and compiled.graph.lm_calls_per_run == 2
    assert [n.signature.text for n in compiled.graph.predict_nodes()] == [
        "question -> query",
        "query, question -> keywords, answer",
    ]
    assert requests_per_example(server, student, VAL) == [3, 3, 3, 3]
    assert requests_per_example(server, compiled, VAL) == [2, 2, 2, 2]
    assert dsr.Evaluate(VAL, exact)(student).score == dsr.Evaluate(VAL, exact)(compiled).score == 100.0
    for example in VAL:
        assert outputs(compiled(**example.inputs())) == outputs(student(**example.inputs()))


def test_the_state_keeps_every_candidate_as_a_quality_cost_table(server):
    server.responder = world(max_outputs=2)
    optimizer = StructuralOptimizer(metric=exact, minibatch_size=4)
    state = drive(optimizer, ThreeSteps(), TRAIN, VAL)

    rows = quality_cost_table(state)
    baseline, *children = rows
    assert (baseline.edit, baseline.val_score, baseline.lm_calls, baseline.status) == ("baseline", 100.0, 3.0, "chosen")
    chosen = [row for row in rows if row.status == "chosen"]
    # both fuses are as good at 2 calls; the one with fewer tokens per example wins
    assert [row.edit for row in chosen] == ["baseline", "Fuse(expand, answer)"]
    fused = chosen[1]
    assert (fused.val_score, fused.lm_calls, fused.parent, fused.parent_hash) == (
        100.0,
        2.0,
        0,
        baseline.graph_hash,
    )
    assert fused.tokens is not None and baseline.tokens is not None and fused.tokens < baseline.tokens
    other = next(row for row in rows if row.edit == "Fuse(rewrite, expand)")
    assert other.status == "accepted" and other.val_score == 100.0 and other.tokens > fused.tokens
    # step 2: one call for all three fields loses the answer; AddReasoning and a Split gain nothing
    full = next(row for row in rows if row.edit == "Fuse(rewrite, expand+answer)")
    assert (full.minibatch_score, full.status) == (0.0, "screened_out")
    assert {row.status for row in rows if row.edit.startswith("AddReasoning")} == {"screened_out"}
    assert fused.pareto and not baseline.pareto  # as good for fewer calls
    assert state.best_score == 100.0 and state.step == 2
    assert state.result == state.candidates[fused.candidate].program
    assert [t.kind for t in state.recorded_trials[:2]] == ["baseline", "minibatch"]
    assert len({t.number for t in state.recorded_trials}) == len(state.recorded_trials)


def test_a_fuse_that_loses_more_than_the_tolerance_is_rejected(server):
    server.responder = world(hard=ends_with_question_mark)  # fine on the minibatch, half wrong on the valset
    optimizer = StructuralOptimizer(metric=exact, minibatch_size=4, propose_splits=False, add_reasoning=False)
    state = drive(optimizer, ThreeSteps(), TRAIN, HALF_HARD_VAL)

    lost = next(c for c in state.candidates if c.edit == Fuse(a="expand", b="answer"))
    assert (lost.minibatch_score, lost.val_score, lost.status) == (100.0, 50.0, "rejected")
    assert lost.reason == "val 50 < parent 100 - 1"
    kept = next(c for c in state.candidates if c.edit == Fuse(a="rewrite", b="expand"))
    assert kept.status == "chosen" and state.candidates[state.current].number == kept.number
    assert kept.graph.lm_calls_per_run == 2


def test_a_fuse_within_a_wide_tolerance_is_accepted_and_the_better_fuse_wins(server):
    server.responder = world(hard=ends_with_question_mark)
    optimizer = StructuralOptimizer(
        metric=exact, minibatch_size=4, fuse_tolerance=60.0, propose_splits=False, add_reasoning=False, max_steps=1
    )
    state = drive(optimizer, ThreeSteps(), TRAIN, HALF_HARD_VAL)
    lost = next(c for c in state.candidates if c.edit == Fuse(a="expand", b="answer"))
    assert lost.status == "accepted" and lost.val_score == 50.0  # within a 60-point tolerance, and cheaper
    chosen = state.candidates[state.current]
    assert chosen.edit == Fuse(a="rewrite", b="expand")  # the better of the two accepted fuses


# -- splitting -------------------------------------------------------------------------------------------------------


def test_a_split_proposed_by_the_prompt_model_scores_higher_and_is_accepted(server):
    server.responder = world(hard=lambda question: True)
    prompt = dsr.LM("prompt-model", api_base=server.url, cache=False, retry_backoff=(0.01, 0.05), timeout=5.0)
    student = Overloaded()
    optimizer = StructuralOptimizer(metric=exact, prompt_model=prompt, minibatch_size=4)
    server.reset_stats()
    compiled = optimizer.compile(student, TRAIN, VAL)

    asked = [body for body in server.requests if body["model"] == "prompt-model"]
    assert "question -> keywords, answer" in asked[0]["messages"][-1]["content"]
    assert len(asked) == 3  # then once about each of the two new nodes
    assert [n.signature.text for n in compiled.graph.predict_nodes()] == [
        "question -> keywords",
        "question, keywords -> answer",
    ]
    assert dsr.Evaluate(VAL, exact)(student).score == 0.0
    assert dsr.Evaluate(VAL, exact)(compiled).score == 100.0
    assert requests_per_example(server, compiled, VAL) == [2, 2, 2, 2]


def test_a_split_without_a_real_gain_is_rejected(server):
    optimizer = StructuralOptimizer(metric=exact, minibatch_size=4, add_reasoning=False)
    state = drive(optimizer, Overloaded(), TRAIN, VAL)  # the model copes with one call: nothing to win
    (split,) = [c for c in state.candidates if isinstance(c.edit, Split)]
    assert (split.minibatch_score, split.status) == (100.0, "screened_out")
    assert state.current == 0 and state.result == state.candidates[0].program

    server.responder = world(hard=ends_with_question_mark)
    half_hard_train = labeled("what is rain?", "why is the sky blue", "how do birds fly?", "where is lima")
    optimizer = StructuralOptimizer(metric=exact, minibatch_size=4, add_reasoning=False, min_gain=60.0)
    state = drive(optimizer, Overloaded(), half_hard_train, HALF_HARD_VAL)
    (split,) = [c for c in state.candidates if isinstance(c.edit, Split)]
    assert (split.minibatch_score, split.val_score, state.candidates[0].val_score) == (100.0, 100.0, 50.0)
    assert split.status == "rejected" and split.reason == "val 100 is not > parent 50 + 60"


def test_the_split_question_shows_the_nodes_calls_on_the_runs_that_went_wrong(server):
    server.responder = world(hard=lambda question: question.startswith("wh"))
    prompt = dsr.LM("prompt-model", api_base=server.url, cache=False, retry_backoff=(0.01, 0.05), timeout=5.0)
    optimizer = StructuralOptimizer(metric=exact, prompt_model=prompt, minibatch_size=4, max_steps=1)
    drive(optimizer, Overloaded(), TRAIN, VAL)

    question = next(body for body in server.requests if body["model"] == "prompt-model")["messages"][-1]["content"]
    failures = question.split("[[ ## failures ## ]]")[1]
    # the traced runs of "what is rain", "why is the sky blue" and "where is lima" went wrong, "how do birds fly"
    # did not: each failing run with what the node was given, what it answered and what was expected
    assert failures.count("Example ") == 3 and "how do birds fly" not in failures
    assert "Example 1 (score 0; expected answer: what is rain:WHAT,IS,RAIN):" in failures
    assert "the step was given question: what is rain" in failures
    assert "and answered keywords: WHAT,IS,RAIN; answer: confused" in failures


def test_without_failures_or_with_diagnosis_off_the_question_says_none(server):
    prompt = dsr.LM("prompt-model", api_base=server.url, cache=False, retry_backoff=(0.01, 0.05), timeout=5.0)
    for diagnose_examples in (4, 0):
        server.reset_stats()
        optimizer = StructuralOptimizer(
            metric=exact, prompt_model=prompt, minibatch_size=4, max_steps=1, diagnose_examples=diagnose_examples
        )
        state = drive(optimizer, Overloaded(), TRAIN, VAL)
        question = next(b for b in server.requests if b["model"] == "prompt-model")["messages"][-1]["content"]
        assert "[[ ## failures ## ]]\nnone" in question
        assert state.failures == {}  # the notes belong to the step that made them


def test_max_children_has_the_prompt_model_rank_the_edits_and_prunes_the_rest(server):
    ranking = {"answer": [3, 1]}

    def respond(request):
        if "ranking" in request.output_fields:
            edits = request.inputs["edits"]
            assert edits.splitlines()[0] == "1. Fuse(rewrite, expand)"
            assert "[predict] rewrite: question -> query" in request.inputs["program"]
            return request.reply(ranking=ranking["answer"])
        return world()(request)

    server.responder = respond
    optimizer = StructuralOptimizer(metric=exact, minibatch_size=4, propose_splits=False, max_steps=1, max_children=2)
    state = drive(optimizer, ThreeSteps(), TRAIN, VAL)
    children = state.candidates[1:]
    edits = ["Fuse(rewrite, expand)", "Fuse(expand, answer)", "AddReasoning(rewrite)"]
    assert [describe_edit(c.edit) for c in children[:3]] == edits
    kept = [c for c in children if c.status != "pruned"]
    assert [describe_edit(c.edit) for c in kept] == ["Fuse(rewrite, expand)", "AddReasoning(rewrite)"]
    pruned = [c for c in children if c.status == "pruned"]
    assert len(pruned) == len(children) - 2 and all(c.minibatch_score is None for c in pruned)
    assert pruned[0].reason == f"ranked 3 of {len(children)} by the prompt model; max_children=2"
    minibatch = [t for t in state.recorded_trials if t.kind == "minibatch"]
    assert [t.params["candidate"] for t in minibatch] == [0, 3, 1]  # the parent, then the kept ones ranked

    ranking["answer"] = "not a ranking"
    state = drive(optimizer, ThreeSteps(), TRAIN, VAL)
    kept = [c for c in state.candidates[1:] if c.status != "pruned"]
    assert [describe_edit(c.edit) for c in kept] == edits[:2]  # the order they were made in
    assert "in the order they were made (the prompt model gave no ranking)" in state.candidates[-1].reason


def test_add_reasoning_is_an_edit_of_its_own():
    optimizer = StructuralOptimizer(metric=exact, minibatch_size=4, propose_splits=False, max_steps=1)
    state = drive(optimizer, Overloaded(), TRAIN, VAL)
    assert [c.edit for c in state.candidates] == [None, AddReasoning(node="solve")]
    assert state.candidates[1].status == "screened_out"


# -- re-bootstrapping the demos of an accepted edit ---------------------------------------------------------------------


def rebootstrapping(**options):
    return StructuralOptimizer(
        metric=exact,
        minibatch_size=4,
        max_steps=1,
        propose_splits=False,
        add_reasoning=False,
        rebootstrap=True,
        **options,
    )


def test_a_fused_node_gets_demos_from_its_successful_training_runs(server):
    lima = TRAIN[3].question
    server.responder = world(max_outputs=2, hard=lambda question: question == lima)  # the fused call fails there
    student = ThreeSteps()
    optimizer = rebootstrapping(fuse_tolerance=30.0)  # one failed minibatch example in four is tolerated
    state = drive(optimizer, student, TRAIN, VAL)

    child = next(c for c in state.candidates if c.edit == Fuse(a="expand", b="answer"))
    assert child.graph.node("expand+answer").demos == []  # nothing to merge from the student
    assert child.status == "accepted" and "re-bootstrapped demos (candidate" in child.reason
    (rebooted,) = [c for c in state.candidates if c.rebootstrapped]
    assert (rebooted.parent, rebooted.parent_hash, rebooted.edit) == (child.number, child.graph_hash, None)
    assert rebooted.rebootstrapped == ["expand+answer"] and rebooted.status == "chosen"
    assert state.current == rebooted.number and state.result == rebooted.program
    assert rebooted.graph.parent == child.graph_hash

    fused = rebooted.graph.node("expand+answer")
    assert fused.signature.text == "query, question -> keywords, answer"
    # every successful training run, in the seeded order, and never the one the fused call got wrong
    assert sorted(rebooted.demo_examples) == [0, 1, 2] and len(fused.demos) == 3
    questions = [TRAIN[i].question for i in rebooted.demo_examples]
    assert [demo["question"] for demo in fused.demos] == questions
    for demo, question in zip(fused.demos, questions, strict=True):
        assert set(demo) == {"augmented", "query", "question", "keywords", "answer"}
        query = question.upper()
        assert (demo["query"], demo["keywords"], demo["answer"]) == (
            query,
            query.replace(" ", ","),
            f"{question}:{query.replace(' ', ',')}",
        )
    assert rebooted.graph.node("rewrite") == child.graph.node("rewrite")  # other nodes keep their demos
    assert (rebooted.val_score, rebooted.lm_calls) == (100.0, 2.0) and rebooted.tokens > child.tokens

    rows = {row.candidate: row for row in quality_cost_table(state)}
    assert rows[rebooted.number].edit == "Rebootstrap(expand+answer)"
    assert rows[rebooted.number].rebootstrapped == ["expand+answer"] and rows[child.number].rebootstrapped == []
    assert [t.kind for t in state.recorded_trials][-1] == "val"

    compiled = optimizer.finish(student, state)
    assert [len(p.demos) for _, p in compiled.named_predictors()] == [0, 3]
    assert dsr.Evaluate(VAL, exact)(compiled).score == 100.0


def test_rebootstrapped_demos_that_lower_the_val_score_are_not_kept(server):
    server.responder = world(max_outputs=2, misled_by_demos=True)
    student = ThreeSteps()
    optimizer = rebootstrapping()
    state = drive(optimizer, student, TRAIN, VAL)

    child = next(c for c in state.candidates if c.edit == Fuse(a="expand", b="answer"))
    (rebooted,) = [c for c in state.candidates if c.rebootstrapped]
    assert len(rebooted.graph.node("expand+answer").demos) == 4  # the teacher had no demos to be misled by
    assert (rebooted.val_score, rebooted.status) == (0.0, "rejected")
    assert rebooted.reason == "val 0 < 100 without the re-bootstrapped demos"
    assert child.status == "chosen" and state.current == child.number
    assert state.result == child.program and state.best_score == 100.0
    compiled = optimizer.finish(student, state)
    assert all(p.demos == [] for p in compiled.predictors())
    assert dsr.Evaluate(VAL, exact)(compiled).score == 100.0


def test_an_accepted_split_gets_demos_for_each_of_its_parts(server):
    server.responder = world(hard=lambda question: True)
    optimizer = StructuralOptimizer(metric=exact, minibatch_size=4, max_steps=1, rebootstrap=True)
    state = drive(optimizer, Overloaded(), TRAIN, VAL)
    split = next(c for c in state.candidates if isinstance(c.edit, Split))
    assert split.status == "accepted"
    (rebooted,) = [c for c in state.candidates if c.rebootstrapped]
    assert rebooted.rebootstrapped == ["solve_1", "solve_2"] and rebooted.status == "chosen"
    first, second = rebooted.graph.predict_nodes()
    assert {frozenset(d) for d in first.demos} == {frozenset({"augmented", "question", "keywords"})}
    assert {frozenset(d) for d in second.demos} == {frozenset({"augmented", "question", "keywords", "answer"})}
    assert len(first.demos) == len(second.demos) == 4 and sorted(rebooted.demo_examples) == [0, 1, 2, 3]
    assert state.current == rebooted.number and state.result == rebooted.program


# -- state, resuming, results ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("rebootstrap", "max_children"), [(False, None), (True, None), (False, 2)])
def test_resuming_from_every_checkpoint_gives_the_same_final_state(server, rebootstrap, max_children):
    server.responder = world(max_outputs=2)
    settings = {"minibatch_size": 3, "seed": 7, "rebootstrap": rebootstrap, "max_children": max_children}
    optimizer = StructuralOptimizer(metric=exact, **settings)
    checkpoints: list[str] = []
    state = drive(optimizer, ThreeSteps(), TRAIN, VAL, checkpoints=checkpoints)
    final = state.model_dump_json()
    assert len(checkpoints) >= 6 and checkpoints[-1] == final
    phases = [StructuralState.model_validate_json(c).phase for c in checkpoints]
    assert ("reconfirm" in phases) == rebootstrap
    assert ("rank" in phases) == (max_children is not None) and "diagnose" in phases
    assert any(c.rebootstrapped for c in state.candidates) == rebootstrap
    for checkpoint in checkpoints[:-1]:
        resumed = drive(optimizer, ThreeSteps(), TRAIN, VAL, state=StructuralState.model_validate_json(checkpoint))
        assert resumed.model_dump_json() == final
    again = StructuralOptimizer(metric=exact, **settings)
    assert drive(again, ThreeSteps(), TRAIN, VAL).model_dump_json() == final  # deterministic for a seed


def test_the_result_saves_and_loads_with_load_program(tmp_path, server):
    server.responder = world(max_outputs=2)
    compiled = StructuralOptimizer(metric=exact, minibatch_size=4).compile(ThreeSteps(), TRAIN, VAL)
    path = tmp_path / "structural.json"
    compiled.save(path)
    assert json.loads(path.read_text())["metadata"]["program"] == "dsr_core.graph.interpreter:GraphProgram"
    loaded = dsr.load_program(str(path))
    assert isinstance(loaded, GraphProgram) and loaded.graph.hash == compiled.graph.hash
    for example in VAL:
        assert outputs(loaded(**example.inputs())) == outputs(compiled(**example.inputs()))
    assert requests_per_example(server, loaded, VAL) == [2, 2, 2, 2]


def test_when_no_edit_applies_the_result_gives_the_python_programs_outputs(server):
    student = RetrieveAnswer()
    optimizer = StructuralOptimizer(metric=exact, propose_splits=False, add_reasoning=False)
    state = optimizer.init_state(student, TRAIN, VAL)
    state = drive(optimizer, student, TRAIN, VAL, state=state)
    assert len(state.candidates) == 1 and state.step == 1 and state.done
    compiled = optimizer.finish(student, state)
    assert [n.name for n in compiled.graph.nodes] == ["rewrite", "retrieve", "answer"]
    for example in [*TRAIN, *VAL]:
        assert outputs(compiled(**example.inputs())) == outputs(student(**example.inputs()))


def test_a_graph_program_student_is_not_traced_again(server):
    graph_student = GraphProgram.from_program(ThreeSteps(), TRAIN)
    optimizer = StructuralOptimizer(metric=exact, max_steps=1, propose_splits=False, add_reasoning=False)
    state = optimizer.init_state(graph_student, TRAIN, VAL)
    assert state.phase == "baseline" and state.candidates[0].graph_hash == graph_student.graph.hash
    (work,) = optimizer.ask(state)
    assert isinstance(work, EvaluateWork) and work.split == "val"


def test_unmarked_python_stops_the_run_naming_the_node_and_the_fix():
    optimizer = StructuralOptimizer(metric=exact)
    with pytest.raises(GraphError, match=r"\['python:answer\.context'\].*@dsr_core\.graph\.step"):
        optimizer.compile(UnmarkedContext(), TRAIN, VAL)


def test_parameters_are_checked():
    with pytest.raises(ValueError, match="minibatch_size"):
        StructuralOptimizer(minibatch_size=0)
    with pytest.raises(ValueError, match="fuse_tolerance"):
        StructuralOptimizer(fuse_tolerance=-1.0)


# -- the runner's new work and usage -----------------------------------------------------------------------------------


def test_local_runner_traces_graphs_and_measures_evaluations(server):
    student = ThreeSteps()
    runner = LocalRunner(student, TRAIN, VAL, exact)
    (traced,) = run_sync(runner.run([GraphWork(program=student.dump_state(), indices=[0, 1])]))
    assert traced.error is None and [n["name"] for n in traced.graph["nodes"]] == ["rewrite", "expand", "answer"]

    program = GraphProgram.from_program(student, TRAIN).dump_state()
    shards = [EvaluateWork(candidate=5, program=program, split="val", indices=part) for part in ([0, 1], [2, 3])]
    merged = merge_evaluations(run_sync(runner.run(shards)))[(5, "val")]
    assert merged.indices == [0, 1, 2, 3] and merged.lm_calls == 12
    assert merged.prompt_tokens > 0 and merged.completion_tokens > 0
