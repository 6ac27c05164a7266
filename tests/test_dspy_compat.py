"""dsr against DSPy 3.4.1 itself: files saved by either load in the other, and both send the same prompts.

DSPy runs in its own virtual environment (its openai/httpx stack differs from dsr's): ``$DSPY_PYTHON`` when
set, else one built on first use under the user cache folder, keyed by the DSPy version, and reused. The
whole DSPy side is one subprocess run of ``DSPY_SIDE`` below.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import dsr_core as dsr
from dsr_core.testing.server import LMTestServer, tool_call
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
    venv.parent.mkdir(parents=True, exist_ok=True)
    # the test workers (pytest-xdist) each ask: one builds the environment, the others wait for it
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _built_dspy_venv(venv)


def _built_dspy_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if _has_dspy(python):
        return python
    shutil.rmtree(venv, ignore_errors=True)  # a half-built one from an interrupted run
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

    from typing import Optional

    import pydantic

    class Person(pydantic.BaseModel):
        name: str
        age: int

    class Structured(lib.Signature):
        """Find the people."""

        question: str = lib.InputField()
        passages: list[str] = lib.InputField()
        names: list[str] = lib.OutputField()
        oldest: Person = lib.OutputField(desc="the oldest one")
        answer: str = lib.OutputField()
        count: int = lib.OutputField()
        note: Optional[str] = lib.OutputField()

    return {"history": WithHistory, "code": WithCode, "tool_calls": WithToolCalls, "structured": Structured}


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
        "structured": (spec["structured"]["demos"], spec["structured"]["inputs"]),
    }
    return {name: adapter.format(signatures[name], demos, dict(inputs)) for name, (demos, inputs) in cases.items()}


def run_module_case(lib, programs, url, name):
    """One module case run with ``lib`` against the test server at ``url`` (whose replies are compat_model's)."""
    native = name in ("native_tools", "json_tools")
    # DSPy sends tools only to a model its catalog knows to call functions: gpt-4o-mini (at the test server)
    model = "openai/gpt-4o-mini" if native else "openai/test-model"
    lm = lib.LM(model, api_base=url, api_key="none", cache=False)
    adapters = {
        "native_tools": lib.ChatAdapter(use_native_function_calling=True),
        "json_tools": lib.JSONAdapter(),
        "xml": lib.XMLAdapter(),
        "two_step": lib.TwoStepAdapter(lm),
    }
    question = "How many people live in the capital of Peru?"
    with lib.context(lm=lm, adapter=adapters.get(name, lib.ChatAdapter())):
        if name == "react":  # its first step, the later ones, and the extract step
            tools = [programs.capital_of, programs.city_population]
            lib.ReAct("question -> answer", tools=tools, max_iters=5)(question=question)
        elif name in ("best_of_n", "refine"):  # no attempt reaches the threshold: Refine asks OfferFeedback
            module = lib.BestOfN if name == "best_of_n" else lib.Refine
            module(programs.Answer(), N=2, reward_fn=programs.one_word, threshold=1.0)(question=question)
        elif name == "mcc":
            completions = [
                {"reasoning": "Lima is the capital.\nIt is large.", "answer": "10 million"},
                {"rationale": "Peru's capital is Lima.", "answer": "ten million"},
            ]
            lib.MultiChainComparison("question -> answer", M=2)(completions=completions, question=question)
        elif name in ("xml", "two_step"):  # XML elements; a free answer, then the extraction call
            return dict(lib.Predict("question -> answer, count: int")(question=question))
        elif name == "program_of_thought":  # code that cannot run, the corrected code, the answer from its output
            pot = lib.ProgramOfThought("question -> answer", interpreter_factory=local_interpreter(lib))
            return dict(pot(question=question))
        elif name == "code_act":  # code calling the tools inside the sandbox, two steps, then extract
            tools = [programs.capital_of, programs.city_population]
            act = lib.CodeAct("question -> answer", tools=tools, interpreter_factory=local_interpreter(lib))
            return dict(act(question=question))
        else:
            tools = [lib.Tool(programs.get_weather)]
            lib.Predict(typed_signatures(lib)["tool_calls"])(question="Weather in Rome?", tools=tools)


def local_interpreter(lib):
    """DSPy's own sandbox imports its stdin reader from deno.land, which is not reachable here (only the npm
    and PyPI registries are), so DSPy runs the code in its LocalInterpreter (a CPython worker) and dsr in its
    Deno sandbox. The code's outputs are the same, so the requests must be too. (The two interpreters word an
    exception differently: tests/test_interpreter.py checks that dsr's PythonInterpreter words it as DSPy's
    does, and that dsr's LocalInterpreter gives DSPy's LocalInterpreter's results.)"""
    return lib.LocalInterpreter if lib.__name__ == "dspy" else None


def server_requests(url):
    import urllib.request

    with urllib.request.urlopen(url + "/stats") as response:
        return json.load(response)["requests"]


out["typed"] = typed_prompts(dspy, ChatAdapter(), job["typed"])
out["typed_json"] = typed_prompts(dspy, dspy.JSONAdapter(), job["typed"])
out["typed_xml"] = typed_prompts(dspy, dspy.XMLAdapter(), job["typed"])
sys.path.insert(0, job["modules"]["folder"])
import compat_programs_dspy

out["module_requests"] = {}  # how many requests each module case sent, in order
out["module_outputs"] = {}  # the prediction of a case that returns one
for name in job["modules"]["cases"]:
    before = server_requests(job["modules"]["url"])
    out["module_outputs"][name] = run_module_case(dspy, compat_programs_dspy, job["modules"]["url"], name)
    out["module_requests"][name] = server_requests(job["modules"]["url"]) - before
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
    "structured": {  # a nested list and model, a str answer with & and <, an int, an Optional left None
        "demos": [
            {
                "question": "Who is there?",
                "passages": ["Ann & Bo", "Cy"],
                "names": ["Ann", "Bo"],
                "oldest": {"name": "A<B", "age": 3},
                "answer": "AT&T <x>",
                "count": 2,
                "note": None,
            },
            {"question": "Anyone?", "passages": [], "names": [], "answer": "no", "count": 0, "note": "empty"},
        ],
        "inputs": {"question": "Who came?", "passages": ["Dee"]},
    },
}


MODULE_CASES = [
    "react",
    "best_of_n",
    "refine",
    "mcc",
    "native_tools",
    "json_tools",
    "xml",
    "two_step",
    "program_of_thought",
    "code_act",
]

# the programs and functions of DSPY_SIDE's module cases: one source, imported as dspy or as dsr_core, so that
# the code Refine shows the LM (inspect.getsource of the module's class and of the reward) is the same
PROGRAMS = '''

class Answer(dspy.Module):
    def __init__(self):
        super().__init__()
        self.predict = dspy.Predict("question -> answer")

    def forward(self, question):
        return self.predict(question=question)


def one_word(args, pred):
    return 1.0 if len(str(pred.answer).split()) == 1 else 0.0


def capital_of(country: str) -> str:
    """Look up the capital city of a country."""
    return {"Peru": "Lima"}[country]


def city_population(city: str) -> int:
    """Look up the number of people living in a city."""
    return {"Lima": 10092000}[city]


def get_weather(city: str, unit: str = "C") -> str:
    """Look up the weather in a city."""
    return "sunny"
'''


def compat_model(request):
    """The server's model for the module cases, the same for both sides: it calls the offered tools natively,
    walks ReAct through capital_of, city_population and finish, gives Refine advice, and otherwise answers
    every output field with a fixed value (an answer of two words, below one_word's threshold)."""
    if request.tools:
        return {"content": None, "tool_calls": [tool_call("get_weather", {"city": "Rome"}, "call_1")]}
    outputs, inputs = request.output_fields, request.inputs
    if "next_tool_name" in outputs:
        if "observation_1" in inputs:
            return request.reply(next_thought="I have it.", next_tool_name="finish", next_tool_args={})
        if "observation_0" in inputs:
            city = inputs["observation_0"]
            return request.reply(
                next_thought="Its population.", next_tool_name="city_population", next_tool_args={"city": city}
            )
        return request.reply(
            next_thought="The capital first.", next_tool_name="capital_of", next_tool_args={"country": "Peru"}
        )
    if "advice" in outputs:
        return request.reply(discussion="It answered in two words.", advice={"predict": "Answer in one word."})
    if "finished" in outputs:  # CodeAct: the capital, then its population, then done
        if "code_output_0" in inputs.get("trajectory", ""):
            return request.reply(generated_code="```python\ncity_population('Lima')\n```", finished=True)
        return request.reply(generated_code="```python\ncapital_of('Peru')\n```", finished=False)
    if "generated_code" in outputs:  # ProgramOfThought: code it refuses to run, then code that runs
        code = "population = 10092000" if "error" in inputs else "population = city = 10092000"
        return request.reply(reasoning="Compute it.", generated_code=f"```python\n{code}\n```")
    values = {"reasoning": "It says so.", "rationale": "Both say Lima.", "answer": "ten million", "count": 3}
    return request.reply(**{name: values.get(name, "x") for name in outputs})


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
    for side, module in (("dspy", "dspy"), ("dsr", "dsr_core")):
        (folder / f"compat_programs_{side}.py").write_text(f"import {module} as dspy\n" + PROGRAMS)
    with LMTestServer(compat_model) as server:  # DSPy's requests of the module cases
        job["modules"] = {"folder": str(folder), "url": server.url, "cases": MODULE_CASES}
        run = subprocess.run(
            [str(dspy_python), "-c", DSPY_SIDE],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            timeout=600,
            env=_with_deno_on_path(),
        )
        assert run.returncode == 0, run.stderr[-3000:]
        result = json.loads(run.stdout)
        requests, result["module_bodies"] = server.requests, {}
    for name in MODULE_CASES:  # DSPy ran the cases one after another: its requests, split per case
        count = result["module_requests"][name]
        result["module_bodies"][name], requests = requests[:count], requests[count:]
    assert not requests
    return folder, result


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


def _dsr_side() -> dict:
    """DSPY_SIDE's shared helpers (typed_signatures, typed_prompts, run_module_case), to run with dsr in place
    of dspy: the same source, so the same signatures and calls."""
    namespace: dict = {}
    source = DSPY_SIDE[DSPY_SIDE.index("def get_weather") : DSPY_SIDE.index('out["typed"]')]
    exec(compile(source, "DSPY_SIDE", "exec", dont_inherit=True), namespace)  # no postponed annotations
    return namespace


def _dsr_typed_prompts(adapter: dsr.Adapter) -> dict:
    """DSPY_SIDE's ``typed_prompts`` run with dsr in place of dspy."""
    return _dsr_side()["typed_prompts"](dsr, adapter, TYPED)


REMINDER = "Respond with the corresponding output fields, starting with the field `[[ ## {} ## ]]`"
JSON_REMINDER = "Respond with a JSON object in the following order of fields: `{}`"


XML_REMINDER = "Respond with the corresponding output fields wrapped in XML tags `<{}>`"
TYPED_RESULTS = {"chat": "typed", "json": "typed_json", "xml": "typed_xml"}  # DSPY_SIDE's keys


@pytest.mark.parametrize("adapter", ["chat", "json", "xml"])
@pytest.mark.parametrize("case", ["history", "code", "tool_calls", "structured"])
def test_dsr_formats_history_code_tool_calls_and_structures_as_dspy(exchange, case, adapter):
    _, result = exchange
    expected = result[TYPED_RESULTS[adapter]][case]
    # what each case is there to catch is in DSPy's messages, so an empty or wrong DSPy side fails too
    if case == "history":
        reminder = {"chat": REMINDER, "json": JSON_REMINDER, "xml": XML_REMINDER}[adapter].format("answer")
        earlier = [m["content"] for m in expected[3:-1] if m["role"] == "user"]
        assert len(earlier) == 2 and all(reminder in c for c in earlier)
        assert [m["role"] for m in expected].count("assistant") == 4
    elif case == "code":
        assert "```python\n{code}\n```\nProgramming language: python" in expected[0]["content"]
    elif case == "structured":
        assert [m["role"] for m in expected] == ["system", "user", "assistant", "user", "assistant", "user"]
        if adapter == "xml":  # nested elements for the list and the model, escaped text in the demo's answer
            assert (
                "<names><item>...</item></names>\n\n<oldest><name>...</name><age>...</age></oldest>"
                in (expected[0]["content"])
            )
            assert "<answer>\nAT&amp;T &lt;x>\n</answer>" in expected[2]["content"]
            assert "Use this nested XML structure: <names><item>...</item></names>" in expected[-1]["content"]
    elif adapter == "chat":
        assert (
            '[[ ## tool_calls ## ]]\n{"tool_calls": [{"name": "get_weather", "args": {"city": "Paris"}}]}'
            in (expected[2]["content"])
        )
    elif adapter == "json":  # the demo's calls in DSPy's name/args form, inside the JSON object of the outputs
        assert (
            '"tool_calls": {\n    "tool_calls": [\n      {\n        "name": "get_weather",\n        "args"'
            in (expected[2]["content"])
        )
    else:
        assert (
            '<tool_calls>\n{"tool_calls": [{"name": "get_weather", "args": {"city": "Paris"}}]}'
            in (expected[2]["content"])
        )
    sent = _dsr_typed_prompts({"chat": dsr.ChatAdapter, "json": dsr.JSONAdapter, "xml": dsr.XMLAdapter}[adapter]())
    assert sent[case] == expected


def _with_deno_on_path() -> dict[str, str]:
    """DSPy's PythonInterpreter finds Deno on PATH: the one dsr's ``code`` extra installed."""
    from dsr_core.interpreter.sandbox import find_deno

    deno_folder = os.path.dirname(find_deno())
    return {**os.environ, "PATH": deno_folder + os.pathsep + os.environ.get("PATH", "")}


def _last_user(body: dict) -> str:
    return body["messages"][-1]["content"]


def check_dspy_requests(case: str, bodies: list[dict]) -> None:
    """What each module case is there to compare is in DSPy's own requests, so a DSPy side that sent nothing,
    or something else, fails the test too."""
    if case == "react":
        assert len(bodies) == 4  # three steps, then extract
        assert "[[ ## observation_0 ## ]]\nLima" in _last_user(bodies[1])
        assert "[[ ## observation_1 ## ]]\n10092000" in _last_user(bodies[2])
        assert "`[[ ## reasoning ## ]]`, then `[[ ## answer ## ]]`" in _last_user(bodies[3])
    elif case == "best_of_n":
        assert len(bodies) == 2 and bodies[0]["messages"] == bodies[1]["messages"]
    elif case == "refine":
        assert len(bodies) == 3  # an attempt, OfferFeedback, an attempt with the advice as a hint
        feedback = bodies[1]["messages"]
        assert "assign blame to each module" in feedback[0]["content"]
        assert "class Answer(dspy.Module)" in feedback[-1]["content"]
        assert "def one_word(args, pred)" in feedback[-1]["content"]
        assert "[[ ## hint_ ## ]]\nAnswer in one word." in _last_user(bodies[2])
    elif case == "mcc":
        attempt = "«I'm trying to Lima is the capital. I'm not sure but my prediction is 10 million»"
        assert len(bodies) == 1 and attempt in _last_user(bodies[0])
    elif case == "xml":
        assert len(bodies) == 1
        assert "wrapped in XML tags `<answer>`, then `<count>`." in _last_user(bodies[0])
    elif case == "program_of_thought":  # generate, regenerate after the error, answer from the output
        assert len(bodies) == 3
        assert "[[ ## error ## ]]\nError: Code format is not correct." in _last_user(bodies[1])
        assert "[[ ## code_output ## ]]\n10092000" in _last_user(bodies[2])
    elif case == "code_act":  # two steps, the second seeing the first's output, then extract
        assert len(bodies) == 3
        assert "code_output_0" in _last_user(bodies[1]) and "Lima" in _last_user(bodies[1])
        assert "10092000" in _last_user(bodies[2])
    elif case == "two_step":  # a free-text request, then ChatAdapter's extraction from that reply
        assert len(bodies) == 2
        assert bodies[0]["messages"][0]["content"].startswith("You are a helpful assistant")
        assert _last_user(bodies[0]) == "question: How many people live in the capital of Peru?"
        assert "[[ ## text ## ]]\n[[ ## answer ## ]]\nten million" in _last_user(bodies[1])
    else:  # native function calling: the tools as the request's tools, not in the prompt
        assert len(bodies) == 1 and [t["function"]["name"] for t in bodies[0]["tools"]] == ["get_weather"]
        assert "[[ ## tools ## ]]" not in _last_user(bodies[0])


@pytest.mark.parametrize("case", MODULE_CASES)
def test_dsr_sends_dspys_requests_for_modules(exchange, server, monkeypatch, case):
    """ReAct, BestOfN, Refine (OfferFeedback and the hint), MultiChainComparison and native function calling:
    dsr sends the test server the messages (and tools) DSPy sent it for the same program and replies."""
    import importlib.util

    folder, result = exchange
    expected = result["module_bodies"][case]
    check_dspy_requests(case, expected)
    spec = importlib.util.spec_from_file_location("compat_programs_dsr", folder / "compat_programs_dsr.py")
    programs = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "compat_programs_dsr", programs)  # where inspect.getsource finds the file
    spec.loader.exec_module(programs)
    server.responder = compat_model
    outputs = _dsr_side()["run_module_case"](dsr, programs, server.url, case)
    assert outputs == result["module_outputs"][case]  # the same prediction, where the case returns one
    sent = server.requests
    assert [b["messages"] for b in sent] == [b["messages"] for b in expected]
    assert [b.get("tools") for b in sent] == [b.get("tools") for b in expected]
