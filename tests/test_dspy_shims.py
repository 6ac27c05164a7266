"""The smaller DSPy names and behaviours that DSPy's own tests import or rely on: module paths
(``adapters.types.*``, ``clients.base_lm.LM_CLASS_STATE_KEY``, ``teleprompt.signature_opt``,
``teleprompt.utils``, ``utils.exceptions``, ``utils.magicattr``, ``primitives.module.set_attribute_by_name``),
an LM subclass's own ``__call__``, DSPy's ``AdapterParseError`` constructor, ``Example``'s repr and length,
``syncify``/``asyncify``."""

from __future__ import annotations

import asyncio
import importlib
import random
import threading

import pytest

import dsr_core as dsr
from dsr_core.utils import DummyLM, magicattr


@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("tool", ("Tool", "ToolCalls")),
        ("image", ("Image",)),
        ("history", ("History",)),
        ("code", ("Code",)),
        ("reasoning", ("Reasoning",)),
        ("audio", ("Audio",)),
        ("file", ("File",)),
        ("document", ("Document",)),
        ("citation", ("Citations",)),
        ("base_type", ("Type",)),
    ],
)
def test_dspys_adapters_types_submodules_give_dsrs_types(module, names):
    imported = importlib.import_module(f"dsr_core.adapters.types.{module}")
    for name in names:
        assert getattr(imported, name) is getattr(dsr.adapters, name)
    assert getattr(dsr.adapters.types, module) is imported  # an attribute of the package, as in DSPy


def test_paths_dspys_tests_import():
    from dsr_core.clients.base_lm import LM_CLASS_STATE_KEY
    from dsr_core.primitives.module import Module, set_attribute_by_name
    from dsr_core.teleprompt.signature_opt import SignatureOptimizer
    from dsr_core.teleprompt.utils import create_minibatch, eval_candidate_program
    from dsr_core.utils.exceptions import AdapterParseError

    assert LM_CLASS_STATE_KEY == "_dspy_lm_class" and Module is dsr.Module
    assert AdapterParseError is dsr.AdapterParseError and issubclass(SignatureOptimizer, dsr.COPRO)
    assert callable(set_attribute_by_name) and callable(create_minibatch) and callable(eval_candidate_program)


def test_magicattr_walks_dotted_and_indexed_paths_and_runs_no_code():
    class Holder:
        pass

    holder = Holder()
    holder.layers = [{"name": "a"}, {"name": "b", "deep": [1, 2, 3]}]
    assert magicattr.get(holder, "layers[1]['deep'][-1]") == 3
    assert magicattr.get(holder, "layers[5]", default="none") == "none"
    magicattr.set(holder, "layers[0]['name']", "z")
    magicattr.set(holder, "extra", 7)
    assert holder.layers[0]["name"] == "z" and holder.extra == 7
    magicattr.delete(holder, "layers[1]['deep']")
    assert holder.layers[1] == {"name": "b"}
    assert magicattr.lookup(holder, "layers[1]") == (holder.layers, 1, True)
    with pytest.raises(ValueError, match="Function calls are not allowed"):
        magicattr.get(holder, "layers.pop()")
    with pytest.raises(TypeError):
        magicattr.get(holder, 3)


def test_set_attribute_by_name_replaces_a_predictor_in_a_program():
    from dsr_core.primitives.module import set_attribute_by_name

    class Two(dsr.Module):
        def __init__(self):
            self.steps = [dsr.Predict("a -> b"), dsr.ChainOfThought("b -> c")]

    program = Two()
    replacement = dsr.Predict("a -> b, why")
    set_attribute_by_name(program, "steps[0]", replacement)
    assert dict(program.named_predictors())["steps[0]"] is replacement


def test_signature_optimizer_is_copro_under_its_old_name(server, lm):
    from dsr_core.teleprompt.signature_opt import SignatureOptimizer

    def respond(request):
        if "proposed_instruction" in request.output_fields:
            return request.reply(proposed_instruction="Answer in capitals.", proposed_prefix_for_output_field="A:")
        return request.reply(answer=request.inputs.get("question", "").upper())

    server.responder = respond
    devset = [dsr.Example(question=q, answer=q.upper()).with_inputs("question") for q in ("a", "b")]
    with pytest.warns(DeprecationWarning, match="replaced with COPRO"):
        optimizer = SignatureOptimizer(metric=dsr.answer_exact_match, breadth=2, depth=1)
    with dsr.context(lm=lm):
        compiled = optimizer.compile(dsr.Predict("question -> answer"), devset=devset, eval_kwargs={})
    assert compiled.total_calls > 0


class SpyLM(dsr.LM):
    """DSPy's tests' pattern: an LM subclass whose own ``__call__`` answers."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []

    def __call__(self, prompt=None, messages=None, **kwargs):
        self.calls.append({"messages": messages, "kwargs": kwargs})
        return ["[[ ## answer ## ]]\n100%"]


def test_an_lm_subclass_own_call_is_what_modules_call():
    spy = SpyLM("dummy")
    predict = dsr.Predict("question -> answer", lm=spy)
    assert predict(question="sure?").answer == "100%"
    assert asyncio.run(predict.acall(question="async?")).answer == "100%"
    assert [c["messages"][-1]["content"].split("\n")[1] for c in spy.calls] == ["sure?", "async?"]

    class Minimal(dsr.BaseLM):
        def __call__(self, prompt=None, messages=None, **kwargs):
            return [{"text": "[[ ## answer ## ]]\nfrom a dict"}]

    assert dsr.Predict("question -> answer", lm=Minimal("m"))(question="q").answer == "from a dict"


def test_adapter_parse_error_takes_dspys_constructor_too():
    signature = dsr.Signature("question -> answer, score: float")
    error = dsr.AdapterParseError("ChatAdapter", signature, "garbled", parsed_result={"answer": "x"})
    text = str(error)
    assert "Adapter ChatAdapter failed to parse the LM response." in text
    assert "Expected to find output fields in the LM response: [answer, score]" in text
    assert "Actual output fields parsed from the LM response: [answer]" in text
    assert (error.adapter_name, error.lm_response, error.raw, error.signature) == (
        "ChatAdapter",
        "garbled",
        "garbled",
        signature,
    )
    own = dsr.AdapterParseError("the reply lacks answer", raw="r", field="answer", adapter="JSONAdapter")
    assert (str(own), own.raw, own.field, own.adapter_name) == ("the reply lacks answer", "r", "answer", "JSONAdapter")


def test_example_repr_and_length_as_dspys():
    example = dsr.Example(question="q", answer="a", dspy_uuid="x1").with_inputs("question")
    assert repr(example) == "Example({'question': 'q', 'answer': 'a'}) (input_keys={'question'})"
    assert str(dsr.Example(a=1)) == "Example({'a': 1}) (input_keys=None)"
    assert len(example) == 2 and example["dspy_uuid"] == "x1"  # hidden from the count, still there
    assert set(example.keys()) == {"question", "answer"} and example.keys() - {"answer"} == {"question"}
    assert ("answer", "a") in example.items() and "x1" not in example.values()
    assert "dspy_uuid" in example.keys(include_dspy=True) and "x1" in example.values(include_dspy=True)
    assert str(dsr.Prediction(answer="x")) == repr(dsr.Prediction(answer="x"))


def test_syncify_and_asyncify():
    class AsyncOnly(dsr.Module):
        def __init__(self):
            self.predict = dsr.Predict("question -> answer")

        async def aforward(self, question):
            return await self.predict.acall(question=question)

    lm = DummyLM([{"answer": "one"}, {"answer": "two"}])
    with dsr.context(lm=lm):
        program = AsyncOnly()
        assert dsr.syncify(program) is program and program(question="q").answer == "one"
        wrapped = dsr.syncify(program, in_place=False)
        assert wrapped(question="q").answer == "two"
        assert [name for name, _ in wrapped.named_predictors()] == ["program.predict"]

    from dsr_core.utils.asyncify import get_limiter

    running, most = [0], [0]
    lock, release = threading.Lock(), threading.Event()

    def blocking(value):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        release.wait(30)
        with lock:
            running[0] -= 1
        return value * 2

    async def many():
        with dsr.context(async_max_workers=3):
            assert get_limiter().total_tokens == 3
            tasks = asyncio.gather(*(dsr.asyncify(blocking)(i) for i in range(6)))
            await asyncio.sleep(0.5)
            release.set()
            return await tasks

    assert asyncio.run(many()) == [0, 2, 4, 6, 8, 10]
    assert most[0] == 3  # the limiter held the threads to async_max_workers


def test_eval_candidate_program_full_minibatch_and_failure():
    from dsr_core.teleprompt.utils import eval_candidate_program

    seen = []

    def evaluate(program, devset, **kwargs):
        seen.append((len(devset), kwargs["callback_metadata"]["metric_key"]))
        return 50.0

    program, trainset = dsr.Predict("a -> b"), list(range(5))
    assert eval_candidate_program(10, trainset, program, evaluate) == 50.0
    assert eval_candidate_program(3, trainset, program, evaluate, rng=random.Random(0)) == 50.0
    assert seen == [(5, "eval_full"), (3, "eval_minibatch")]

    def broken(program, devset, **kwargs):
        raise ValueError("boom")

    assert eval_candidate_program(3, trainset, program, broken).score == 0.0


class SpyAdapter(dsr.ChatAdapter):
    """DSPy's tests' pattern: an adapter subclass that overrides the entry points and counts the calls."""

    def __init__(self):
        super().__init__()
        self.sync_calls, self.async_calls = 0, 0

    def __call__(self, *args, **kwargs):
        self.sync_calls += 1
        return super().__call__(*args, **kwargs)

    async def acall(self, *args, **kwargs):
        self.async_calls += 1
        return await super().acall(*args, **kwargs)


def test_an_adapter_subclass_own_entry_points_are_called_as_dspy_calls_them():
    lm = DummyLM([{"output": "o"}] * 4)
    settings_adapter, call_adapter = SpyAdapter(), SpyAdapter()
    with dsr.context(lm=lm, adapter=settings_adapter):
        program = dsr.Predict("input -> output")
        assert program(input="q").output == "o"
        assert (settings_adapter.sync_calls, settings_adapter.async_calls) == (1, 0)  # the sync call: __call__
        assert asyncio.run(program.acall(input="q")).output == "o"
        assert (settings_adapter.sync_calls, settings_adapter.async_calls) == (1, 1)  # the async one: acall
        program(input="q", adapter=call_adapter)
        assert (call_adapter.sync_calls, settings_adapter.sync_calls) == (1, 1)  # the call's adapter wins
        program.adapter = call_adapter
        assert program(input="q", adapter=None).output == "o"  # None: the predictor's, then the settings'
    assert len(lm.history) == 4


def test_reasoning_indexes_and_iterates_as_its_text():
    reasoning = dsr.Reasoning(content="Hello World")
    assert (reasoning[0], reasoning[-1], reasoning[0:5]) == ("H", "d", "Hello")
    assert "".join(reasoning) == "Hello World" and [c for c in reasoning][:2] == ["H", "e"]


def test_an_explicit_adapter_none_skips_the_predictors_adapter():
    lm = DummyLM([{"output": "o"}])
    settings_adapter = SpyAdapter()
    with dsr.context(lm=lm, adapter=settings_adapter):
        program = dsr.Predict("input -> output", adapter=SpyAdapter())
        program(input="q", adapter=None)
    assert settings_adapter.sync_calls == 1 and program.adapter.sync_calls == 0


def test_adapter_parse_error_takes_dspys_message_keyword():
    error = dsr.AdapterParseError(
        adapter_name="ChatAdapter", signature=dsr.Signature("q -> a"), lm_response="x", message="Critical error"
    )
    assert str(error).startswith("Critical error\n\nAdapter ChatAdapter failed to parse the LM response.")


def test_warn_on_type_mismatch_switches_the_input_type_warning(caplog):
    predict = dsr.Predict("count: int, name: str -> result", lm=DummyLM([{"result": "r"}] * 2))
    with caplog.at_level("WARNING"):
        predict(count="not an int", name="n")
    assert "Type mismatch for field 'count': expected int" in caplog.text
    caplog.clear()
    with dsr.context(warn_on_type_mismatch=False), caplog.at_level("WARNING"):
        predict(count="not an int", name="n")
    assert "Type mismatch" not in caplog.text


def test_a_string_signature_takes_variable_length_tuples(caplog):
    predict = dsr.Predict("pair: tuple[str, int], many: tuple[int, ...] -> result", lm=DummyLM([{"result": "r"}] * 2))
    with caplog.at_level("WARNING"):
        predict(pair=("a", 1), many=(1, 2, 3))
        assert "Type mismatch" not in caplog.text
        predict(pair=("a", 1), many=(1, "x"))
    assert "Type mismatch for field 'many': expected tuple[int, ...]" in caplog.text


def test_dsp_utils_settings_is_dsrs_settings():
    from dsr_core.dsp.utils import dotdict
    from dsr_core.dsp.utils.settings import DEFAULT_CONFIG, settings

    assert settings is dsr.settings and DEFAULT_CONFIG["max_errors"] == 10 and "lm" in DEFAULT_CONFIG
    assert dotdict(long_text="t").long_text == "t"
    with pytest.raises(TypeError):
        DEFAULT_CONFIG["lm"] = "changed"  # type: ignore[index]


def test_to_dict_of_nested_examples_and_history_and_saving_them(tmp_path):
    history = dsr.History(messages=[{"question": "Capital of France?", "answer": "Paris"}])
    example = dsr.Example(question="q", history=history, answer="a")
    assert example.toDict()["history"] == {"messages": [{"question": "Capital of France?", "answer": "Paris"}]}
    assert example.to_dict()["history"] is history  # dsr's own to_dict keeps the value (what a program is given)
    cot = dsr.ChainOfThought("q -> a")
    nested = dsr.Example(q=[dsr.Example(q="inner one"), dsr.Example(q="inner two")], a="Paris", reasoning="n/a")
    cot.predict.demos = [nested.with_inputs("q")]
    cot.save(tmp_path / "cot.json")
    loaded = dsr.ChainOfThought("q -> a")
    loaded.load(tmp_path / "cot.json")
    assert (
        loaded.predict.demos[0]
        == nested.toDict()
        == {"q": [{"q": "inner one"}, {"q": "inner two"}], "a": "Paris", "reasoning": "n/a"}
    )
