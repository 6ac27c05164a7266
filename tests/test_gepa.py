"""GEPA as an ask/tell machine, against the test server.

The server plays the task model and the reflection model. As the task model it turns a word into a code by
a hidden rule that depends on a keyword in the instruction, a keyword only the metric's feedback names. As
the reflection model it reads the feedback in the reflection prompt and proposes the current instruction
with the keyword the feedback asks for (or, with nothing to go on, a reworded one that changes nothing).
"""

from __future__ import annotations

import random
import re

import pytest

import dsr_core as dsr
from dsr_core._async import run_sync
from dsr_core.evaluate import call_metric
from dsr_core.optimizers import GEPA, EvaluateWork, GepaState, LocalRunner, TraceWork
from dsr_core.optimizers.gepa import auto_budget, dominators, instance_fronts, select_parent

KEYWORDS = {"e": "alpha", "o": "beta"}  # the keyword each kind of word needs in its predictor's instruction


def code(word: str) -> str:
    return word.upper()


def task(request):
    """``e`` words need "alpha", ``o`` words "beta", and ``s`` words must not see "alpha"."""
    word = request.inputs.get("word", "")
    instructions = request.instructions
    if word.startswith("s"):
        right = "alpha" not in instructions
    else:
        right = KEYWORDS.get(word[0], "zebra") in instructions
    return request.reply(code=code(word) if right else word)


def reflect(request):
    """Propose the instruction the feedback asks for; the reflection prompt is recorded on the server."""
    current = request.inputs["current_instruction"]
    asked = re.findall(r"must mention (\w+)", request.inputs["examples_with_feedback"])
    missing = [word for word in dict.fromkeys(asked) if word not in current]
    if "expected output was" in request.inputs["examples_with_feedback"] and "uppercase" not in current:
        missing.append("uppercase")
    proposal = f"{current} Mention {' and '.join(missing)}." if missing else f"{current} Be careful."
    return request.reply(new_instruction=f"```\n{proposal}\n```")


def responder(request):
    if request.output_fields == ["new_instruction"]:
        return reflect(request)
    return task(request)


def feedback_metric(gold, pred, trace, pred_name, pred_trace):
    """A GEPA feedback metric (five parameters, no defaults): the feedback names the missing keyword."""
    right = pred.code == gold.code
    if right:
        feedback = "Correct."
    elif gold.word.startswith("s"):
        feedback = "Wrong: the instruction must not say alpha."
    else:
        feedback = f"Wrong: the instruction must mention {KEYWORDS.get(gold.word[0], 'zebra')}."
    return dsr.Prediction(score=float(right), feedback=feedback)


def plain_metric(example, prediction, trace=None):
    return prediction.code == example.code


def words(prefix: str, n: int, offset: int = 0) -> list[dsr.Example]:
    return [
        dsr.Example(word=f"{prefix}{offset + i}", code=code(f"{prefix}{offset + i}")).with_inputs("word")
        for i in range(n)
    ]


class Encoder(dsr.Module):
    def __init__(self):
        self.encode = dsr.Predict("word -> code")

    async def aforward(self, word):
        return await self.encode.acall(word=word)


class Router(dsr.Module):
    """Two predictors: ``o`` words go to ``second``, the others to ``first``."""

    def __init__(self):
        self.first = dsr.Predict("word -> code")
        self.second = dsr.Predict("word -> code")

    async def aforward(self, word):
        predictor = self.second if word.startswith("o") else self.first
        return await predictor.acall(word=word)


@pytest.fixture
def encoder(server, lm):
    server.responder = responder
    program = Encoder()
    program.set_lm(lm)
    return program


@pytest.fixture
def router(server, lm):
    server.responder = responder
    program = Router()
    program.set_lm(lm)
    return program


def mixed(n: int, offset: int = 0) -> list[dsr.Example]:
    """``e``, ``o`` and ``s`` words, two ``e`` and two ``o`` for each ``s``."""
    kinds = ["e", "o", "s", "e", "o"]
    return [words(kinds[i % 5], 1, offset + i)[0] for i in range(n)]


def run(optimizer, program, train, val, metric, runner=None, reload=True) -> list[GepaState]:
    """Every state from init to done, each through a JSON checkpoint when ``reload``."""
    runner = runner or LocalRunner(program, train, val, metric, prompt_lm=optimizer.prompt_model)
    states = [optimizer.init_state(program, train, val)]
    while not states[-1].done:
        state = optimizer.tell(states[-1], run_sync(runner.run(optimizer.ask(states[-1]))))
        states.append(GepaState.model_validate_json(state.model_dump_json()) if reload else state)
    return states


def merging(**overrides) -> GEPA:
    settings = {"max_metric_calls": 150, "reflection_minibatch_size": 3, "seed": 0}
    return GEPA(feedback_metric, **{**settings, **overrides})


# -- the search ------------------------------------------------------------------------------------------------


def test_gepa_finds_the_keyword_only_the_feedback_names(encoder, server):
    train, val, dev = words("w", 6), words("w", 6, offset=50), words("w", 6, offset=100)
    assert dsr.Evaluate(dev, plain_metric)(encoder).score == 0.0
    reflector = dsr.LM("reflector", api_base=server.url, retry_backoff=(0.01, 0.05), timeout=5.0)
    optimizer = GEPA(feedback_metric, max_metric_calls=40, track_stats=True, reflection_lm=reflector)
    compiled = optimizer.compile(encoder, trainset=train, valset=val)
    reflections = [b for b in server.requests if "current_instruction" in str(b)]
    assert reflections and {b["model"] for b in reflections} == {"reflector"}
    assert "zebra" in compiled.encode.signature.instructions
    assert dsr.Evaluate(dev, plain_metric)(compiled).score == 100.0
    details = compiled.detailed_results
    assert details.val_aggregate_scores[0] == 0.0 and details.val_aggregate_scores[details.best_idx] == 1.0
    assert details.parents[0] == [None] and details.parents[details.best_idx] == [0]
    assert details.total_metric_calls >= 40


def test_the_reflection_prompt_shows_calls_and_feedback(encoder, server):
    train, val = words("w", 3), words("w", 3, offset=50)
    states = run(GEPA(feedback_metric, max_metric_calls=10), encoder, train, val, feedback_metric)
    prompts = [b for b in server.requests if "current_instruction" in str(b)]
    text = prompts[0]["messages"][-1]["content"]
    assert "# Example 1" in text and "## Inputs" in text and "### word" in text and "## Generated Outputs" in text
    assert "## Feedback\nWrong: the instruction must mention zebra." in text
    first = states[-1].history[0]
    assert first.kind == "mutation" and first.component == "encode" and first.outcome == "accepted"
    assert first.instructions["encode"].endswith("Mention zebra.")  # the ``` fence is gone


def test_merge_combines_two_lines_of_descent(router, server):
    train, val = mixed(15), mixed(10, offset=50)
    state = run(merging(), router, train, val, feedback_metric)[-1]
    prompts = [b["messages"][-1]["content"] for b in server.requests if "current_instruction" in str(b)]
    assert any("must mention beta" in p and "must mention alpha" not in p for p in prompts)  # per predictor
    merges = [c for c in state.candidates if c.origin == "merge"]
    assert merges, [(it.kind, it.parents, it.outcome) for it in state.history]
    merged = merges[0]
    first, second = (state.candidates[p] for p in merged.parents)
    assert merged.ancestor == 0 and merged.iteration is not None
    assert {first.component, second.component} == {"first", "second"}
    assert "alpha" in merged.instructions["first"] and "beta" in merged.instructions["second"]
    assert merged.mean > max(first.mean, second.mean)
    record = next(it for it in state.history if it.kind == "merge" and it.outcome == "accepted")
    assert record.candidate == merged.number and record.sources and len(record.scores_before) == 2
    assert [t.kind for t in state.trials if t.params.get("iteration") == record.number] == ["subsample", "full"]
    assert state.merges_accepted >= 1 and [merged.parents[0], merged.parents[1], 0] in state.tried_triplets
    assert state.best_score == 80.0  # s words stay wrong once "alpha" is in


@pytest.mark.parametrize("num_proposals", [1, 3])
def test_resume_from_every_checkpoint_is_byte_identical(router, num_proposals):
    train, val = mixed(15), mixed(10, offset=50)
    straight = run(merging(num_proposals=num_proposals), router, train, val, feedback_metric, reload=False)
    checkpointed = run(merging(num_proposals=num_proposals), router, train, val, feedback_metric, reload=True)
    assert checkpointed[-1].model_dump_json() == straight[-1].model_dump_json()
    assert any(c.origin == "merge" for c in straight[-1].candidates)
    optimizer, runner = merging(num_proposals=num_proposals), LocalRunner(router, train, val, feedback_metric)
    for state in straight[2:-1:3]:  # resume from a checkpoint mid-run and finish from there
        resumed = GepaState.model_validate_json(state.model_dump_json())
        while not resumed.done:
            resumed = optimizer.tell(resumed, run_sync(runner.run(optimizer.ask(resumed))))
        assert resumed.model_dump_json() == straight[-1].model_dump_json()


class ShuffledRunner(LocalRunner):
    """Runs work items one at a time, in reverse order, and hands the outcomes back shuffled."""

    async def run(self, work):
        outcomes = []
        for item in reversed(list(work)):
            outcomes.extend(await super().run([item]))
        random.Random(len(outcomes)).shuffle(outcomes)
        return outcomes


def test_parallel_proposals_give_the_sequential_result(router):
    """Up to where the budget stops the parallel run (its dropped work counts), it is the sequential run."""
    train, val = mixed(15), mixed(10, offset=50)
    sequential = run(merging(max_metric_calls=300), router, train, val, feedback_metric)
    optimizer = merging(max_metric_calls=300, num_proposals=3)
    parallel = run(optimizer, router, train, val, feedback_metric)
    shuffled_runner = ShuffledRunner(router, train, val, feedback_metric)
    shuffled = run(optimizer, router, train, val, feedback_metric, runner=shuffled_runner)
    assert shuffled[-1].model_dump_json() == parallel[-1].model_dump_json()
    final = parallel[-1]
    assert final.discarded_metric_calls > 0 and len(final.history) > 10
    same_point = next(s for s in sequential if len(s.history) == len(final.history))  # as many committed
    for field in ("candidates", "history", "trials", "metric_calls", "merges_accepted", "best_score"):
        assert getattr(final, field) == getattr(same_point, field), field
    assert any(c.origin == "merge" for c in final.candidates)
    assert final.result == merging().best_so_far(same_point)
    assert len(parallel) < len(sequential) / 2  # fewer steps: several iterations asked at once
    asks = [optimizer.ask(s) for s in parallel]
    assert any(len([w for w in work if isinstance(w, TraceWork)]) > 1 for work in asks)
    # the window refills as the front iteration commits: new traces while an earlier proposal is scored
    assert any({type(w) for w in work} >= {TraceWork, EvaluateWork} for work in asks)


@pytest.mark.parametrize("num_proposals", [2, 3, 4, 8])
@pytest.mark.parametrize("budget", [40, 80, 150])
def test_parallel_proposals_stay_within_the_budget_counting_dropped_work(router, num_proposals, budget):
    train, val = mixed(15), mixed(10, offset=50)
    optimizer = merging(max_metric_calls=budget, num_proposals=num_proposals, track_stats=True)
    states = run(optimizer, router, train, val, feedback_metric)
    final = states[-1]
    for state in states:  # nothing running can take the run over the budget, dropped work included
        assert optimizer.spend_bound(state) + (10 if state.running else 0) <= budget
    assert final.metric_calls + final.discarded_metric_calls <= budget
    compiled = optimizer.compile(router, trainset=train, valset=val)
    assert compiled.detailed_results.total_metric_calls == final.metric_calls + final.discarded_metric_calls
    assert budget - final.metric_calls - final.discarded_metric_calls < 2 * 3 + 10  # no next iteration fits


def test_one_proposal_at_a_time_checks_the_budget_before_each_iteration_as_gepa(router):
    """num_proposals=1 is gepa's rule (and DSPy's): the budget is checked before each iteration starts."""
    train, val = mixed(15), mixed(10, offset=50)
    final = run(merging(max_metric_calls=150), router, train, val, feedback_metric)[-1]
    last = final.history[-1]
    assert final.discarded_metric_calls == 0 and final.metric_calls > 150  # the last iteration went over
    assert final.metric_calls - last.metric_calls < 150


def test_current_best_selection_and_no_merge(router):
    train, val = mixed(15), mixed(10, offset=50)
    optimizer = merging(use_merge=False, candidate_selection_strategy="current_best")
    state = run(optimizer, router, train, val, feedback_metric)[-1]
    assert all(c.origin != "merge" for c in state.candidates) and state.merges_due == 0
    assert len(state.candidates) > 2
    for it in state.history:  # every mutation grows from the best candidate of the pool it started from
        pool = [c for c in state.candidates if c.iteration is None or c.iteration < it.number]
        means = [c.mean for c in pool]
        assert it.parents == [pool[means.index(max(means))].number]


def test_a_plain_score_metric_gets_feedback_from_the_score_and_the_expected_output(encoder, server):
    train, val = words("u", 4), words("u", 4, offset=50)

    def task_uppercase(request):
        if request.output_fields == ["new_instruction"]:
            return reflect(request)
        word = request.inputs["word"]
        return request.reply(code=word.upper() if "uppercase" in request.instructions else word)

    server.responder = task_uppercase
    compiled = GEPA(plain_metric, max_metric_calls=30).compile(encoder, trainset=train, valset=val)
    assert "uppercase" in compiled.encode.signature.instructions
    prompt = next(b for b in server.requests if "current_instruction" in str(b))["messages"][-1]["content"]
    assert "This trajectory got a score of 0.0. The expected output was: code: U" in prompt


def test_without_a_valset_the_trainset_validates(encoder):
    train = words("w", 5)
    optimizer = GEPA(feedback_metric, max_full_evals=3)
    state = run(optimizer, encoder, train, None, feedback_metric)[-1]
    assert state.val_split == "train" and state.max_metric_calls == 15
    assert state.best_score == 100.0 and state.metric_calls >= 15


def test_the_budget_stops_the_run_and_counts_every_metric_call(encoder):
    train, val = words("w", 6), words("w", 4, offset=50)
    state = run(GEPA(feedback_metric, max_metric_calls=4), encoder, train, val, feedback_metric)[-1]
    assert state.metric_calls == 4 and not state.history and len(state.candidates) == 1  # the baseline only
    state = run(GEPA(feedback_metric, max_metric_calls=6), encoder, train, val, feedback_metric)[-1]
    first = state.history[0]
    assert first.outcome == "accepted" and first.metric_calls == 3 + 3 + 4  # trace, minibatch, full
    assert state.metric_calls == 4 + first.metric_calls and state.done


def test_auto_budget_is_dspys():
    assert auto_budget(1, 6, 10) == 420
    optimizer = GEPA(plain_metric, auto="light")
    assert optimizer.budget(num_preds=2, n_train=20, n_val=None) == auto_budget(2, 6, 20)


# -- trace work ------------------------------------------------------------------------------------------------


def test_trace_work_reports_calls_feedback_and_errors(router, server):
    examples = [*words("e", 1), *words("o", 1), *words("s", 1), *words("e", 1, offset=7)]
    server.inject("500", times=1000, match=lambda r: r.inputs.get("word") == "e7")
    runner = LocalRunner(router, examples, None, feedback_metric)
    work = TraceWork(candidate=5, program=router.dump_state(), indices=[0, 1, 2, 3])
    e0, o1, s2, failed = run_sync(runner.run([work]))
    assert [o.index for o in (e0, o1, s2, failed)] == [0, 1, 2, 3] and {o.candidate for o in (e0, o1)} == {5}
    assert e0.score == 0.0 and e0.gold == {"code": "E0"} and e0.outputs == {"code": "e0"}
    assert list(e0.calls) == ["first"] and e0.calls["first"][0].inputs == {"word": "e0"}
    assert e0.predictor_feedback == {"first": "Wrong: the instruction must mention alpha."}
    assert list(o1.calls) == ["second"] and o1.predictor_feedback["second"].endswith("mention beta.")
    assert s2.score == 1.0 and s2.feedback == "Correct."
    assert failed.error and failed.transient and failed.calls == {} and failed.score == 0.0


def test_a_feedback_metric_scores_in_evaluate(router):
    examples = words("s", 3)
    assert dsr.Evaluate(examples, feedback_metric)(router).score == 100.0
    seen = []

    def metric(gold, pred, trace, pred_name, pred_trace):
        seen.append((pred_name, pred_trace))
        return 1.0

    assert run_sync(call_metric(metric, examples[0], dsr.Prediction(code="x"))) == 1.0
    assert run_sync(call_metric(metric, examples[0], None, [], pred_name="first", pred_trace=[1])) == 1.0
    assert seen == [(None, None), ("first", [1])]


# -- the frontier ----------------------------------------------------------------------------------------------


def test_the_frontier_drops_dominated_candidates_and_weights_by_wins():
    scores = [[0, 0, 1], [1, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert instance_fronts(scores) == [{1, 2}, {2}, {0, 3}]
    assert dominators(scores) == [2, 3]  # 1 is dominated by 2; 0 and 3 tie, the first checked goes
    draws = [select_parent("pareto", scores, random.Random(i)) for i in range(200)]
    assert set(draws) == {2, 3} and draws.count(2) > draws.count(3)  # 2 leads on two examples, 3 on one
    assert select_parent("current_best", scores, random.Random(0)) == 2


# -- parameters ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of auto, max_full_evals and max_metric_calls"),
        ({"auto": "light", "max_metric_calls": 10}, "exactly one of"),
        ({"auto": "huge"}, "auto"),
        ({"max_metric_calls": 0}, "max_metric_calls"),
        ({"max_metric_calls": 10, "candidate_selection_strategy": "best"}, "candidate_selection_strategy"),
        ({"max_metric_calls": 10, "reflection_minibatch_size": 0}, "reflection_minibatch_size"),
        ({"max_metric_calls": 10, "num_proposals": 0}, "num_proposals"),
        ({"max_metric_calls": 10, "max_merge_invocations": -1}, "max_merge_invocations"),
    ],
)
def test_bad_parameters_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GEPA(plain_metric, **kwargs)


def test_bad_metrics_and_compile_arguments_are_refused(encoder):
    with pytest.raises(ValueError, match="metric: Input should be callable"):
        GEPA("accuracy", max_metric_calls=10)
    with pytest.raises(TypeError, match=r"\(gold, pred\[, trace\]\)"):
        GEPA(lambda gold: 1.0, max_metric_calls=10)
    optimizer = GEPA(plain_metric, max_metric_calls=10)
    with pytest.raises(ValueError, match="teacher"):
        optimizer.compile(encoder, trainset=words("w", 2), teacher=encoder)
    with pytest.raises(ValueError, match="non-empty trainset"):
        optimizer.compile(encoder, trainset=[])
    with pytest.raises(ValueError, match="non-empty valset"):
        optimizer.compile(encoder, trainset=words("w", 2), valset=[])


# DSPy 3.4.1's GEPA.__init__ keywords (inspect.signature in DSPy's venv), with values other than its defaults
DSPY_GEPA_KEYWORDS = {
    "add_format_failure_as_feedback": True,
    "instruction_proposer": lambda *a, **k: {},
    "code_proposer": lambda *a, **k: {},
    "component_selector": "all",
    "failure_score": -1.0,
    "use_wandb": True,
    "wandb_api_key": "not-a-key",
    "wandb_init_kwargs": {"project": "p"},
    "track_best_outputs": True,
    "warn_on_score_mismatch": False,
    "use_mlflow": True,
    "gepa_kwargs": {"frontier_type": "instance"},
}


def test_every_dspy_keyword_is_accepted_and_says_when_it_has_no_effect(encoder):
    import inspect
    import warnings

    dspy_names = {
        "metric", "auto", "max_full_evals", "max_metric_calls", "reflection_minibatch_size",
        "candidate_selection_strategy", "reflection_lm", "skip_perfect_score", "use_merge", "max_merge_invocations",
        "num_threads", "perfect_score", "log_dir", "track_stats", "seed", *DSPY_GEPA_KEYWORDS,
    }  # fmt: skip
    assert dspy_names <= set(inspect.signature(inspect.unwrap(GEPA.__init__)).parameters)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # DSPy's defaults, spelled out: no warning
        GEPA(plain_metric, max_metric_calls=10, component_selector="round_robin", failure_score=0.0, use_mlflow=False)
    with pytest.warns(UserWarning) as caught:
        optimizer = GEPA(plain_metric, max_metric_calls=6, **DSPY_GEPA_KEYWORDS)
    messages = " | ".join(str(w.message) for w in caught)
    for name in ("failure_score", "component_selector", "use_wandb", "use_mlflow", "track_best_outputs", "gepa_kwargs"):
        assert f"GEPA: {name}" in messages
    assert "instruction_proposer" in messages and "add_format_failure_as_feedback" in messages
    assert "not-a-key" not in messages and not hasattr(optimizer, "wandb_api_key")
    compiled = optimizer.compile(encoder, trainset=words("w", 2), valset=words("w", 2, offset=50))
    assert isinstance(compiled, Encoder) and compiled is not encoder
