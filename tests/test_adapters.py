import json
from pathlib import Path
from typing import Literal

import pydantic
import pytest

import dsr_core as dsr
from dsr_core.adapters.json_adapter import repair_json

FIXTURES = Path(__file__).parent / "fixtures"


class Item(pydantic.BaseModel):
    name: str
    qty: int


def test_prompts_match_dspy_exactly():
    """Messages recorded from DSPy 3.4.1's ChatAdapter/JSONAdapter; a migrated program sends the same text."""
    cases = json.loads((FIXTURES / "dspy_prompts.json").read_text())
    assert len(cases) >= 10
    for case in cases:
        sig = dsr.Signature(case["signature"], case.get("instructions"))
        if case.get("cot"):
            sig = dsr.ChainOfThought(sig).predict.signature
        adapter = dsr.ChatAdapter() if case["adapter"] == "chat" else dsr.JSONAdapter()
        assert adapter.format(sig, case["demos"], case["inputs"]) == case["messages"], case["signature"]


def test_chat_parse_typed_outputs():
    sig = dsr.Signature(
        "q -> n: int, ok: bool, tags: list[str], label: Literal['a', 'b'], item: Item", custom_types={"Item": Item}
    )
    reply = (
        "[[ ## n ## ]]\n 42 \n\n[[ ## ok ## ]]\nTrue\n\n[[ ## tags ## ]]\n['x', 'y']\n\n"
        '[[ ## label ## ]]\n\'b\'\n\n[[ ## item ## ]]\n{"name": "bolt", "qty": 3}\n\n[[ ## completed ## ]]'
    )
    out = dsr.ChatAdapter().parse(sig, reply)
    assert out == {"n": 42, "ok": True, "tags": ["x", "y"], "label": "b", "item": Item(name="bolt", qty=3)}


def test_chat_parse_errors_carry_raw_text_and_field():
    sig = dsr.Signature("q -> n: int, note")
    with pytest.raises(dsr.AdapterParseError) as info:
        dsr.ChatAdapter().parse(sig, "[[ ## n ## ]]\nforty-two\n\n[[ ## note ## ]]\nhi")
    assert info.value.field == "n" and "forty-two" in info.value.raw and "expects int" in str(info.value)
    with pytest.raises(dsr.AdapterParseError) as info:
        dsr.ChatAdapter().parse(sig, "[[ ## n ## ]]\n3")
    assert info.value.field == "note" and "lacks output field" in str(info.value)


def test_optional_output_may_be_missing():
    sig = dsr.Signature("q -> a, extra: Optional[int]")
    assert dsr.ChatAdapter().parse(sig, "[[ ## a ## ]]\nhi\n\n[[ ## completed ## ]]") == {"a": "hi", "extra": None}


@pytest.mark.parametrize(
    "text",
    [
        '```json\n{"answer": "x", "n": 2}\n```',
        'Sure! Here it is: {"answer": "x", "n": 2} Hope that helps.',
        '{"answer": "x", "n": 2,}',
        '{"answer": "x", "n": 2',
        "{'answer': 'x', 'n': 2}",
    ],
)
def test_json_adapter_repairs_near_json(text):
    sig = dsr.Signature("q -> answer, n: int")
    assert dsr.JSONAdapter().parse(sig, text) == {"answer": "x", "n": 2}
    assert isinstance(repair_json(text), dict)


def test_json_adapter_rejects_non_objects():
    with pytest.raises(dsr.AdapterParseError, match="not a JSON object"):
        dsr.JSONAdapter().parse(dsr.Signature("q -> a"), "[1, 2, 3]")


async def test_chat_falls_back_to_json_adapter(server, lm):
    server.inject("unparseable", 1)
    server.responder = lambda r: r.reply(answer="from json") if r.json_mode else r.reply(answer="chat")
    pred = await dsr.Predict("question -> answer", lm=lm).acall(question="q")
    assert pred.answer == "from json"
    assert pred.usage.lm_calls == 2  # the failed chat call and the JSON call are both accounted
    first, second = server.requests
    assert "response_format" not in first
    assert second["response_format"]["type"] == "json_schema"


async def test_parse_failure_after_fallback_raises_with_raw(server, lm):
    server.responder = lambda r: "no structure at all"
    with pytest.raises(dsr.AdapterParseError) as info:
        await dsr.Predict("question -> answer", lm=lm).acall(question="q")
    assert info.value.raw == "no structure at all"
    assert "JSONAdapter fallback failed too" in str(info.value)


async def test_json_adapter_downgrades_to_json_object_when_schema_rejected(server, lm):
    server.inject("400", 1, message="response_format json_schema is not supported")
    server.responder = lambda r: r.reply(answer="ok")
    pred = await dsr.Predict("question -> answer", lm=lm, adapter=dsr.JSONAdapter()).acall(question="q")
    assert pred.answer == "ok"
    assert [b["response_format"]["type"] for b in server.requests] == ["json_schema", "json_object"]
    await dsr.Predict("question -> answer", lm=lm, adapter=dsr.JSONAdapter()).acall(question="q2")
    assert server.requests[-1]["response_format"]["type"] == "json_object"  # remembered per endpoint and model


# ---------------------------------------------------------------------------------------------------------
# DSPy 3.x parity: messages DSPy's adapter tests pin, byte for byte

SYSTEM_TAIL = "[[ ## completed ## ]]\nIn adhering to this structure, your objective is: \n        "
ANSWER_REMINDER = (
    "Respond with the corresponding output fields, starting with the field `[[ ## answer ## ]]`, and then ending "
    "with the marker for `[[ ## completed ## ]]`."
)


def test_history_renders_as_prior_turns_after_demos():
    from dsr_core.adapters import History

    class HistorySignature(dsr.Signature):
        history: History = dsr.InputField()
        question: str = dsr.InputField()
        answer: str = dsr.OutputField()

    history = History(
        messages=[{"question": "What is 1+1?", "answer": "2"}, {"question": "What is 2+2?", "answer": "4"}]
    )
    messages = dsr.ChatAdapter().format(HistorySignature, [], {"history": history, "question": "What is 3+3?"})
    assert messages == [
        {
            "role": "system",
            "content": "Your input fields are:\n1. `history` (History): \n2. `question` (str):\n"
            "Your output fields are:\n1. `answer` (str):\n"
            "All interactions will be structured in the following way, with the appropriate values filled in.\n\n"
            "[[ ## history ## ]]\n{history}\n\n[[ ## question ## ]]\n{question}\n\n[[ ## answer ## ]]\n{answer}\n\n"
            + SYSTEM_TAIL
            + "Given the fields `history`, `question`, produce the fields `answer`.",
        },
        {"role": "user", "content": "[[ ## question ## ]]\nWhat is 1+1?\n\n" + ANSWER_REMINDER},
        {"role": "assistant", "content": "[[ ## answer ## ]]\n2\n\n[[ ## completed ## ]]\n"},
        {"role": "user", "content": "[[ ## question ## ]]\nWhat is 2+2?\n\n" + ANSWER_REMINDER},
        {"role": "assistant", "content": "[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]\n"},
        {"role": "user", "content": "[[ ## question ## ]]\nWhat is 3+3?\n\n" + ANSWER_REMINDER},
    ]
    demo = {"question": "Q0", "answer": "A0"}
    with_demo = dsr.ChatAdapter().format(HistorySignature, [demo], {"history": history, "question": "Q"})
    assert [m["content"] for m in with_demo[1:4]] == [
        "This is an example of the task, though some input or output fields are not supplied.\n\n"
        "[[ ## question ## ]]\nQ0",
        "[[ ## answer ## ]]\nA0\n\n[[ ## completed ## ]]\n",
        "[[ ## question ## ]]\nWhat is 1+1?\n\n" + ANSWER_REMINDER,
    ]
    # as DSPy 3.4.1: a message without input fields (an output-only event) gets no user turn
    outputs_only = History(messages=[{"answer": "4"}])
    turns = dsr.ChatAdapter().format(HistorySignature, [], {"history": outputs_only, "question": "Q"})
    assert [(m["role"], m["content"]) for m in turns[1:]] == [
        ("assistant", "[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]\n"),
        ("user", "[[ ## question ## ]]\nQ\n\n" + ANSWER_REMINDER),
    ]
    raw = History(messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])
    passed = dsr.ChatAdapter().format(HistorySignature, [], {"history": raw, "question": "Q"})
    assert passed[1:3] == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]


def test_images_become_image_url_content_parts():
    import base64

    from dsr_core.adapters import Image

    class Nested(pydantic.BaseModel):
        images: list[Image]
        tag: list[str]

    class ImageSignature(dsr.Signature):
        image: Image = dsr.InputField()
        album: Nested = dsr.InputField()
        answer: str = dsr.OutputField()

    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8
    inputs = {
        "image": Image("https://example.com/cat.png"),
        "album": Nested(images=[Image(url="data:image/png;base64,QUJD"), Image(png)], tag=["x"]),
    }
    messages = dsr.ChatAdapter().format(ImageSignature, [], inputs)
    assert "1. `image` (Image): \n2. `album` (Nested):" in messages[0]["content"]
    parts = messages[1]["content"]
    assert parts[:3] == [
        {"type": "text", "text": "[[ ## image ## ]]\n"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "text", "text": '\n\n[[ ## album ## ]]\n{"images": ["'},  # DSPy cuts nested images out the same way
    ]
    assert {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}} in parts
    encoded = "data:image/png;base64," + base64.b64encode(png).decode()
    assert {"type": "image_url", "image_url": {"url": encoded}} in parts
    assert parts[-1]["text"].endswith("and then ending with the marker for `[[ ## completed ## ]]`.")
    assert repr(Image(png)).startswith("Image(url=data:image/png;base64,<IMAGE_BASE_64_ENCODED(")
    with pytest.raises(ValueError, match="Image.from_path"):
        Image("cat.png")


def test_code_and_reasoning_fields_render_and_parse_as_dspy():
    from dsr_core.adapters import Code, Reasoning

    python_code = Code["python"]

    class CodeSignature(dsr.Signature):
        question: str = dsr.InputField()
        reasoning: Reasoning = dsr.OutputField()
        code: python_code = dsr.OutputField()

    demo = {"question": "Q1", "reasoning": Reasoning(content="Think"), "code": python_code(code="print('hi')")}
    messages = dsr.ChatAdapter().format(CodeSignature, [demo], {"question": "Q2"})
    assert messages[0]["content"].startswith(
        "Your input fields are:\n1. `question` (str):\nYour output fields are:\n1. `reasoning` (str): \n"
        "2. `code` (Code_python): \n    Type description of Code_python: Code represented in a string, specified "
        "in the `code` field. If this is an output field, the code field should follow the markdown code block "
        "format, e.g. \n```python\n{code}\n```\nProgramming language: python\n"
    )
    assert "```cpp" not in messages[0]["content"]  # DSPy 3.4.1 names only the field's language
    java = dsr.ChatAdapter().format(
        dsr.Signature({"q": dsr.InputField(), "c": (Code["Java"], dsr.OutputField())}), [], {"q": "x"}
    )
    assert "e.g. \n```java\n{code}\n```\nProgramming language: Java\n" in java[0]["content"]
    assert "[[ ## reasoning ## ]]\n{reasoning}\n\n[[ ## code ## ]]\n{code}\n\n" in messages[0]["content"]
    assert (
        messages[2]["content"]
        == "[[ ## reasoning ## ]]\nThink\n\n[[ ## code ## ]]\nprint('hi')\n\n[[ ## completed ## ]]\n"
    )
    assert messages[3]["content"].endswith(
        "starting with the field `[[ ## reasoning ## ]]` (must be formatted as a valid Python str), then "
        "`[[ ## code ## ]]` (must be formatted as a valid Python Code_python), and then ending with the marker "
        "for `[[ ## completed ## ]]`."
    )
    out = dsr.ChatAdapter().parse(
        CodeSignature, "[[ ## reasoning ## ]]\n42\n\n[[ ## code ## ]]\n```python\nprint(1)\n```"
    )
    assert out["reasoning"] == "42" and isinstance(out["reasoning"], Reasoning)
    assert out["code"].code == "print(1)"
    assert out["reasoning"].upper() == "42" and out["reasoning"] + "!" == "42!"


def test_constraints_are_described_and_enforced():
    class Bounded(dsr.Signature):
        text: str = dsr.InputField()
        summary: str = dsr.OutputField(min_length=5, max_length=10)
        rating: int = dsr.OutputField(desc="stars", ge=0, le=5)

    system = dsr.ChatAdapter().format(Bounded, [], {"text": "t"})[0]["content"]
    assert system.startswith(
        "Your input fields are:\n1. `text` (str):\nYour output fields are:\n1. `summary` (str): \n"
        "Constraints: minimum length: 5, maximum length: 10\n2. `rating` (int): stars\n"
        "Constraints: greater than or equal to: 0, less than or equal to: 5\n"
    )
    good = "[[ ## summary ## ]]\nfine text\n\n[[ ## rating ## ]]\n4\n\n[[ ## completed ## ]]"
    assert dsr.ChatAdapter().parse(Bounded, good) == {"summary": "fine text", "rating": 4}
    with pytest.raises(dsr.AdapterParseError) as info:
        dsr.ChatAdapter().parse(Bounded, good.replace("\n4\n", "\n9\n"))
    assert info.value.field == "rating" and "less than or equal to: 5" in str(info.value)
    with pytest.raises(dsr.AdapterParseError, match="summary"):
        dsr.JSONAdapter().parse(Bounded, '{"summary": "way too long a summary", "rating": 1}')


def test_incomplete_demos_pydantic_values_and_lists_match_dspy():
    class Summary(pydantic.BaseModel):
        headline: str
        score: float

    class Sig(dsr.Signature):
        question: str = dsr.InputField()
        context: str = dsr.InputField()
        summary: Summary = dsr.OutputField()
        verdict: Literal["yes", "no"] = dsr.OutputField()
        confidence: float = dsr.OutputField()

    demos = [{"question": "Q1", "summary": Summary(headline="h", score=0.5)}]
    messages = dsr.ChatAdapter().format(Sig, demos, {"question": "Q2", "context": ["alpha", "beta"]})
    assert messages[1]["content"] == (
        "This is an example of the task, though some input or output fields are not supplied.\n\n"
        "[[ ## question ## ]]\nQ1"
    )
    assert messages[2]["content"] == (
        '[[ ## summary ## ]]\n{"headline": "h", "score": 0.5}\n\n'
        "[[ ## verdict ## ]]\nNot supplied for this particular example. \n\n"
        "[[ ## confidence ## ]]\nNot supplied for this particular example.\n\n[[ ## completed ## ]]\n"
    )
    assert messages[3]["content"].startswith(
        "[[ ## question ## ]]\nQ2\n\n[[ ## context ## ]]\n[1] «alpha»\n[2] «beta»\n\n"
    )
    assert (
        '{summary}        # note: the value you produce must adhere to the JSON schema: {"type": "object", '
        '"properties": {"headline": {"type": "string", "title": "Headline"}, "score": {"type": "number", '
        '"title": "Score"}}, "required": ["headline", "score"], "title": "Summary"}'
    ) in messages[0]["content"]
    assert "(must be formatted as a valid Python Summary)" in messages[3]["content"]


def test_literal_quoting_and_pep604_names_in_prompts():
    class Quoted(dsr.Signature):
        input_text: Literal["she's here", "okay"] = dsr.InputField()
        maybe: int | None = dsr.InputField()
        output_text: Literal["both\"and'", "plain"] = dsr.OutputField()

    system = dsr.ChatAdapter().format(Quoted, [], {"input_text": "okay"})[0]["content"]
    assert "Literal[\"she's here\", 'okay']" in system
    assert "Literal['both\"and\\'', 'plain']" in system
    assert "`maybe` (UnionType[int, NoneType])" in system  # DSPy's name for a PEP 604 union


async def test_adapters_called_as_dspy_calls_them(server, lm):
    server.responder = lambda r: r.reply(answer="Paris")
    signature = dsr.make_signature("question->answer")
    inputs = {"question": "What is the capital of France?"}
    assert await dsr.ChatAdapter().acall(lm, {}, signature, [], inputs) == [{"answer": "Paris"}]
    assert dsr.ChatAdapter()(lm, {}, signature, [], inputs) == [{"answer": "Paris"}]
    assert dsr.JSONAdapter()(lm, lm_kwargs={"temperature": 0.5}, signature=signature, demos=[], inputs=inputs) == [
        {"answer": "Paris"}
    ]
    assert server.requests[-1]["temperature"] == 0.5
    server.responder = lambda r: [r.reply(answer=f"a{i}") for i in range(2)]
    assert dsr.ChatAdapter()(lm, {"n": 2}, signature, [], inputs) == [{"answer": "a0"}, {"answer": "a1"}]
    completions, usage = await dsr.ChatAdapter().acall(lm, signature, [], inputs, n=2)  # dsr's own form
    assert len(completions) == 2 and usage.lm_calls == 1
    messages = dsr.ChatAdapter().format(signature, [], inputs)
    assert (
        dsr.ChatAdapter().format_user_message_content(signature, inputs, main_request=True) == messages[-1]["content"]
    )
    assert dsr.ChatAdapter(use_json_adapter_fallback=False).use_json_fallback is False


# ---------------------------------------------------------------------------------------------------------
# Replies cut at max_tokens (finish_reason "length")


def rambling(request):
    """A reply that spends its tokens on the first field, as a small model does."""
    return request.reply(reasoning="and so on " * 40, answer="42")


async def test_a_reply_cut_at_max_tokens_is_one_call_and_says_so(server):
    server.enforce_max_tokens = True
    server.responder = rambling
    lm = dsr.LM("test-model", api_base=server.url, max_tokens=16)
    with pytest.raises(dsr.AdapterParseError) as info:
        await dsr.Predict("question -> reasoning, answer", lm=lm).acall(question="q")
    error = info.value
    assert len(server.requests) == 1  # not asked again through the JSONAdapter fallback
    assert "response_format" not in server.requests[0]
    assert "cut at max_tokens=16" in str(error) and "before field 'answer'" in str(error)
    assert error.cut_at_max_tokens and error.field == "answer" and error.adapter == "ChatAdapter"
    assert error.raw.startswith("[[ ## reasoning ## ]]") and len(error.raw) == 16 * 4
    assert error.usage.lm_calls == 1


async def test_the_limit_named_is_the_one_the_request_was_sent_with(server):
    server.enforce_max_tokens = True
    server.responder = rambling
    lm = dsr.LM("test-model", api_base=server.url, max_tokens=1000)
    predict = dsr.Predict("question -> reasoning, answer", lm=lm)
    with pytest.raises(dsr.AdapterParseError, match=r"cut at max_tokens=12 \(finish_reason 'length'\)"):
        await predict.acall(question="q", config={"max_tokens": 12})
    with pytest.raises(dsr.AdapterParseError, match=r"cut at max_tokens=14 "):
        await dsr.Predict("question -> reasoning, answer", lm=lm, max_tokens=14).acall(question="q")
    assert [b["max_tokens"] for b in server.requests] == [12, 14]
    assert (await dsr.Predict("question -> reasoning, answer", lm=lm).acall(question="q")).answer == "42"


async def test_a_cut_json_reply_gets_the_same_error(server):
    server.enforce_max_tokens = True
    server.responder = rambling
    lm = dsr.LM("test-model", api_base=server.url, max_tokens=16)
    with pytest.raises(dsr.AdapterParseError, match="JSONAdapter: the reply was cut at max_tokens=16") as info:
        await dsr.Predict("question -> reasoning, answer", lm=lm, adapter=dsr.JSONAdapter()).acall(question="q")
    assert info.value.field == "answer" and len(server.requests) == 1


async def test_a_reply_that_is_not_cut_still_falls_back_to_json(server):
    server.enforce_max_tokens = True
    server.inject("unparseable", 1)
    server.responder = rambling
    lm = dsr.LM("test-model", api_base=server.url, max_tokens=1000)
    pred = await dsr.Predict("question -> reasoning, answer", lm=lm).acall(question="q")
    assert pred.answer == "42" and pred.usage.lm_calls == 2
    assert [("response_format" in b) for b in server.requests] == [False, True]


async def test_a_cut_reply_in_an_evaluation_is_a_row_of_one_call(server):
    server.enforce_max_tokens = True
    server.responder = rambling
    lm = dsr.LM("test-model", api_base=server.url, max_tokens=16)
    devset = [dsr.Example(question=f"q{i}", answer="42").with_inputs("question") for i in range(3)]
    result = await dsr.Evaluate(devset, dsr.exact_match, progress=False).acall(
        dsr.Predict("question -> reasoning, answer", lm=lm)
    )
    assert [(r.error_type, r.stage, r.lm_calls, r.transient) for r in result.rows] == [
        ("AdapterParseError", "program", 1, False)
    ] * 3
    assert all("cut at max_tokens=16" in r.error for r in result.rows)
    assert server.stats.requests == 3
