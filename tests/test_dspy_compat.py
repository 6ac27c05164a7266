"""dsr against DSPy 3.4.1 itself: files saved by either load in the other, and both send the same prompts.

DSPy runs in its own virtual environment (its openai/httpx stack differs from dsr's): ``$DSPY_PYTHON`` when
set, else one built on first use under the user cache folder, keyed by the DSPy version, and reused. The
whole DSPy side is one subprocess run of ``DSPY_SIDE`` below.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import dsr_core as dsr
from tests.programs import RewriteThenAnswer

DSPY_VERSION = "3.4.1"
REQUIREMENTS = [f"dspy=={DSPY_VERSION}", "optuna==5.0.0"]
NETWORK_MARKERS = (
    "No matching distribution",
    "Could not find a version",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "ConnectionError",
    "Read timed out",
)


def _cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dsr"


def _has_dspy(python: Path) -> bool:
    check = [str(python), "-c", f"import dspy, sys; sys.exit(dspy.__version__ != {DSPY_VERSION!r})"]
    return python.exists() and subprocess.run(check, capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def dspy_python() -> Path:
    """An interpreter with DSPy 3.4.1: $DSPY_PYTHON, or a cached virtualenv (built here when missing)."""
    if os.environ.get("DSPY_PYTHON"):
        python = Path(os.environ["DSPY_PYTHON"])
        if not _has_dspy(python):
            pytest.fail(f"$DSPY_PYTHON={python} has no dspy=={DSPY_VERSION}")
        return python
    venv = _cache_root() / f"venv-dspy-{DSPY_VERSION}"
    python = venv / "bin" / "python"
    if _has_dspy(python):
        return python
    shutil.rmtree(venv, ignore_errors=True)  # a half-built one from an interrupted run
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", *REQUIREMENTS], capture_output=True, text=True, timeout=1800
    )
    if pip.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        output = pip.stderr + pip.stdout
        if any(marker in output for marker in NETWORK_MARKERS):
            pytest.skip(f"cannot install {' '.join(REQUIREMENTS)}: the package index is unreachable ({output[-300:]})")
        pytest.fail(f"installing {' '.join(REQUIREMENTS)} failed:\n{output[-2000:]}")
    if not _has_dspy(python):
        pytest.fail(f"built {venv}, but it has no dspy=={DSPY_VERSION}")
    return python


DSPY_SIDE = r'''
import json, logging, sys
import dspy
from dspy.adapters import ChatAdapter

logging.disable(logging.WARNING)
job = json.load(sys.stdin)


class RewriteThenAnswer(dspy.Module):
    def __init__(self):
        super().__init__()
        self.rewrite = dspy.Predict("question -> query")
        self.answer = dspy.ChainOfThought("question, context: list[str] -> answer")


def build(kind):
    if kind == "program":
        return RewriteThenAnswer()
    if kind == "predict":
        return dspy.Predict("question -> answer")
    return dspy.ChainOfThought("question -> answer")


def predictor_view(p):
    return {
        "instructions": p.signature.instructions,
        "descs": {n: f.json_schema_extra["desc"] for n, f in p.signature.fields.items()},
        "demos": [dict(d) for d in p.demos],
        "lm": None if p.lm is None else {"model": p.lm.model, "temperature": p.lm.kwargs.get("temperature"),
                                         "max_tokens": p.lm.kwargs.get("max_tokens")},
    }


def prompts(program, inputs):
    """The messages DSPy's ChatAdapter formats for each predictor, given that predictor's inputs."""
    return {name: ChatAdapter().format(p.signature, p.demos, inputs[name]) for name, p in program.named_predictors()}


out = {"loaded": {}, "saved": {}}
for name, spec in job["load"].items():  # files dsr saved
    program = build(spec["kind"])
    program.load(spec["path"])
    out["loaded"][name] = {
        "names": [n for n, _ in program.named_predictors()],
        "predictors": {n: predictor_view(p) for n, p in program.named_predictors()},
        "prompts": prompts(program, spec["inputs"]),
    }
for name, spec in job["save"].items():  # files for dsr to load
    program = build(spec["kind"])
    for pname, p in program.named_predictors():
        changes = spec["changes"].get(pname, {})
        if "instructions" in changes:
            p.signature = p.signature.with_instructions(changes["instructions"])
        for field, desc in changes.get("descs", {}).items():
            p.signature = p.signature.with_updated_fields(field, desc=desc)
        p.demos = [dspy.Example(**d) for d in changes.get("demos", [])]
        if changes.get("lm"):
            p.lm = dspy.LM(**changes["lm"])
    program.save(spec["path"])
    out["saved"][name] = {"prompts": prompts(program, spec["inputs"])}


def get_weather(city: str) -> str:
    """Look up the weather in a city."""
    return "sunny"


def typed_signatures(lib):
    """The same three signatures the test builds with dsr: a History input, a Code output, a ToolCalls output."""

    class WithHistory(lib.Signature):
        """Answer the question, minding the conversation."""

        question: str = lib.InputField()
        history: lib.History = lib.InputField()
        answer: str = lib.OutputField()

    class WithCode(lib.Signature):
        """Write the function."""

        task: str = lib.InputField()
        code: lib.Code["python"] = lib.OutputField()

    class WithToolCalls(lib.Signature):
        """Pick the tools to call."""

        question: str = lib.InputField()
        tools: list[lib.Tool] = lib.InputField()
        tool_calls: lib.ToolCalls = lib.OutputField()

    return {"history": WithHistory, "code": WithCode, "tool_calls": WithToolCalls}


def typed_prompts(lib, adapter, spec):
    """The messages ``adapter`` formats for each typed case of ``spec`` (demos and inputs as plain JSON)."""
    signatures, tools = typed_signatures(lib), [lib.Tool(get_weather)]
    history = {"history": lib.History(messages=spec["history"]["history"])}
    code_demos = [{**d, "code": lib.Code["python"](code=d["code"])} for d in spec["code"]["demos"]]
    call_demos = [
        {**d, "tools": tools, "tool_calls": lib.ToolCalls.from_dict_list(d["tool_calls"])}
        for d in spec["tool_calls"]["demos"]
    ]
    cases = {
        "history": (spec["history"]["demos"], {**spec["history"]["inputs"], **history}),
        "code": (code_demos, spec["code"]["inputs"]),
        "tool_calls": (call_demos, {**spec["tool_calls"]["inputs"], "tools": tools}),
    }
    return {name: adapter.format(signatures[name], demos, dict(inputs)) for name, (demos, inputs) in cases.items()}


out["typed"] = typed_prompts(dspy, ChatAdapter(), job["typed"])
out["named"] = {
    "sub_modules": [n for n, _ in RewriteThenAnswer().named_sub_modules()],
    "predict": [n for n, _ in dspy.Predict("a -> b").named_predictors()],
    "cot": [n for n, _ in dspy.ChainOfThought("a -> b").named_predictors()],
}
json.dump(out, sys.stdout)
'''

QUESTION = "Who painted the Mona Lisa?"
QUERY = "Mona Lisa painter"
DEMOS = {
    "rewrite": [{"question": "Who wrote Hamlet?", "query": "Hamlet author"}],
    "answer.predict": [
        {
            "question": "Who wrote Hamlet?",
            "context": ["Hamlet is a play by Shakespeare."],
            "reasoning": "It says so.",
            "answer": "Shakespeare",
        }
    ],
}
PROGRAM_INPUTS = {"rewrite": {"question": QUESTION}, "answer.predict": {"question": QUESTION, "context": [QUERY]}}


TYPED = {  # demos and inputs for the History, Code and ToolCalls cases of DSPY_SIDE's typed_prompts
    "history": {
        "demos": [{"question": "Capital of Spain?", "answer": "Madrid"}],
        "history": [
            {"question": "Capital of France?", "answer": "Paris"},
            {"question": "And of Germany?", "answer": "Berlin"},
            {"answer": "Anything else?"},  # an output-only event: no user turn
        ],
        "inputs": {"question": "And of Italy?"},
    },
    "code": {"demos": [{"task": "Say hi.", "code": "print('hi')"}], "inputs": {"task": "Add two numbers."}},
    "tool_calls": {
        "demos": [
            {"question": "Weather in Paris?", "tool_calls": [{"name": "get_weather", "args": {"city": "Paris"}}]}
        ],
        "inputs": {"question": "Weather in Rome?"},
    },
}


def echo_query(request):
    values = {"query": QUERY, "reasoning": "r", "answer": "a"}
    return request.reply(**{name: values.get(name, "x") for name in request.output_fields})


@pytest.fixture(scope="module")
def exchange(dspy_python, tmp_path_factory):
    """Save dsr programs, let DSPy load them and save its own; one DSPy run does all of its side."""
    folder = tmp_path_factory.mktemp("compat")
    program = RewriteThenAnswer()
    program.rewrite.signature = program.rewrite.signature.with_instructions("Make a search query.")
    program.rewrite.signature = program.rewrite.signature.with_updated_fields("query", desc="keywords only")
    program.rewrite.demos = list(DEMOS["rewrite"])
    program.answer.predict.demos = list(DEMOS["answer.predict"])
    program.answer.predict.lm = dsr.LM("gpt-4o-mini", api_base="http://127.0.0.1:9/v1", temperature=0.4, max_tokens=300)
    program.save(folder / "dsr_program.json")
    predict = dsr.Predict("question -> answer")
    predict.demos = [{"question": "2+2?", "answer": "4"}]
    predict.save(folder / "dsr_predict.json")
    cot = dsr.ChainOfThought("question -> answer")
    cot.predict.signature = cot.predict.signature.with_instructions("Think, then answer.")
    cot.save(folder / "dsr_cot.json")
    job = {
        "load": {
            "program": {"kind": "program", "path": str(folder / "dsr_program.json"), "inputs": PROGRAM_INPUTS},
            "predict": {
                "kind": "predict",
                "path": str(folder / "dsr_predict.json"),
                "inputs": {"self": {"question": QUESTION}},
            },
            "cot": {"kind": "cot", "path": str(folder / "dsr_cot.json"), "inputs": {"predict": {"question": QUESTION}}},
        },
        "save": {
            "program": {
                "kind": "program",
                "path": str(folder / "dspy_program.json"),
                "inputs": PROGRAM_INPUTS,
                "changes": {
                    "rewrite": {
                        "instructions": "Rewrite as a query.",
                        "descs": {"query": "a short query"},
                        "demos": DEMOS["rewrite"],
                    },
                    "answer.predict": {
                        "instructions": "Answer from the context.",
                        "demos": DEMOS["answer.predict"],
                        "lm": {"model": "openai/gpt-4o-mini", "temperature": 0.2, "max_tokens": 512},
                    },
                },
            },
            "predict": {
                "kind": "predict",
                "path": str(folder / "dspy_predict.json"),
                "inputs": {"self": {"question": QUESTION}},
                "changes": {
                    "self": {"instructions": "Answer tersely.", "demos": [{"question": "1+1?", "answer": "2"}]}
                },
            },
            "cot": {
                "kind": "cot",
                "path": str(folder / "dspy_cot.json"),
                "inputs": {"predict": {"question": QUESTION}},
                "changes": {"predict": {"instructions": "Reason first."}},
            },
        },
    }
    job["typed"] = TYPED
    run = subprocess.run(
        [str(dspy_python), "-c", DSPY_SIDE], input=json.dumps(job), capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return folder, json.loads(run.stdout)


def test_dspy_loads_what_dsr_saves(exchange):
    folder, result = exchange
    program = result["loaded"]["program"]
    assert program["names"] == ["rewrite", "answer.predict"]
    rewrite = program["predictors"]["rewrite"]
    assert rewrite["instructions"] == "Make a search query." and rewrite["descs"]["query"] == "keywords only"
    assert rewrite["demos"] == DEMOS["rewrite"]
    assert program["predictors"]["answer.predict"]["lm"] == {
        "model": "openai/gpt-4o-mini",
        "temperature": 0.4,
        "max_tokens": 300,
    }
    assert result["loaded"]["predict"]["predictors"]["self"]["demos"] == [{"question": "2+2?", "answer": "4"}]
    assert result["loaded"]["cot"]["predictors"]["predict"]["instructions"] == "Think, then answer."
    # dsr's own metadata stays in the file, where DSPy's loader ignores it
    saved = json.loads((folder / "dsr_program.json").read_text())
    assert saved["metadata"]["format"] == "dsr-program/1"
    assert set(saved["metadata"]["dependency_versions"]) <= {"python", "dspy", "cloudpickle"}
    flat = json.loads((folder / "dsr_predict.json").read_text())
    assert {"signature", "demos", "lm", "metadata"} <= set(flat) and "self" not in flat


async def test_dsr_loads_what_dspy_saves_and_sends_its_prompts(exchange, server):
    folder, result = exchange
    server.responder = echo_query
    lm = dsr.LM("m", api_base=server.url)

    program = RewriteThenAnswer().load(folder / "dspy_program.json")
    assert program.rewrite.signature.instructions == "Rewrite as a query."
    assert program.answer.predict.lm.model == "gpt-4o-mini" and program.answer.predict.lm.max_tokens == 512
    program.set_lm(lm)
    await program.acall(question=QUESTION)
    sent = [r["messages"] for r in server.requests[-2:]]
    expected = result["saved"]["program"]["prompts"]
    assert sent == [expected["rewrite"], expected["answer.predict"]]

    predict = dsr.Predict("question -> answer").load(folder / "dspy_predict.json")  # a bare Predict: flat file
    assert predict.demos == [{"question": "1+1?", "answer": "2"}]
    await predict.acall(question=QUESTION, lm=lm)
    assert server.requests[-1]["messages"] == result["saved"]["predict"]["prompts"]["self"]

    cot = dsr.ChainOfThought("question -> answer").load(folder / "dspy_cot.json")
    await cot.predict.acall(question=QUESTION, lm=lm)
    assert server.requests[-1]["messages"] == result["saved"]["cot"]["prompts"]["predict"]


async def test_dsr_sends_what_dspy_formats_for_a_dsr_program(exchange, server):
    """The program dsr saved: DSPy's ChatAdapter formats (from its loaded copy) what dsr sends."""
    folder, result = exchange
    server.responder = echo_query
    program = RewriteThenAnswer().load(folder / "dsr_program.json")
    program.set_lm(dsr.LM("m", api_base=server.url))
    await program.acall(question=QUESTION)
    expected = result["loaded"]["program"]["prompts"]
    assert [r["messages"] for r in server.requests[-2:]] == [expected["rewrite"], expected["answer.predict"]]
    predict = dsr.Predict("question -> answer").load(folder / "dsr_predict.json")
    await predict.acall(question=QUESTION, lm=dsr.LM("m", api_base=server.url))
    assert server.requests[-1]["messages"] == result["loaded"]["predict"]["prompts"]["self"]


def test_names_match_dspy(exchange):
    _, result = exchange
    assert [n for n, _ in RewriteThenAnswer().named_sub_modules()] == result["named"]["sub_modules"]
    assert [n for n, _ in dsr.Predict("a -> b").named_predictors()] == result["named"]["predict"]
    assert [n for n, _ in dsr.ChainOfThought("a -> b").named_predictors()] == result["named"]["cot"]


def _dsr_typed_prompts() -> dict:
    """DSPY_SIDE's ``typed_prompts`` run with dsr in place of dspy (the same source, so the same signatures)."""
    namespace: dict = {}
    source = DSPY_SIDE[DSPY_SIDE.index("def get_weather") : DSPY_SIDE.index('out["typed"]')]
    exec(compile(source, "DSPY_SIDE", "exec", dont_inherit=True), namespace)  # no postponed annotations
    return namespace["typed_prompts"](dsr, dsr.ChatAdapter(), TYPED)


REMINDER = "Respond with the corresponding output fields, starting with the field `[[ ## {} ## ]]`"


@pytest.mark.parametrize("case", ["history", "code", "tool_calls"])
def test_dsr_formats_history_code_and_tool_calls_as_dspy(exchange, case):
    _, result = exchange
    expected = result["typed"][case]
    # what each case is there to catch is in DSPy's messages, so an empty or wrong DSPy side fails too
    if case == "history":
        earlier = [m["content"] for m in expected[3:-1] if m["role"] == "user"]
        assert len(earlier) == 2 and all(REMINDER.format("answer") in c for c in earlier)
        assert [m["role"] for m in expected].count("assistant") == 4
    elif case == "code":
        assert "```python\n{code}\n```\nProgramming language: python" in expected[0]["content"]
    else:
        assert (
            '[[ ## tool_calls ## ]]\n{"tool_calls": [{"name": "get_weather", "args": {"city": "Paris"}}]}'
            in (expected[2]["content"])
        )
    sent = _dsr_typed_prompts()[case]
    assert sent == expected
