from typing import Literal, Optional

import pydantic
import pytest

import dsr_core as dsr
from dsr_core.errors import SignatureError


class Person(pydantic.BaseModel):
    name: str
    age: int


def test_inline_signature_types_and_defaults():
    sig = dsr.Signature("question: str, context: list[str] -> answer: str, confidence: float")
    assert list(sig.input_fields) == ["question", "context"]
    assert list(sig.output_fields) == ["answer", "confidence"]
    assert sig.input_fields["context"].annotation == list[str]
    assert sig.output_fields["confidence"].annotation is float
    assert sig.instructions == "Given the fields `question`, `context`, produce the fields `answer`, `confidence`."
    untyped = dsr.Signature("q, ctx -> a")
    assert all(f.annotation is str for f in untyped.fields.values())


def test_inline_signature_rich_types():
    sig = dsr.Signature(
        "a: dict[str, int], b: Optional[int], c: int | None -> label: Literal['x', 'y'], p: Person",
        custom_types={"Person": Person},
    )
    assert sig.input_fields["a"].annotation == dict[str, int]
    assert sig.input_fields["b"].annotation == Optional[int]  # noqa: UP045
    assert sig.output_fields["label"].annotation == Literal["x", "y"]
    assert sig.output_fields["p"].annotation is Person


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("question answer", "exactly one '->'"),
        ("a -> b -> c", "exactly one '->'"),
        (" -> answer", "no input fields"),
        ("question -> ", "no output fields"),
        ("question -> answer: strr", "unknown type 'strr'"),
        ("q: list[ -> a", "cannot parse input fields"),
        ("q=1 -> a", "plain 'name'"),
        ("q -> a: Literal[int]", "Literal[...] takes only constants"),
        ("q -> instructions", "reserved"),
    ],
)
def test_malformed_signatures_say_what_and_where(text, fragment):
    with pytest.raises(SignatureError, match=fragment.replace("[", r"\[").replace("(", r"\(")):
        dsr.Signature(text)


def test_unknown_type_error_gives_column():
    with pytest.raises(SignatureError) as info:
        dsr.Signature("question -> answer: strr")
    assert "column 20" in str(info.value)


def test_class_signature_docstring_and_fields():
    class QA(dsr.Signature):
        """Answer with a number."""

        question: str = dsr.InputField(desc="a math question")
        answer: int = dsr.OutputField(desc="the result")

    assert QA.instructions == "Answer with a number."
    assert QA.input_fields["question"].desc == "a math question"
    assert QA.output_fields["answer"].prefix == "Answer:"
    with pytest.raises(SignatureError, match="declare it with"):

        class Bad(dsr.Signature):
            question: str


def test_transforms_are_immutable_and_hash_is_stable():
    sig = dsr.Signature("question -> answer")
    changed = sig.with_instructions("Be brief.")
    assert sig.instructions != changed.instructions
    assert sig != changed and sig.hash != changed.hash
    assert dsr.Signature("question -> answer") == sig
    assert dsr.Signature("question -> answer").hash == sig.hash
    updated = sig.with_updated_fields("answer", desc="one word", type_=int)
    assert updated.output_fields["answer"].desc == "one word"
    assert updated.output_fields["answer"].annotation is int
    assert sig.output_fields["answer"].desc == ""
    pre = sig.prepend("reasoning", dsr.OutputField())
    assert list(pre.output_fields) == ["reasoning", "answer"]
    app = sig.append("context", dsr.InputField(), list[str])
    assert list(app.input_fields) == ["question", "context"]
    assert list(app.delete("context").input_fields) == ["question"]
    with pytest.raises(AttributeError):
        sig.instructions = "mutated"
    with pytest.raises(SignatureError, match="no field"):
        sig.with_updated_fields("nope", desc="x")


def test_hash_is_stable_across_processes():
    import subprocess
    import sys

    code = "import dsr_core as dsr; print(dsr.Signature('question, context: list[str] -> answer: int').hash)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == dsr.Signature("question, context: list[str] -> answer: int").hash


def test_a_signature_without_a_docstring_gets_dspys_default_instructions():
    """Not the base class's docstring: optimizers start from these instructions."""

    class QA(dsr.Signature):
        question = dsr.InputField()  # no annotation: a str, as in DSPy
        context: list[str] = dsr.InputField()
        answer = dsr.OutputField()

    assert QA.instructions == "Given the fields `question`, `context`, produce the fields `answer`."
    assert list(QA.fields) == ["question", "context", "answer"]  # in the order written
    assert QA.fields["question"].annotation is str and QA.fields["answer"].annotation is str

    class Documented(dsr.Signature):
        """Answer briefly."""

        question: str = dsr.InputField()
        answer: str = dsr.OutputField()

    class Child(Documented):
        extra: str = dsr.OutputField()

    assert Child.instructions == "Answer briefly."  # a parent signature's instructions carry over
