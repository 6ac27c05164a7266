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


# ---------------------------------------------------------------------------------------------------------
# DSPy 3.x parity: the behaviour DSPy's own signature tests pin


def test_make_signature_from_string_dict_and_instructions():
    from dsr_core.signatures import make_signature

    sig = make_signature("question, context: list[str] -> answer: int")
    assert sig.__name__ == "StringSignature"
    assert sig.input_fields["context"].annotation == list[str] and sig.output_fields["answer"].annotation is int
    named = make_signature({"q": (str, dsr.InputField()), "a": dsr.OutputField()}, "Answer.", "QA")
    assert named.__name__ == "QA" and named.instructions == "Answer." and named.fields["a"].annotation is str
    assert dsr.Signature("input1 -> output1", "This is a test").instructions == "This is a test"
    assert dsr.Signature("input1 -> output1", instructions="This is a test").instructions == "This is a test"
    assert dsr.Signature("a, b -> c").instructions == "Given the fields `a`, `b`, produce the fields `c`."
    fields = {"input_str_list": (list[str], dsr.InputField()), "output_tup": (tuple[int, float], dsr.OutputField())}
    assert dsr.Signature(fields).output_fields["output_tup"].annotation == tuple[int, float]
    with pytest.raises(ValueError, match="distinct names"):
        dsr.Signature("value -> value")
    with pytest.raises(ValueError):
        dsr.Signature("")


def test_inline_types_resolve_from_typing_and_the_callers_scope():
    from pathlib import Path

    class CustomType(pydantic.BaseModel):
        value: str

    sig = dsr.Signature("input: Path, other: CustomType | None -> output: Tuple[int, Optional[float]]")
    assert sig.input_fields["input"].annotation is Path
    assert sig.input_fields["other"].annotation == Optional[CustomType]  # noqa: UP045
    assert sig.output_fields["output"].annotation == tuple[int, Optional[float]]  # noqa: UP006, UP045
    nested = dsr.Signature("x: dict[str, list[Optional[Tuple[int, str]]]] -> y: Union[list[str], dict[str, Any]]")
    assert nested.input_fields["x"].annotation.__origin__ is dict
    explicit = dsr.Signature("input: Thing -> output", custom_types={"Thing": CustomType})
    assert explicit.input_fields["input"].annotation is CustomType


def test_fields_expose_dspys_metadata_and_prefixes():
    from dsr_core.signatures import infer_prefix

    class TestSignature(dsr.Signature):
        input = dsr.InputField(prefix="Modified:")
        output = dsr.OutputField()

    assert TestSignature.input_fields["input"].json_schema_extra["prefix"] == "Modified:"
    assert TestSignature.output_fields["output"].json_schema_extra["prefix"] == "Output:"
    assert TestSignature.output_fields["output"].json_schema_extra["desc"] == "${output}"
    assert TestSignature.output_fields["output"].json_schema_extra["__dspy_field_type"] == "output"
    assert infer_prefix("someAttributeName42IsCool") == "Some Attribute Name 42 Is Cool"
    assert infer_prefix("modelT45Enhanced") == "Model T 45 Enhanced"
    assert infer_prefix("isHTTPSSecure123") == "Is HTTPS Secure 123"
    assert infer_prefix("some_attribute_name") == "Some Attribute Name"
    assert dsr.Signature("input1 -> output").fields["input1"].prefix == "Input 1:"


def test_constraints_and_defaults_on_fields():
    class MySignature(dsr.Signature):
        inputs: str = dsr.InputField(default="none given")
        outputs1: str = dsr.OutputField(min_length=5, max_length=10)
        outputs2: int = dsr.OutputField(ge=5, le=10, description="a score")

    assert MySignature.output_fields["outputs1"].json_schema_extra["constraints"] == (
        "minimum length: 5, maximum length: 10"
    )
    assert "greater than or equal to: 5" in MySignature.output_fields["outputs2"].json_schema_extra["constraints"]
    assert MySignature.output_fields["outputs2"].desc == "a score"  # pydantic's description= is DSPy's desc
    assert MySignature.input_fields["inputs"].default == "none given"
    assert not MySignature.output_fields["outputs1"].has_default


def test_signature_methods_dspy_programs_use():
    class CustomSignature(dsr.Signature):
        """I am just an instruction."""

        sentence = dsr.InputField(desc="I am an innocent input!")
        sentiment = dsr.OutputField()

    state = CustomSignature.dump_state()
    assert state == {
        "instructions": "I am just an instruction.",
        "fields": [
            {"prefix": "Sentence:", "description": "I am an innocent input!"},
            {"prefix": "Sentiment:", "description": "${sentiment}"},
        ],
    }

    class Other(dsr.Signature):
        """I am a malicious instruction."""

        sentence = dsr.InputField(desc="I am an malicious input!")
        sentiment = dsr.OutputField()

    loaded = Other.load_state(state)
    assert loaded.dump_state() == state and loaded.equals(CustomSignature)
    assert Other.instructions == "I am a malicious instruction." and not Other.equals(CustomSignature)
    assert dsr.Signature("input1 -> output1").equals(dsr.Signature("input1 -> output1"))
    assert not dsr.Signature("input1 -> output1").equals(dsr.Signature("input2 -> output2"))
    assert dsr.Signature("input: str | None -> output: int | str").equals(
        dsr.Signature("input: Optional[str] -> output: Union[int, str]")
    )
    sig = dsr.Signature("input1, input2 -> output")
    assert sig.delete("nonexistent").signature == sig.signature  # DSPy ignores a missing name
    with pytest.raises(ValueError, match="Invalid index to insert"):
        sig.insert(5, "extra", dsr.InputField())
    assert list(sig.insert(1, "mid", dsr.InputField()).input_fields) == ["input1", "mid", "input2"]
    assert sig.with_updated_fields("input1", prefix="Modified:").fields["input1"].json_schema_extra["prefix"] == (
        "Modified:"
    )


def test_field_order_is_inputs_then_outputs_and_bad_declarations_are_type_errors():
    class ExampleSignature(dsr.Signature):
        text: str = dsr.InputField()
        output = dsr.OutputField()
        pass_evaluation: bool = dsr.OutputField()
        late_input: int = dsr.InputField()

    assert list(ExampleSignature.fields) == ["text", "late_input", "output", "pass_evaluation"]
    with pytest.raises(TypeError):

        class Bad(dsr.Signature):
            input1: str = pydantic.Field()
            output: str = dsr.OutputField()
