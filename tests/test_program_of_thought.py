"""ProgramOfThought and CodeAct against the test server, their code run in the real Deno/Pyodide sandbox: DSPy's
loop (generate, regenerate after an error, answer; CodeAct's steps and extract), the interpreter's ownership,
the sandbox cap under an evaluation, optimizing, saving and loading."""

from __future__ import annotations

import json
import threading

import pytest

import dsr_core as dsr
from dsr_core.interpreter import PythonInterpreter
from dsr_core.interpreter.sandbox import SLOTS


def code_reply(request, code, **extra):
    return request.reply(reasoning="Compute it.", generated_code=f"```python\n{code}\n```", **extra)


def arithmetic(request):
    """Writes code that computes the question (``"6 * 7"``): broken code first when the question says so, the
    right code once shown the error; answers with the code's output."""
    outputs, inputs = request.output_fields, request.inputs
    if "generated_code" in outputs:
        question = inputs["question"].removeprefix("broken: ")
        if "error" in inputs:
            return code_reply(request, f"value = {question}")
        if inputs["question"].startswith("broken: "):
            return code_reply(request, "value = undefined_name + 1")
        return code_reply(request, f"value = {question}")
    return request.reply(reasoning="From the output.", answer=inputs["code_output"])


def test_program_of_thought_generates_runs_and_answers_from_the_output(server, lm):
    server.responder = arithmetic
    pot = dsr.ProgramOfThought("question -> answer")
    with dsr.context(lm=lm):
        prediction = pot(question="6 * 7")
    assert prediction.answer == "42" and prediction.reasoning == "From the output."
    generate, answer = server.requests
    system = generate["messages"][0]["content"]
    assert "You will be given `question` and you will respond with `generated_code`." in system
    assert "calling the preloaded function `SUBMIT()`" in system
    assert "[[ ## final_generated_code ## ]]\nvalue = 6 * 7\nvalue" in answer["messages"][-1]["content"]
    assert "[[ ## code_output ## ]]\n42" in answer["messages"][-1]["content"]


def test_an_error_is_shown_to_the_regenerate_step_and_max_iters_ends_it(server, lm):
    server.responder = arithmetic
    with dsr.context(lm=lm):
        prediction = dsr.ProgramOfThought("question -> answer")(question="broken: 2 + 2")
    assert server.stats.requests == 3  # generate, regenerate, answer
    regenerate = server.requests[1]["messages"][-1]["content"]
    assert "[[ ## previous_code ## ]]\nvalue = undefined_name + 1" in regenerate
    assert "[[ ## error ## ]]\nNameError: [\"name 'undefined_name' is not defined\"]" in regenerate
    assert prediction.answer == "4"  # from the corrected code

    server.responder = lambda r: code_reply(r, "1 / 0") if "generated_code" in r.output_fields else r.reply()
    with dsr.context(lm=lm), pytest.raises(RuntimeError, match="Max hops reached.*ZeroDivisionError"):
        dsr.ProgramOfThought("question -> answer", max_iters=2)(question="q")


async def test_async_calls_run_the_same_loop(server, lm):
    server.responder = arithmetic
    pot = dsr.ProgramOfThought("question -> answer")
    with dsr.context(lm=lm):
        predictions = [await pot.acall(question=f"{n} + 1") for n in (1, 2)]
    assert [p.answer for p in predictions] == ["2", "3"]


def test_a_caller_owned_interpreter_is_used_and_left_running(server, lm):
    server.responder = lambda r: (
        code_reply(r, "value = base * 2")
        if "generated_code" in r.output_fields
        else r.reply(reasoning="r", answer=r.inputs["code_output"])
    )
    pot = dsr.ProgramOfThought("question -> answer")
    with PythonInterpreter() as interpreter, dsr.context(lm=lm):
        interpreter.execute("base = 21")  # state the code relies on
        assert pot(interpreter, question="double it").answer == "42"
        assert interpreter.execute("base") == 21  # not shut down
        with pytest.raises(TypeError, match="first positional argument"):
            pot(interpreter=interpreter, question="q")


def test_the_interpreter_factory_setting_and_its_checks(server, lm):
    server.responder = arithmetic
    made = []

    def factory():
        made.append(PythonInterpreter(timeout=30))
        return made[-1]

    with dsr.context(lm=lm, interpreter_factory=factory):
        assert dsr.ProgramOfThought("question -> answer")(question="2 ** 10").answer == "1024"
    assert len(made) == 1 and "ended" in repr(made[0])  # the module shut its interpreter down
    with pytest.raises(TypeError, match="received an interpreter, not a factory"):
        dsr.ProgramOfThought("question -> answer", interpreter_factory=PythonInterpreter())
    with pytest.raises(TypeError, match="zero-argument callable"):
        dsr.ProgramOfThought("question -> answer", interpreter_factory="deno")


def test_an_evaluation_runs_at_most_max_sandboxes_at_once(server, lm):
    """Eight examples with eight calls in flight, two sandboxes at a time: the server sees how many run."""
    seen = []
    lock = threading.Lock()

    def counting(request):
        with lock:
            seen.append(SLOTS.running)
        return arithmetic(request)

    server.responder = counting
    server.latency = 0.05
    dev = [dsr.Example(question=f"{n} * 3", answer=str(n * 3)).with_inputs("question") for n in range(8)]
    before = SLOTS.running
    dsr.configure(max_sandboxes=before + 2)  # process-wide: sandboxes start in worker threads
    try:
        with dsr.context(lm=lm):
            result = dsr.Evaluate(devset=dev, metric=dsr.answer_exact_match, num_threads=8)(
                dsr.ProgramOfThought("question -> answer")
            )
    finally:
        dsr.configure(max_sandboxes=None)
    assert result.score == 100.0
    assert max(seen) - before == 2  # the cap held, and was reached
    assert SLOTS.running == before


def test_bootstrapping_through_it_gives_demos_that_save_and_load(server, lm, tmp_path):
    server.responder = arithmetic
    train = [dsr.Example(question=f"{n} + {n}", answer=str(2 * n)).with_inputs("question") for n in range(1, 4)]
    with dsr.context(lm=lm):
        compiled = dsr.BootstrapFewShot(
            metric=dsr.answer_exact_match, max_bootstrapped_demos=2, max_labeled_demos=0
        ).compile(dsr.ProgramOfThought("question -> answer"), trainset=train)
    names = [name for name, _ in compiled.named_predictors()]
    assert names == ["code_generate.predict", "code_regenerate.predict", "generate_output.predict"]
    assert [d["question"] for d in compiled.code_generate.predict.demos] == ["1 + 1", "2 + 2"]
    assert compiled.generate_output.predict.demos[0]["code_output"] == "2"
    assert compiled.code_regenerate.predict.demos == []  # no example needed a second attempt
    compiled.save(tmp_path / "pot.json")
    saved = json.loads((tmp_path / "pot.json").read_text())
    assert set(saved) == {*names, "metadata"}
    loaded = dsr.ProgramOfThought("question -> answer")
    loaded.load(tmp_path / "pot.json")
    assert loaded.code_generate.predict.demos == compiled.code_generate.predict.demos


# -- CodeAct -----------------------------------------------------------------------------------------------------


def where_am_i() -> str:
    """Name the platform the code runs on."""
    import sys

    return sys.platform


def population(city: str) -> int:
    """Look up the number of people living in a city."""
    return {"Lima": 10092000}[city]


def acting(request):
    outputs, inputs = request.output_fields, request.inputs
    if "finished" in outputs:
        trajectory = inputs.get("trajectory", "")
        if "code_output_1" in trajectory:
            return request.reply(generated_code="```python\nprint(population('Lima'))\n```", finished=True)
        if "observation_0" in trajectory:
            return request.reply(generated_code="```python\nwhere_am_i()\n```", finished=False)
        return request.reply(generated_code="", finished=False)  # nothing to run: an observation says so
    return request.reply(reasoning="From the trajectory.", answer="10092000")


def test_code_act_runs_its_tools_inside_the_sandbox_step_by_step(server, lm):
    server.responder = acting
    act = dsr.CodeAct("question -> answer", tools=[where_am_i, population], max_iters=5)
    assert [name for name, _ in act.named_predictors()] == ["codeact", "extractor.predict"]
    with dsr.context(lm=lm):
        prediction = act(question="How many people live in Lima?")
    assert prediction.answer == "10092000"
    assert prediction.trajectory == {
        "observation_0": "Failed to parse the generated code: Error: Empty code after parsing.",
        "generated_code_1": "where_am_i()",
        "code_output_1": '"emscripten"',  # the tool ran in Pyodide, not on the host
        "generated_code_2": "print(population('Lima'))",
        "code_output_2": '"10092000\\n"',
    }
    assert server.stats.requests == 4  # three steps, then extract
    system = server.requests[0]["messages"][0]["content"]
    assert "You have access to the Python Standard Library and the following functions:" in system
    assert "(1) where_am_i, whose description is <desc>Name the platform the code runs on.</desc>" in system


async def test_code_act_async_and_its_tool_checks(server, lm):
    server.responder = acting
    act = dsr.CodeAct("question -> answer", tools=[where_am_i, population])
    with dsr.context(lm=lm):
        prediction = await act.acall(question="How many?")
    assert prediction.trajectory["code_output_1"] == '"emscripten"'

    class Callable:
        def __call__(self, x: int) -> int:
            return x

    with pytest.raises(ValueError, match="only accepts functions"):
        dsr.CodeAct("question -> answer", tools=[Callable()])
