"""DSPy's optimizer constructors and ``compile`` keywords on dsr, against the test server."""

from __future__ import annotations

import random

import pytest

import dsr_core as dsr
from dsr_core.optimizers import (
    COPRO,
    BootstrapFewShot,
    BootstrapFewShotWithRandomSearch,
    LabeledFewShot,
    MIPROv2,
)
from dsr_core.teleprompt import Teleprompter
from tests.test_mipro import Encoder
from tests.test_mipro import metric as mipro_metric
from tests.test_mipro import responder as mipro_responder


def code(word: str) -> str:
    return word[::-1].upper()


def dataset(n, offset=0):
    return [dsr.Example(word=f"w{offset + i}x", code=code(f"w{offset + i}x")).with_inputs("word") for i in range(n)]


def metric(example, prediction, trace=None):
    return prediction.code == example.code


def only_the_teacher_knows(request):
    """The teacher model knows the rule; the student model echoes unless shown two demos."""
    word = request.inputs.get("word", "")
    knows = request.model == "teacher-model" or len(request.demos) >= 2
    return request.reply(code=code(word) if knows else word)


@pytest.fixture
def student(server, lm):
    server.responder = only_the_teacher_knows
    return dsr.Predict("word -> code", lm=lm)


def bootstrap_calls(server):
    return [b for b in server.requests if b["model"] == "teacher-model"]


def test_labeled_few_shot_draws_as_dspy(student):
    train = dataset(10)
    compiled = LabeledFewShot(k=3).compile(student, trainset=train)
    rng = random.Random(0)  # DSPy's LabeledFewShot
    assert compiled.demos == [e.to_dict() for e in rng.sample(train, 3)]
    assert LabeledFewShot(k=3).compile(student, trainset=train, sample=False).demos == [e.to_dict() for e in train[:3]]
    assert LabeledFewShot(k=3).compile(student, trainset=[]).demos == []


def test_bootstrap_teacher_settings_run_the_teacher_on_its_lm(server, lm):
    server.responder = only_the_teacher_knows
    dsr.configure(lm=lm)  # as in DSPy, the settings' LM serves predictors without one of their own
    student = dsr.Predict("word -> code")
    teacher_lm = dsr.LM("teacher-model", api_base=server.url)
    optimizer = BootstrapFewShot(metric, None, {"lm": teacher_lm}, 2, 0)  # DSPy's positional order
    compiled = optimizer.compile(student, trainset=dataset(6))
    assert [d["word"] for d in compiled.demos] == ["w0x", "w1x"]
    assert all(d["augmented"] is True for d in compiled.demos)  # as DSPy marks bootstrapped demos
    assert len(bootstrap_calls(server)) >= 2 and compiled.lm is None
    assert getattr(compiled, "_compiled", False)


def test_bootstrap_compile_uses_the_teacher_program(student, server):
    teacher = dsr.Predict("word -> code", lm=dsr.LM("teacher-model", api_base=server.url))
    compiled = BootstrapFewShot(metric, max_bootstrapped_demos=3, max_labeled_demos=0).compile(
        student, teacher=teacher, trainset=dataset(8)
    )
    assert [d["word"] for d in compiled.demos] == ["w0x", "w1x", "w2x"]
    assert len(bootstrap_calls(server)) >= 3
    with pytest.raises(ValueError, match="same program structure"):
        BootstrapFewShot(metric).compile(student, teacher=Encoder(), trainset=dataset(4))


def test_the_teacher_never_sees_the_example_it_runs_among_its_demos(student, server):
    BootstrapFewShot(metric, max_bootstrapped_demos=2, max_labeled_demos=4).compile(student, trainset=dataset(4))
    for body in server.requests:
        shown = body["messages"][-1]["content"]
        word = shown.split("[[ ## word ## ]]")[1].split()[0]
        earlier = " ".join(m["content"] for m in body["messages"][1:-1])
        assert word not in earlier


def test_bootstrap_max_errors(student, server):
    server.inject("400", 100, match=lambda r: r.inputs.get("word") in ("w0x", "w1x", "w2x"))
    with pytest.raises(RuntimeError, match=r"3 bootstrap attempts failed \(max_errors=3\)"):
        BootstrapFewShot(metric, max_bootstrapped_demos=4, max_labeled_demos=0, max_errors=3).compile(
            student, trainset=dataset(8)
        )
    compiled = BootstrapFewShot(metric, max_bootstrapped_demos=2, max_labeled_demos=0).compile(
        student, trainset=dataset(8)
    )  # without max_errors, the setting's limit (DSPy's 10) is not reached: failures are skipped
    assert compiled.demos == [] or all(d["word"] not in ("w0x", "w1x", "w2x") for d in compiled.demos)


def test_random_search_dspy_keywords_and_candidate_programs(student, server):
    optimizer = BootstrapFewShotWithRandomSearch(
        metric, None, max_bootstrapped_demos=2, max_labeled_demos=2, num_candidate_programs=2, num_threads=3
    )
    compiled = optimizer.compile(
        student, trainset=dataset(6), valset=dataset(4, offset=20), restrict=[-3, -2], labeled_sample=False
    )
    assert [d["word"] for d in compiled.demos] == ["w0x", "w1x"]  # labeled_sample=False: the first two
    entries = compiled.candidate_programs
    assert [(e["seed"], e["score"]) for e in entries] == [(-2, 100.0), (-3, 0.0)]
    assert entries[0]["subscores"] == [1.0] * 4 and entries[0]["program"].demos == compiled.demos
    assert len(compiled.named_predictors()) == 1  # the candidates are not sub-modules
    assert isinstance(optimizer, Teleprompter)


def test_copro_dspy_order_and_eval_kwargs(server, lm):
    def responder(request):
        if request.model == "prompt-model":
            return [
                request.reply(
                    proposed_instruction="Reverse the word, then uppercase it.",
                    proposed_prefix_for_output_field="Code:",
                )
                for _ in range(request.body.get("n", 1))
            ]
        word = request.inputs.get("word", "")
        return request.reply(code=code(word) if "Reverse the word" in request.instructions else word)

    server.responder = responder
    prompt_lm = dsr.LM("prompt-model", api_base=server.url)
    student = dsr.Predict("word -> code", lm=lm)
    server.latency = 0.02
    with pytest.warns(UserWarning, match="display_progress"):
        compiled = COPRO(prompt_lm, metric, breadth=2, depth=1).compile(
            student, trainset=dataset(6), eval_kwargs={"num_threads": 2, "display_progress": True}
        )
    assert compiled.signature.instructions == "Reverse the word, then uppercase it."
    assert server.stats.max_in_flight <= 2 * 2  # two candidates at a time, each with two workers


def test_mipro_dspy_compile_keywords(server, lm):
    server.responder = mipro_responder
    program = Encoder()
    program.set_lm(lm)
    with pytest.warns(UserWarning, match="verbose"):
        optimizer = MIPROv2(mipro_metric, auto=None, num_candidates=3, num_threads=4, seed=0, verbose=True)
    train, val = dataset(12), dataset(8, offset=40)
    configured = optimizer.configured(num_trials=3, minibatch=False, max_labeled_demos=2)
    state = configured.init_state(program, train, val)
    assert (state.num_trials, state.minibatch) == (3, False) and optimizer.num_trials is None
    with pytest.warns(UserWarning, match="requires_permission_to_run"):
        compiled = optimizer.compile(
            program, trainset=train, valset=val, num_trials=3, minibatch=False, requires_permission_to_run=False
        )
    assert dsr.Evaluate(devset=val, metric=mipro_metric)(compiled).score == 100.0
    with pytest.raises(ValueError, match="auto"):
        MIPROv2(mipro_metric).compile(program, trainset=train, valset=val, num_trials=3)
    with pytest.raises(TypeError, match="unexpected keyword"):
        optimizer.compile(program, trainset=train, valset=val, num_trials=3, bogus=1)


@pytest.mark.parametrize("name", ["BootstrapFewShotWithRandomSearch", "SIMBA", "GEPA"])
def test_num_threads_caps_the_programs_running_at_once_across_a_step(server, name):
    """As DSPy's num_threads: the whole step's examples share the cap, not each evaluation its own."""
    from flows.config import optimizer_class
    from tests.programs import WordCode, code, learns_from_demos

    server.latency = 0.02
    server.responder = lambda r: (
        learns_from_demos(r) if r.output_fields == ["code"] else r.reply(**dict.fromkeys(r.output_fields, "x"))
    )
    lm = dsr.LM("test-model", api_base=server.url, max_concurrency=64, cache=False)
    student = WordCode()
    student.set_lm(lm)
    train = [dsr.Example(word=f"w{i}x", code=code(f"w{i}x")).with_inputs("word") for i in range(16)]
    params = {
        "BootstrapFewShotWithRandomSearch": {"num_candidate_programs": 2},
        "SIMBA": {"bsize": 8, "num_candidates": 4, "max_steps": 1},
        "GEPA": {"max_metric_calls": 40},
    }[name]
    optimizer = optimizer_class(name)(metric=lambda e, p, t=None: p.code == e.code, num_threads=3, **params)
    optimizer.compile(student, trainset=train, valset=train[:8])
    assert 1 < server.stats.max_in_flight <= 3
