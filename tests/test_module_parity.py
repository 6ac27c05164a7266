"""The Module API with DSPy's names and behaviour: sub-modules, parameters, copies, batch, LMs, history."""

import threading

import pytest

import dsr_core as dsr
from tests.programs import RewriteThenAnswer


class Layered(dsr.Module):
    def __init__(self):
        self.layers = [dsr.Predict("a -> b"), dsr.ChainOfThought("a -> b")]
        self.by_key = {"k": dsr.Predict("a -> b")}
        self._private = dsr.Predict("a -> b")
        self.nested = [[dsr.Predict("a -> b")]]


def test_names_follow_dspy():
    assert [n for n, _ in RewriteThenAnswer().named_sub_modules()] == [
        "self",
        "self.rewrite",
        "self.answer",
        "self.answer.predict",
    ]
    program = Layered()
    # DSPy 3.4.1 gives exactly these (nested lists are not parameters; private attributes are)
    assert [n for n, _ in program.named_predictors()] == ["layers[0]", "layers[1].predict", "by_key['k']", "_private"]
    assert [n for n, _ in program.named_sub_modules()] == [
        "self",
        "self._private",  # breadth first: modules held directly come before list items
        "self.layers[0]",
        "self.layers[1]",
        "self.by_key[k]",
        "self.layers[1].predict",
        "self.nested[0][0]",
    ]
    assert [n for n, _ in dsr.Predict("a -> b").named_parameters()] == ["self"]
    assert [n for n, _ in dsr.ChainOfThought("a -> b").named_predictors()] == ["predict"]
    assert [type(m).__name__ for _, m in program.named_sub_modules(type_=dsr.ChainOfThought)] == ["ChainOfThought"]
    assert len(program.parameters()) == 4


def test_a_compiled_sub_module_is_frozen():
    program = RewriteThenAnswer()
    program.answer._compiled = True
    assert [n for n, _ in program.named_predictors()] == ["rewrite"]


def test_state_of_a_layered_program_round_trips(tmp_path):
    program = Layered()
    program.layers[1].predict.demos = [{"a": "1", "reasoning": "r", "b": "2"}]
    program.save(tmp_path / "p.json")
    fresh = Layered().load(tmp_path / "p.json")
    assert fresh.layers[1].predict.demos == [{"a": "1", "reasoning": "r", "b": "2"}]


def test_deepcopy_and_reset_copy_with_locks_and_clients(lm):
    class Holder(dsr.Module):
        def __init__(self):
            self.lock = threading.Lock()
            self.client = lm
            self.qa = dsr.Predict("question -> answer", lm=lm)
            self.qa.demos = [{"question": "q", "answer": "a"}]

    original = Holder()
    clone = original.deepcopy()
    assert clone.qa is not original.qa and clone.qa.lm is lm and clone.client is lm
    clone.qa.demos.append({"question": "x", "answer": "y"})
    assert len(original.qa.demos) == 1
    assert original.reset_copy().qa.demos == [] and original.qa.demos


def test_set_get_lm_and_map_named_predictors(lm):
    program = RewriteThenAnswer()
    program.set_lm(lm)
    assert program.get_lm() is lm
    program.rewrite.lm = dsr.LM("other", api_base="http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match="Multiple LMs"):
        program.get_lm()
    replaced = dsr.Predict("question -> query")
    assert program.map_named_predictors(lambda p: replaced if p is program.rewrite else p) is program
    assert program.rewrite is replaced
    layered = Layered().map_named_predictors(lambda p: dsr.Predict("x -> y"))
    assert all(p.signature.signature == "x -> y" for p in layered.predictors())
    assert layered.by_key["k"].signature.signature == "x -> y"


def test_batch_and_module_history(server, lm, capsys):
    server.responder = lambda r: r.reply(answer=r.inputs["question"].upper())
    qa = dsr.Predict("question -> answer", lm=lm)
    examples = [dsr.Example(question=f"q{i}", answer="").with_inputs("question") for i in range(6)]
    results = qa.batch(examples, num_threads=3)
    assert [r.answer for r in results] == [f"Q{i}" for i in range(6)]
    assert len(qa.history) == 6
    assert "Q5" in qa.inspect_history(1) or "Q" in capsys.readouterr().out


def test_batch_reports_failures(server, lm):
    server.responder = lambda r: r.reply(answer="ok") if r.inputs["question"] != "bad" else "no fields here"
    qa = dsr.Predict("question -> answer", lm=lm)
    examples = [dsr.Example(question=q).with_inputs("question") for q in ("a", "bad", "c")]
    results, failed, errors = qa.batch(examples, return_failed_examples=True, max_errors=5)
    assert [r and r.answer for r in results] == ["ok", None, "ok"]
    assert failed == [examples[1]] and isinstance(errors[0], dsr.AdapterParseError)
    with pytest.raises(dsr.DsrError, match="max_errors=0"):
        qa.batch(examples, max_errors=0)


def test_save_program_and_pickle_point_at_json(tmp_path):
    program = RewriteThenAnswer()
    with pytest.raises(dsr.ProgramStateError, match="never pickles.*program.save"):
        program.save(tmp_path / "whole", save_program=True)
    with pytest.raises(dsr.ProgramStateError, match="JSON only.*program.json"):
        program.save(tmp_path / "program.pkl")
    (tmp_path / "program.pkl").write_bytes(b"\x80\x04.")
    with pytest.raises(dsr.ProgramStateError, match="JSON only"):
        program.load(tmp_path / "program.pkl", allow_pickle=True)
