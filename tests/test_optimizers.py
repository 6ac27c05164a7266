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


COPRO_PROPOSALS = ["Echo the word back.", "Reverse the word, then uppercase it.", "Say something."]


def copro_responder(request):
    """The prompt model proposes the three instructions in turn; the task model follows only the second."""
    if request.model == "prompt-model":
        n = request.body.get("n", 1)
        return [
            request.reply(proposed_instruction=COPRO_PROPOSALS[i % 3], proposed_prefix_for_output_field="Code:")
            for i in range(n)
        ]
    word = request.inputs.get("word", "")
    return request.reply(code=code(word) if "Reverse the word" in request.instructions else word)


def test_copro_finds_the_instruction_that_works(server, lm):
    from dsr_core.optimizers import COPRO, CoproState

    server.responder = copro_responder
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


# A COPRO checkpoint written before proposals and generations became one work kind (GenerateWork): the
# state after depth 0, about to propose from the scored attempts.
COPRO_CHECKPOINT_BEFORE_GENERATE_WORK = (
    '{"optimizer":"COPRO","seed":0,"predictor_names":["self"],"n_train":6,"n_val":0,"done":false,"result":null,"b'
    'est_score":100.0,"phase":"propose","depth":1,"predictor_index":1,"program":{"self":{"traces":[],"train":[],"'
    'demos":[],"signature":{"instructions":"Reverse the word, then uppercase it.","fields":[{"name":"word","kind"'
    ':"input","type":"str","prefix":"Word:","description":""},{"name":"code","kind":"output","type":"str","prefix'
    '":"Code:","description":""}]},"lm":null,"config":{}},"metadata":{"format":"dsr-program/1","dsr_version":"0.1'
    '.0","program":"dsr_core.modules.predict:Predict","signature_hashes":{"self":"003097560b84d493"},"dependency_'
    'versions":{"python":"3.11"}}},"candidates":{"self":[{"instruction":"Echo the word '
    'back.","prefix":"Code:","score":0.0,"depth":0},{"instruction":"Reverse the word, then uppercase '
    'it.","prefix":"Code:","score":100.0,"depth":0},{"instruction":"Given the fields `word`, produce the fields '
    '`code`.","prefix":"Code:","score":0.0,"depth":0}]},"evaluated":{"self":[{"instruction":"Echo the word '
    'back.","prefix":"Code:","score":0.0,"depth":0},{"instruction":"Reverse the word, then uppercase '
    'it.","prefix":"Code:","score":100.0,"depth":0},{"instruction":"Given the fields `word`, produce the fields '
    '`code`.","prefix":"Code:","score":0.0,"depth":0}]}}'
)


def test_a_copro_checkpoint_from_before_generate_work_resumes(server, lm):
    from dsr_core.optimizers import COPRO, CoproState, GenerateWork, WorkKey
    from dsr_core.state import ProgramState

    server.responder = copro_responder
    prompt_lm = dsr.LM("prompt-model", api_base=server.url)
    optimizer = COPRO(prompt_lm, metric, breadth=3, depth=2)
    train = dataset(6)
    runner = LocalRunner(dsr.Predict("word -> code", lm=lm), train, None, metric, prompt_lm=prompt_lm)

    def finish(state):
        while not state.done:
            state = optimizer.tell(state, run_sync(runner.run(optimizer.ask(state))))
            state = CoproState.model_validate_json(state.model_dump_json())
        return state

    checkpoint = CoproState.model_validate_json(COPRO_CHECKPOINT_BEFORE_GENERATE_WORK)
    assert checkpoint.model_dump_json() == COPRO_CHECKPOINT_BEFORE_GENERATE_WORK  # the shape is unchanged
    (work,) = optimizer.ask(checkpoint)
    assert isinstance(work, GenerateWork) and work.signature == "attempts"
    assert work.key == WorkKey(step="propose", number=0)  # the first predictor's proposals
    resumed = finish(checkpoint)
    assert "Resulting Score #" in server.requests[0]["messages"][-1]["content"]
    uninterrupted = finish(optimizer.init_state(dsr.Predict("word -> code"), train, None))
    without_programs = {"program", "result"}
    assert resumed.model_dump(exclude=without_programs) == uninterrupted.model_dump(exclude=without_programs)
    for name in ("program", "result"):  # the same predictors; the metadata is the checkpoint's own
        programs = [ProgramState.from_json(getattr(s, name)).predictors() for s in (resumed, uninterrupted)]
        assert programs[0] == programs[1]
    assert resumed.result["self"]["signature"]["instructions"] == "Reverse the word, then uppercase it."
    assert resumed.current_phase == "done" and resumed.best_score == 100.0
    assert resumed.recorded_trials == () and resumed.trial(0) is None  # COPRO keeps no trial records


def test_every_state_answers_what_a_flow_reads(program):
    from dsr_core.teleprompt import Teleprompter

    assert Teleprompter is dsr.optimizers.Optimizer
    train = dataset(6)
    optimizer = BootstrapFewShot(metric, max_bootstrapped_demos=2, max_labeled_demos=2)
    state = optimizer.init_state(program, train, None)
    assert (state.current_phase, state.best_score, list(state.recorded_trials)) == ("searching", None, [])
    done = LabeledFewShot(k=2).init_state(program, train, None)
    assert done.done and done.current_phase == "done" and done.trial(0) is None
