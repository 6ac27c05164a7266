"""ReAct against the test server: DSPy's prompts and trajectory, tool errors, truncation, save/load, bootstrap."""

from __future__ import annotations

import json
import re
import threading

import pytest

import dsr_core as dsr
from dsr_core.modules.react import ReAct
from dsr_core.optimizers import BootstrapFewShot

CAPITALS = {"France": "Paris", "Japan": "Tokyo", "Peru": "Lima", "Kenya": "Nairobi", "Chile": "Santiago"}
POPULATIONS = {"Paris": 2102650, "Tokyo": 14094034, "Lima": 10092000, "Nairobi": 4397073, "Santiago": 6257516}


def capital_of(country: str) -> str:
    """Look up the capital city of a country."""
    return CAPITALS[country]


def city_population(city: str) -> int:
    """Look up the number of people living in a city."""
    return POPULATIONS[city]


def question_for(country: str) -> str:
    return f"How many people live in the capital of {country}?"


def agent(*, extract_needs_demos: bool = False):
    """The server's model: it follows the tool list (capital, then population, then finish). Its extract step
    answers with the last observation; with ``extract_needs_demos`` only when shown demos, else "unknown"."""

    def respond(request):
        inputs = request.inputs  # the trajectory's own [[ ## ... ## ]] sections are parsed out as well
        if "next_tool_name" in request.output_fields:
            if "observation_1" in inputs:
                return request.reply(next_thought="I have the number.", next_tool_name="finish", next_tool_args={})
            if "observation_0" in inputs:
                city = inputs["observation_0"]
                return request.reply(
                    next_thought=f"Now the population of {city}.",
                    next_tool_name="city_population",
                    next_tool_args={"city": city},
                )
            country = re.search(r"capital of (\w+)", inputs["question"]).group(1)
            return request.reply(
                next_thought="First the capital.", next_tool_name="capital_of", next_tool_args={"country": country}
            )
        knows = request.demos or not extract_needs_demos
        answer = inputs.get("observation_1", "unknown") if knows else "unknown"
        return request.reply(reasoning="The trajectory has it.", answer=answer)

    return respond


def expected_instructions() -> str:
    """The react predictor's instructions exactly as DSPy 3.x writes them for this signature and tools."""
    return "\n".join(
        [
            "Given the fields `question`, produce the fields `answer`.\n",
            "You are an Agent. In each episode, you will be given the fields `question` as input. And you can see your past trajectory so far.",
            "Your goal is to use one or more of the supplied tools to collect any necessary information for producing `answer`.\n",
            "To do this, you will interleave next_thought, next_tool_name, and next_tool_args in each turn, and also when finishing the task.",
            "After each tool call, you receive a resulting observation, which gets appended to your trajectory.\n",
            "When writing next_thought, you may reason about the current situation and plan for future steps.",
            "When selecting the next_tool_name and its next_tool_args, the tool must be one of:\n",
            "(1) capital_of, whose description is <desc>Look up the capital city of a country.</desc>. It takes arguments {'country': {'type': 'string'}}.",
            "(2) city_population, whose description is <desc>Look up the number of people living in a city.</desc>. It takes arguments {'city': {'type': 'string'}}.",
            "(3) finish, whose description is <desc>Marks the task as complete. That is, signals that all information for producing the outputs, i.e. `answer`, are now available to be extracted.</desc>. It takes arguments {}.",
            "When providing `next_tool_args`, the value inside the field must be in JSON format",
        ]
    )


@pytest.fixture
def react(server, lm):
    server.responder = agent()
    dsr.configure(lm=lm)
    return ReAct("question -> answer", tools=[capital_of, city_population], max_iters=5)


def test_signatures_and_names_match_dspy(react):
    assert [name for name, _ in react.named_predictors()] == ["react", "extract.predict"]
    assert list(react.tools) == ["capital_of", "city_population", "finish"]
    signature = react.react.signature
    assert signature.instructions == expected_instructions()
    assert list(signature.input_fields) == ["question", "trajectory"]
    assert list(signature.output_fields) == ["next_thought", "next_tool_name", "next_tool_args"]
    extract = react.extract.predict.signature
    assert list(extract.input_fields) == ["question", "trajectory"]
    assert list(extract.output_fields) == ["reasoning", "answer"]
    assert extract.instructions == "Given the fields `question`, produce the fields `answer`."


async def test_agent_calls_tools_and_extracts(react, server):
    prediction = await react.acall(question=question_for("Peru"))
    assert prediction.answer == "10092000"
    assert prediction.reasoning == "The trajectory has it."
    assert prediction.trajectory == {
        "thought_0": "First the capital.",
        "tool_name_0": "capital_of",
        "tool_args_0": {"country": "Peru"},
        "observation_0": "Lima",
        "thought_1": "Now the population of Lima.",
        "tool_name_1": "city_population",
        "tool_args_1": {"city": "Lima"},
        "observation_1": 10092000,
        "thought_2": "I have the number.",
        "tool_name_2": "finish",
        "tool_args_2": {},
        "observation_2": "Completed.",
    }
    assert server.stats.requests == 4  # three react steps and the extract step
    assert prediction.usage.lm_calls == 4

    first, second, extract = server.requests[0], server.requests[1], server.requests[3]
    assert expected_instructions().replace("\n", "\n        ") in first["messages"][0]["content"]
    assert "[[ ## trajectory ## ]]\n\n\n" in first["messages"][1]["content"]  # the empty trajectory
    assert (
        "[[ ## trajectory ## ]]\n[[ ## thought_0 ## ]]\nFirst the capital.\n\n[[ ## tool_name_0 ## ]]\ncapital_of\n\n"
        '[[ ## tool_args_0 ## ]]\n{"country": "Peru"}\n\n[[ ## observation_0 ## ]]\nLima'
    ) in second["messages"][1]["content"]
    note = "must exactly match (no extra characters) one of: capital_of; city_population; finish"
    assert note in first["messages"][0]["content"]
    assert "[[ ## observation_2 ## ]]\nCompleted." in extract["messages"][1]["content"]
    assert "`[[ ## reasoning ## ]]`, then `[[ ## answer ## ]]`" in extract["messages"][1]["content"]


async def test_native_function_calling_leaves_react_as_it_is(react, server):
    """DSPy's ReAct asks for next_tool_name/next_tool_args, not a ToolCalls output, so an adapter with
    use_native_function_calling sends the same prompts and no ``tools`` (DSPy's _call_preprocess only acts on a
    ToolCalls output)."""
    await react.acall(question=question_for("Peru"))
    plain = [r["messages"] for r in server.requests]
    for adapter in (dsr.ChatAdapter(use_native_function_calling=True), dsr.ChatAdapter()):
        server.reset_stats()
        with dsr.context(adapter=adapter, lm=dsr.LM("test-model", api_base=server.url, cache=False)):
            prediction = await react.acall(question=question_for("Peru"))
        assert prediction.answer == "10092000"
        assert [r["messages"] for r in server.requests] == plain and len(plain) == 4
        assert not any("tools" in r for r in server.requests)


def test_sync_call_runs_tools_in_the_calling_thread(server, lm):
    server.responder = agent()
    threads = []

    def capital_of(country: str) -> str:
        """Look up the capital city of a country."""
        threads.append(threading.get_ident())
        return CAPITALS[country]

    react = ReAct("question -> answer", tools=[capital_of, city_population])
    react.set_lm(lm)
    assert react(question=question_for("Japan")).answer == "14094034"
    assert threads == [threading.get_ident()]


async def test_tool_errors_become_observations(server, lm):
    def capital_of(country: str) -> str:
        """Look up the capital city of a country."""
        raise ValueError(f"no capital known for {country}")

    def respond(request):
        if "next_tool_name" not in request.output_fields:
            return request.reply(reasoning="It failed.", answer="n/a")
        if "observation_0" in request.inputs:
            return request.reply(
                next_thought="Try a number.", next_tool_name="city_population", next_tool_args={"city": 7}
            )
        return request.reply(next_thought="Capital.", next_tool_name="capital_of", next_tool_args={"country": "Peru"})

    server.responder = respond
    react = ReAct("question -> answer", tools=[capital_of, city_population])
    react.set_lm(lm)
    prediction = await react.acall(question="q", max_iters=2)
    first, second = prediction.trajectory["observation_0"], prediction.trajectory["observation_1"]
    assert first.startswith("Execution error in capital_of: \nTraceback (most recent call last):")
    assert first.endswith("ValueError: no capital known for Peru")
    assert second.startswith("Execution error in city_population: ")  # 7 is not a string: schema check
    assert "Arg city is invalid" in second
    assert "thought_2" not in prediction.trajectory and prediction.answer == "n/a"
    assert server.stats.requests == 3  # max_iters=2 react steps, then extract


async def test_finish_only_agent(server, lm):
    server.responder = lambda r: (
        r.reply(next_thought="Done.", next_tool_name="finish", next_tool_args={})
        if "next_tool_name" in r.output_fields
        else r.reply(reasoning="r", answer="42")
    )
    react = ReAct("question -> answer", tools=[])
    react.set_lm(lm)
    prediction = await react.acall(question="q")
    assert prediction.answer == "42"
    assert prediction.trajectory == {
        "thought_0": "Done.",
        "tool_name_0": "finish",
        "tool_args_0": {},
        "observation_0": "Completed.",
    }


async def test_context_window_overflow_drops_the_oldest_step(react, server):
    def too_long(request):
        step = request.inputs
        return "next_tool_name" in request.output_fields and "observation_0" in step and "observation_1" in step

    server.inject("400", times=5, match=too_long, message="This model's maximum context length is 128 tokens")
    prediction = await react.acall(question=question_for("Kenya"))
    trajectory = prediction.trajectory
    assert "thought_0" not in trajectory and "observation_0" not in trajectory
    assert trajectory["observation_1"] == 4397073 and trajectory["tool_name_2"] == "finish"
    assert prediction.answer == "4397073"
    assert server.stats.faults_served == 1


def test_truncation_needs_more_than_one_step(react):
    one = {"thought_0": "t", "tool_name_0": "finish", "tool_args_0": {}, "observation_0": "Completed."}
    with pytest.raises(dsr.ContextWindowExceededError):
        react.truncate_trajectory(dict(one))
    two = {**{k.replace("_0", "_1"): v for k, v in one.items()}}
    assert react.truncate_trajectory({**one, **two}) == two


async def test_overflow_on_the_first_step_ends_the_loop_and_still_extracts(react, server):
    server.inject(
        "400", times=3, match=lambda r: "next_tool_name" in r.output_fields, message="context length exceeded"
    )
    prediction = await react.acall(question=question_for("Chile"))
    assert prediction.trajectory == {}
    assert prediction.answer == "unknown"  # the extract step saw no observation


def test_saved_state_keeps_both_predictors(react):
    react.react.demos = [
        {"question": "q", "trajectory": "", "next_thought": "t", "next_tool_name": "finish", "next_tool_args": {}}
    ]
    react.extract.predict.demos = [{"question": "q", "trajectory": "", "reasoning": "r", "answer": "a"}]
    saved = json.loads(json.dumps(react.dump_state()))  # what program.save writes
    assert {"react", "extract.predict"} <= set(saved)
    assert saved["react"]["signature"]["instructions"] == expected_instructions()
    fresh = ReAct("question -> answer", tools=[capital_of, city_population], max_iters=5)
    fresh.load_state(saved)
    assert fresh.react.demos == react.react.demos
    assert fresh.extract.predict.demos == react.extract.predict.demos
    assert fresh.react.signature.instructions == expected_instructions()


def test_bootstrap_few_shot_compiles_demos_for_both_predictors(server, lm):
    server.responder = agent(extract_needs_demos=True)
    dsr.configure(lm=lm)
    countries = list(CAPITALS)
    trainset = [
        dsr.Example(question=question_for(c), answer=str(POPULATIONS[CAPITALS[c]])).with_inputs("question")
        for c in countries[:3]
    ]
    devset = [
        dsr.Example(question=question_for(c), answer=str(POPULATIONS[CAPITALS[c]])).with_inputs("question")
        for c in countries[3:]
    ]

    def metric(example, prediction, trace=None):
        return prediction.answer == example.answer

    student = ReAct("question -> answer", tools=[capital_of, city_population])
    baseline = dsr.Evaluate(devset, metric)(student).score
    compiled = BootstrapFewShot(metric=metric, max_bootstrapped_demos=2, max_labeled_demos=2).compile(student, trainset)
    assert student.react.demos == [] and student.extract.predict.demos == []

    react_demos = compiled.react.demos
    assert react_demos, "the react predictor got no demos"
    bootstrapped = [d for d in react_demos if "next_tool_name" in d]
    assert bootstrapped and bootstrapped[0]["next_tool_name"] == "capital_of"
    assert bootstrapped[0]["trajectory"] == "" and bootstrapped[0]["next_tool_args"] in (
        {"country": c} for c in countries[:3]
    )
    extract_demos = [d for d in compiled.extract.predict.demos if "reasoning" in d]
    assert extract_demos and "[[ ## observation_1 ## ]]" in extract_demos[0]["trajectory"]

    server.reset_stats()
    improved = dsr.Evaluate(devset, metric)(compiled).score
    assert baseline == 0.0 and improved == 100.0
    react_requests = [b for b in server.requests if "next_tool_name" in b["messages"][-1]["content"]]
    assert any(
        m["role"] == "assistant" and "[[ ## next_tool_name ## ]]\ncapital_of" in m["content"]
        for m in react_requests[0]["messages"]
    )
