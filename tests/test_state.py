import json
from pathlib import Path

import pytest

import dsr_core as dsr
from tests.programs import RewriteThenAnswer

FIXTURES = Path(__file__).parent / "fixtures"


def optimized_program():
    program = RewriteThenAnswer()
    program.rewrite.signature = program.rewrite.signature.with_instructions("Make a query.").with_updated_fields(
        "query", desc="keywords only"
    )
    program.answer.predict.demos = [
        dsr.Example(question="q", context=["c"], reasoning="r", answer="a"),
        {"question": "q2", "context": ["c2"], "reasoning": "r2", "answer": "a2"},
    ]
    program.answer.predict.lm = dsr.LM("gpt-4o-mini", api_key="sk-SECRET", temperature=0.4)
    return program


def test_save_load_round_trip(tmp_path):
    program = optimized_program()
    path = tmp_path / "program.json"
    program.save(path)
    data = json.loads(path.read_text())
    assert set(data) == {"rewrite", "answer.predict", "metadata"}
    assert data["metadata"]["format"] == "dsr-program/1"
    assert data["metadata"]["signature_hashes"]["rewrite"] == program.rewrite.signature.hash
    assert "sk-SECRET" not in path.read_text()

    fresh = RewriteThenAnswer()
    fresh.load(path)
    assert fresh.rewrite.signature == program.rewrite.signature
    assert fresh.answer.predict.signature == program.answer.predict.signature
    assert fresh.answer.predict.demos[0]["answer"] == "a" and len(fresh.answer.predict.demos) == 2
    assert fresh.answer.predict.lm.model == "gpt-4o-mini" and fresh.answer.predict.lm.temperature == 0.4
    assert fresh.dump_state() == program.dump_state()


def test_loading_into_a_different_shape_fails_clearly(tmp_path):
    path = tmp_path / "program.json"
    optimized_program().save(path)
    other = dsr.Predict("question -> answer")
    with pytest.raises(dsr.ProgramStateError, match="do not match the program's") as info:
        other.load(path)
    assert "missing from the file: ['self']" in str(info.value)

    class Retyped(RewriteThenAnswer):
        def __init__(self):
            super().__init__()
            self.answer = dsr.ChainOfThought("question, context: list[str] -> answer: int")

    with pytest.raises(dsr.ProgramStateError, match="answer.predict.*'answer' \\(output, str\\)"):
        Retyped().load(path)


def test_corrupt_and_pickle_paths_are_refused(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"rewrite": {"signature": ')
    with pytest.raises(dsr.ProgramStateError, match="not valid JSON"):
        RewriteThenAnswer().load(path)
    with pytest.raises(dsr.ProgramStateError, match="JSON only"):
        RewriteThenAnswer().save(tmp_path / "program.pkl")


def test_loads_a_program_saved_by_dspy():
    program = dsr.load_program(str(FIXTURES / "dspy_program.json"), RewriteThenAnswer())
    assert program.rewrite.signature.instructions == "Rewrite the question as a search query."
    assert program.rewrite.signature.output_fields["query"].desc == "a short search query"
    assert program.rewrite.signature.input_fields["question"].desc == ""  # DSPy's ${question} placeholder
    predict = program.answer.predict
    assert predict.signature.instructions == "Answer from the context only."
    assert predict.demos[0]["answer"] == "Shakespeare"
    assert predict.lm.model == "gpt-4o-mini" and predict.lm.max_tokens == 512


async def test_loaded_dspy_program_sends_the_same_prompt(server):
    program = dsr.load_program(str(FIXTURES / "dspy_program.json"), RewriteThenAnswer())
    lm = dsr.LM("m", api_base=server.url)
    program.set_lm(lm)
    server.responder = lambda r: r.reply(**{n: "x" for n in r.output_fields})
    await program.acall(question="Who painted the Mona Lisa?")
    answer_call = server.requests[-1]["messages"]
    assert "Answer from the context only." in answer_call[0]["content"]
    assert answer_call[2]["content"].startswith("[[ ## reasoning ## ]]\nThe context names the author.")


def test_state_has_no_secrets_even_in_lm_kwargs():
    predict = dsr.Predict("q -> a", lm=dsr.LM("m", api_key="sk-ZZZ", api_base="http://u:p@h/v1"))
    text = json.dumps(predict.dump_state())
    assert "sk-ZZZ" not in text and "u:p@" not in text


def test_program_state_keeps_predictors_and_metadata_apart(tmp_path):
    from dsr_core.state import ProgramState

    program = optimized_program()
    dumped = program.dump_state()
    state = ProgramState.from_json(dumped)
    assert list(state.predictors()) == ["rewrite", "answer.predict"] and "metadata" not in state.predictors()
    assert state.metadata == dumped["metadata"] and state.program_ref == "tests.programs:RewriteThenAnswer"
    assert json.dumps(state.to_json()) == json.dumps(dumped)  # the same dict, in the same order
    path = tmp_path / "program.json"
    program.save(path)
    assert json.dumps(state.to_file(), indent=2, ensure_ascii=False) == path.read_text()  # the file, byte for byte
    assert ProgramState.from_json({"rewrite": dumped["rewrite"]}).to_json() == {"rewrite": dumped["rewrite"]}

    predict = dsr.Predict("q -> a")
    predict.save(tmp_path / "predict.json")
    text = (tmp_path / "predict.json").read_text()
    flat = ProgramState.from_json(json.loads(text))  # a bare Predict's file is flat
    assert list(flat.predictors()) == ["self"] and flat.predictors()["self"] == predict.dump_state()["self"]
    assert json.dumps(flat.to_file(), indent=2, ensure_ascii=False) == text
    assert flat.with_entries({"self": {**flat.predictors()["self"], "demos": [{"q": "1", "a": "2"}]}}).metadata == (
        flat.metadata
    )
