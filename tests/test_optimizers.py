"""Optimizers as ask/tell machines, against a test server whose answers depend on the demos it is shown."""

from __future__ import annotations

import json

import pytest

import dsr_core as dsr
from dsr_core._async import run_sync
from dsr_core.optimizers import (
    BootstrapFewShot,
    BootstrapFewShotWithRandomSearch,
    BootstrapState,
    LabeledFewShot,
    LocalRunner,
    RandomSearchState,
)


def code(word: str) -> str:
    return word[::-1].upper()


def learns_from_demos(request):
    """Answers with the hidden rule only when shown at least two demos; otherwise echoes the input."""
    word = request.inputs.get("word", "")
    return request.reply(code=code(word) if len(request.demos) >= 2 else word)


def dataset(n, offset=0):
    return [dsr.Example(word=f"w{offset + i}x", code=code(f"w{offset + i}x")).with_inputs("word") for i in range(n)]


def metric(example, prediction, trace=None):
    return prediction.code == example.code


@pytest.fixture
def program(server, lm):
    server.responder = learns_from_demos
    predict = dsr.Predict("word -> code")
    predict.lm = lm
    return predict


def score(program, devset):
    return dsr.Evaluate(devset, metric)(program).score


def test_labeled_few_shot(program):
    compiled = LabeledFewShot(k=3, seed=1).compile(program, dataset(10))
    assert len(compiled.demos) == 3 and program.demos == []
    assert LabeledFewShot(k=3, seed=1).compile(program, dataset(10)).demos == compiled.demos
    assert LabeledFewShot(k=3, seed=2).compile(program, dataset(10)).demos != compiled.demos


def test_bootstrap_few_shot_improves_the_program(program, server):
    train, dev = dataset(12), dataset(10, offset=100)
    assert score(program, dev) == 0.0
    optimizer = BootstrapFewShot(metric, max_bootstrapped_demos=3, max_labeled_demos=5)
    compiled = optimizer.compile(program, train)
    demos = compiled.demos
    assert len(demos) == 5  # 3 bootstrapped + 2 labeled
    assert [d["word"] for d in demos[:3]] == ["w0x", "w1x", "w2x"]  # successes taken in training order
    assert score(compiled, dev) == 100.0
    again = BootstrapFewShot(metric, max_bootstrapped_demos=3, max_labeled_demos=5).compile(program, train)
    assert again.dump_state() == compiled.dump_state()  # same seed, same program


def test_bootstrap_skips_failed_examples(server, lm):
    server.responder = lambda r: r.reply(code="wrong" if r.inputs["word"] in ("w0x", "w2x") else code(r.inputs["word"]))
    student = dsr.Predict("word -> code", lm=lm)
    compiled = BootstrapFewShot(metric, max_bootstrapped_demos=2, max_labeled_demos=2).compile(student, dataset(8))
    assert [d["word"] for d in compiled.demos] == ["w1x", "w3x"]


def test_bootstrap_state_is_json_and_resumes_identically(program):
    train = dataset(20)
    optimizer = BootstrapFewShot(metric, max_bootstrapped_demos=4, max_labeled_demos=4, bootstrap_batch_size=3)
    runner = LocalRunner(program, train, None, metric)
    state = optimizer.init_state(program, train, None)
    state = optimizer.tell(state, run_sync(runner.run(optimizer.ask(state))))  # one batch, then "crash"
    assert not state.done and state.position == 3
    restored = BootstrapState.model_validate_json(state.model_dump_json())
    while not restored.done:
        restored = optimizer.tell(restored, run_sync(runner.run(optimizer.ask(restored))))
    uninterrupted = optimizer.compile(program, train)
    assert json.dumps(restored.result, sort_keys=True) == json.dumps(uninterrupted.dump_state(), sort_keys=True)


def test_random_search_picks_the_best_candidate_and_resumes(program, server):
    train, val = dataset(10), dataset(8, offset=50)
    optimizer = BootstrapFewShotWithRandomSearch(
        metric, max_bootstrapped_demos=2, max_labeled_demos=2, num_candidate_programs=3
    )
    runner = LocalRunner(program, train, val, metric)
    state = optimizer.init_state(program, train, val)
    assert [c.seed for c in state.candidates] == [-3, -2, -1, 0, 1, 2]
    steps = 0
    while not state.done:
        state = optimizer.tell(state, run_sync(runner.run(optimizer.ask(state))))
        state = RandomSearchState.model_validate_json(state.model_dump_json())  # a checkpoint after every step
        steps += 1
    scores = [c.score for c in state.candidates]
    assert scores[0] == 0.0  # zero-shot: the server needs demos
    assert scores[1] == 100.0  # two labeled demos are enough
    assert state.best == 1 and state.best_score == 100.0
    compiled = optimizer.compile(program, train, val)
    assert json.dumps(compiled.dump_state(), sort_keys=True) == json.dumps(state.result, sort_keys=True)
    assert score(compiled, val) == 100.0


def test_copro_finds_the_instruction_that_works(server, lm):
    from dsr_core.optimizers import COPRO, CoproState

    proposals = ["Echo the word back.", "Reverse the word, then uppercase it.", "Say something."]

    def responder(request):
        if request.model == "prompt-model":
            n = request.body.get("n", 1)
            return [
                request.reply(proposed_instruction=proposals[i % 3], proposed_prefix_for_output_field="Code:")
                for i in range(n)
            ]
        word = request.inputs.get("word", "")
        return request.reply(code=code(word) if "Reverse the word" in request.instructions else word)

    server.responder = responder
    student = dsr.Predict("word -> code", lm=lm)
    prompt_lm = dsr.LM("prompt-model", api_base=server.url)
    optimizer = COPRO(prompt_lm, metric, breadth=3, depth=2)  # DSPy's order: prompt_model first
    train, dev = dataset(6), dataset(6, offset=30)
    assert score(student, dev) == 0.0
    runner = LocalRunner(student, train, None, metric, prompt_lm=prompt_lm)
    state = optimizer.init_state(student, train, None)
    while not state.done:
        state = optimizer.tell(state, run_sync(runner.run(optimizer.ask(state))))
        state = CoproState.model_validate_json(state.model_dump_json())
    compiled = dsr.Predict("word -> code", lm=lm)
    compiled.load_state(state.result)
    assert compiled.signature.instructions == "Reverse the word, then uppercase it."
    assert compiled.signature.output_fields["code"].prefix == "Code:"
    assert score(compiled, dev) == 100.0
    attempts_prompts = [b for b in server.requests if b["model"] == "prompt-model"]
    assert len(attempts_prompts) == 2  # depth 0 (basic) and depth 1 (from attempts)
    assert "Resulting Score" in attempts_prompts[1]["messages"][-1]["content"]
    assert optimizer.compile(student, train).signature.instructions == compiled.signature.instructions
