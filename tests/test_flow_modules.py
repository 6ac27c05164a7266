"""DSPy's composite modules (Refine, Parallel, MultiChainComparison, ProgramOfThought) in the flows and in ``dsr serve``, like any
program: the evaluate flow scores and counts them, the optimize flow compiles them into a program file whose
inner predictors carry DSPy's names and load back, and the serving app answers with the compiled program.

The programs, responders and metric are in tests/module_programs.py (the flows import them by reference). One
optimize run per program is shared by the tests of this file (``optimized``, module-scoped)."""

from __future__ import annotations

import json

import httpx
import pyarrow.parquet as pq
import pytest

import dsr_core as dsr
from dsr_core.testing.server import LMTestServer
from flows.config import validate_config
from tests.module_programs import (
    compare_responder,
    compute_responder,
    demo_sensitive,
    refine_responder,
    upper_responder,
    write_questions,
)
from tests.test_serving import Uvicorn

# per program: its responder (and the one its optimization runs with, if another), its data, the optimizer that
# compiles it, and the LM calls each dev question costs the bare program (computed from what the module does)
PROGRAMS = {
    "RefinedQA": {
        "responder": refine_responder,
        # a sentence (reward 0), the advice call, then the hinted attempt in one word (reward 1): 3 calls each
        "dev": ["paris", "rome", "oslo"],
        "calls": [3, 3, 3],
        "train": ["lima", "kyiv", "bern", "riga"],
        "optimizer": {"name": "BootstrapFewShot", "max_bootstrapped_demos": 2, "max_labeled_demos": 0},
    },
    "SubQuestions": {
        "responder": upper_responder,
        "optimize_responder": demo_sensitive(upper_responder),  # right only with demos: optimizing shows
        # one call per sub-question, run in parallel
        "dev": ["a + b", "c + d + e", "f"],
        "calls": [2, 3, 1],
        "train": ["g + h", "i", "j + k"],
        "optimizer": {"name": "LabeledFewShot", "k": 2},
    },
    "ComparedQA": {
        "responder": compare_responder,
        # three ChainOfThought attempts (one of them wrong), then one comparison call: 4 calls each
        "dev": ["paris", "rome", "oslo"],
        "calls": [4, 4, 4],
        "train": ["lima", "kyiv", "bern"],
        "optimizer": {"name": "BootstrapFewShot", "max_bootstrapped_demos": 2, "max_labeled_demos": 0},
    },
    "ComputedQA": {
        "responder": compute_responder,
        # the code (run in the sandbox, inside the flow's task), then the answer from its output: 2 calls each
        "dev": ["paris", "rome", "oslo"],
        "calls": [2, 2, 2],
        "train": ["lima", "kyiv", "bern"],
        "optimizer": {"name": "BootstrapFewShot", "max_bootstrapped_demos": 2, "max_labeled_demos": 0},
    },
}


def make_config(workdir, server, program, mlflow_uri, *, optimize=False):
    spec = PROGRAMS[program]
    data = {"dev": write_questions(workdir / f"{program}-dev.jsonl", spec["dev"]), "input_keys": ["question"]}
    config = {
        "program": {"ref": f"tests.module_programs:{program}"},
        "data": data,
        "metric": {"ref": "tests.module_programs:exact_answer"},
        "lm": {"model": "test-model", "api_base": server.url, "max_concurrency": 8, "num_retries": 1},
        "run": {"name": f"{'opt' if optimize else 'eval'}-{program}", "artifacts_url": str(workdir / "artifacts")},
        "mlflow": {"tracking_uri": mlflow_uri, "experiment": "tests"},
    }
    if optimize:
        data["train"] = write_questions(workdir / f"{program}-train.jsonl", spec["train"])
        config["optimizer"] = spec["optimizer"]
        config["run"]["checkpoint_url"] = str(workdir / "checkpoints")
    return validate_config(config)


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory):
    """One MLflow database for the file's runs (creating its tables costs seconds per database)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.mark.parametrize("program", list(PROGRAMS))
def test_the_evaluate_flow_scores_and_counts_the_module(prefect_harness, server, workdir, mlflow_uri, program):
    from flows.evaluate import run_evaluation

    spec = PROGRAMS[program]
    server.responder = spec["responder"]
    report = run_evaluation(make_config(workdir, server, program, mlflow_uri))
    assert (report.n, report.errors, report.score) == (3, 0, 100.0)
    assert report.lm_calls == sum(spec["calls"]) and report.cached_calls == 0
    assert server.stats.requests == sum(spec["calls"])
    rows = sorted(pq.read_table(report.table_url).to_pylist(), key=lambda row: row["index"])
    assert [row["lm_calls"] for row in rows] == spec["calls"]
    if program == "RefinedQA":
        feedback = [b for b in server.requests if "advice" in b["messages"][0]["content"]]
        hinted = [b for b in server.requests if "[[ ## hint_ ## ]]" in b["messages"][-1]["content"]]
        assert len(feedback) == len(hinted) == 3  # one advice call and one hinted attempt per question
    if program == "ComparedQA":
        assert sorted(b.get("seed", -1) for b in server.requests) == [-1] * 3 + [0, 0, 0, 1, 1, 1, 2, 2, 2]


@pytest.fixture(scope="module")
def module_server():
    """A test server for the whole file: the compiled programs keep its URL as their LM's base URL."""
    with LMTestServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def optimized(prefect_harness, module_server, mlflow_uri, tmp_path_factory):
    """``optimized(program)``: the optimize flow's report for ``program``, run once for the whole file."""
    from flows.optimize import run_optimization

    workdir = tmp_path_factory.mktemp("modules")
    reports = {}

    def get(program):
        if program not in reports:
            with pytest.MonkeyPatch.context() as patch:
                patch.chdir(workdir)
                patch.setenv("DSR_CACHE_DIR", str(workdir / "cache"))
                spec = PROGRAMS[program]
                module_server.responder = spec.get("optimize_responder", spec["responder"])
                reports[program] = run_optimization(
                    make_config(workdir, module_server, program, mlflow_uri, optimize=True)
                )
        return reports[program]

    return get


def test_refine_compiles_saves_under_dspys_names_and_serves(optimized, module_server):
    report = optimized("RefinedQA")
    assert (report.baseline_score, report.optimized_score) == (100.0, 100.0)
    saved = json.loads(open(report.program_url).read())
    assert set(saved) == {"refine.module.answer", "metadata"}
    demos = saved["refine.module.answer"]["demos"]
    # the bootstrapped demos are the hinted attempts that reached the threshold, without the hint
    assert [(d["question"], d["answer"]) for d in demos] == [("lima", "LIMA"), ("kyiv", "KYIV")]
    assert all("hint_" not in d for d in demos)

    program = dsr.load_program(report.program_url)
    assert type(program).__name__ == "RefinedQA" and program.refine.module.answer.demos == demos
    module_server.responder = refine_responder
    with served(report.program_url, module_server) as http:
        body = predict(http, {"question": "quito"})
    # with demos the first attempt is one word already: no advice, no second attempt
    assert body["outputs"] == {"answer": "QUITO"} and body["usage"]["lm_calls"] == 1
    assert module_server.stats.requests == 1


def test_a_parallel_program_compiles_saves_and_serves(optimized, module_server):
    report = optimized("SubQuestions")
    assert (report.baseline_score, report.optimized_score) == (0.0, 100.0)  # the server needs demos
    saved = json.loads(open(report.program_url).read())
    assert set(saved) == {"answer", "metadata"}
    demos = saved["answer"]["demos"]  # two of the training rows, whole: the question and its answer
    assert len(demos) == 2 and all(d["question"] in PROGRAMS["SubQuestions"]["train"] for d in demos)
    assert all(d["answer"] == d["question"].upper() for d in demos)

    program = dsr.load_program(report.program_url)
    assert type(program).__name__ == "SubQuestions" and len(program.answer.demos) == 2
    module_server.responder = demo_sensitive(upper_responder)
    module_server.latency = 0.3  # the sub-questions' calls overlap at the LM
    try:
        with served(report.program_url, module_server) as http:
            body = predict(http, {"question": "x + y + z"})
    finally:
        module_server.latency = 0.0
    assert body["outputs"] == {"answer": "X + Y + Z"} and body["usage"]["lm_calls"] == 3
    assert module_server.stats.requests == 3 and module_server.stats.max_in_flight >= 2


def test_multi_chain_comparison_compiles_saves_and_serves(optimized, module_server):
    report = optimized("ComparedQA")
    assert (report.baseline_score, report.optimized_score) == (100.0, 100.0)
    saved = json.loads(open(report.program_url).read())
    assert set(saved) == {"think.predict", "compare.predict", "metadata"}
    compare_fields = [f["prefix"] for f in saved["compare.predict"]["signature"]["fields"]]
    assert "Student Attempt #3:" in compare_fields and compare_fields[-2].startswith("Accurate Reasoning")
    compare_demos = saved["compare.predict"]["demos"]
    assert [d["question"] for d in compare_demos] == ["lima", "kyiv"]
    assert "my prediction is WRONG" in compare_demos[0]["reasoning_attempt_2"]
    assert saved["think.predict"]["demos"]

    program = dsr.load_program(report.program_url)
    assert type(program).__name__ == "ComparedQA"
    assert program.compare.predict.demos == compare_demos and program.think.predict.demos
    module_server.responder = compare_responder
    with served(report.program_url, module_server) as http:
        body = predict(http, {"question": "quito"})
    assert body["outputs"]["answer"] == "QUITO" and body["usage"]["lm_calls"] == 4
    assert "'QUITO': 2, 'WRONG': 1" in body["outputs"]["rationale"]


def test_program_of_thought_compiles_saves_and_serves(optimized, module_server):
    report = optimized("ComputedQA")
    assert (report.baseline_score, report.optimized_score) == (100.0, 100.0)
    saved = json.loads(open(report.program_url).read())
    names = {"compute.code_generate.predict", "compute.code_regenerate.predict", "compute.generate_output.predict"}
    assert set(saved) == names | {"metadata"}
    generate_demos = saved["compute.code_generate.predict"]["demos"]
    assert [d["question"] for d in generate_demos] == ["lima", "kyiv"]
    assert "'lima'.upper()" in generate_demos[0]["generated_code"]
    assert saved["compute.generate_output.predict"]["demos"][0]["code_output"] == '"LIMA"'

    program = dsr.load_program(report.program_url)
    assert type(program).__name__ == "ComputedQA" and program.compute.code_generate.predict.demos == generate_demos
    module_server.responder = compute_responder
    with served(report.program_url, module_server) as http:
        body = predict(http, {"question": "quito"})
    assert body["outputs"]["answer"] == "QUITO" and body["usage"]["lm_calls"] == 2


class served:  # noqa: N801 - a context manager read as a phrase: ``with served(url, server) as http``
    """The serving app for the program file at ``url`` on uvicorn, and an HTTP client to it."""

    def __init__(self, url, server):
        from flows.services.serving import ProgramService, create_app

        server.reset_stats()
        self.uvicorn = Uvicorn(create_app(ProgramService(url)))

    def __enter__(self):
        self.http = httpx.Client(base_url=self.uvicorn.__enter__(), timeout=20)
        assert self.http.get("/health").json()["inputs"] == ["question"]
        return self.http

    def __exit__(self, *exc):
        self.http.close()
        self.uvicorn.__exit__(*exc)


def predict(http, payload):
    response = http.post("/predict", json=payload)
    assert response.status_code == 200, response.text
    return response.json()
