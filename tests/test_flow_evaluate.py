"""The evaluate flow with real parts: Prefect's test harness, MLflow on sqlite, moto S3, the test LM server."""

from __future__ import annotations

import textwrap

import pyarrow.parquet as pq
import pytest

from flows.config import ConfigError, load_config, validate_config
from tests.programs import upper_answer, write_dataset


def make_config(workdir, server, n=20, **run):
    data = write_dataset(workdir / "dev.jsonl", n, wrong_every=5)
    return {
        "program": {"ref": "tests.programs:QA"},
        "data": {"dev": data, "input_keys": ["question"]},
        "metric": {"ref": "tests.programs:exact_upper"},
        "lm": {"model": "test-model", "api_base": server.url, "max_concurrency": 8, "num_retries": 1},
        "run": {"name": "eval-test", "artifacts_url": str(workdir / "artifacts"), **run},
        "mlflow": {"tracking_uri": f"sqlite:///{workdir / 'mlflow.db'}", "experiment": "tests"},
    }


def test_evaluate_flow_end_to_end_local(prefect_harness, server, workdir):
    from mlflow.tracking import MlflowClient

    from flows.evaluate import run_evaluation

    server.responder = upper_answer
    config = validate_config(make_config(workdir, server, n=20, shard_size=6))
    report = run_evaluation(config)
    assert report.n == 20 and report.shards == 4
    assert report.score == 80.0  # every 5th gold answer is wrong on purpose
    assert report.errors == 0 and report.lm_calls == 20
    table = pq.read_table(report.table_url)
    assert table.num_rows == 20 and sorted(table.column("index").to_pylist()) == list(range(20))

    client = MlflowClient(tracking_uri=config.mlflow.tracking_uri)
    run = client.get_run(report.mlflow_run_id)
    assert run.data.metrics["score"] == 80.0 and run.data.metrics["error_rate"] == 0.0
    assert run.data.params["lm.model"] == "test-model"
    assert run.data.params["lm.api_key_env"] == "OPENAI_API_KEY"
    assert [a.path for a in client.list_artifacts(report.mlflow_run_id)] == ["evaluation.parquet"]


def test_rerun_after_a_crashed_shard_skips_finished_shards(prefect_harness, server, workdir, monkeypatch):
    from flows.evaluate import run_evaluation

    server.responder = upper_answer
    config = validate_config(make_config(workdir, server, n=20, shard_size=5))
    monkeypatch.setenv("DSR_TEST_CRASH_ON", "q12")  # takes down the shard holding examples 10-14
    with pytest.raises(BaseException):  # noqa: B017 - the flow fails; which wrapper Prefect uses is not the point
        run_evaluation(config)
    first = server.stats.requests
    assert 15 <= first <= 19
    monkeypatch.delenv("DSR_TEST_CRASH_ON")
    report = run_evaluation(config)
    assert report.n == 20 and report.score == 80.0
    # only the crashed shard ran again: 5 examples, of which up to 4 hit the LM cache
    assert server.stats.requests - first <= 5
    assert server.stats.requests == 20


def test_failure_isolation_in_the_flow(prefect_harness, server, workdir):
    from flows.evaluate import run_evaluation

    server.responder = upper_answer
    server.inject("500", 10, match=lambda r: r.inputs.get("question") == "q3")
    server.inject("garbage", 10, match=lambda r: r.inputs.get("question") == "q4")
    server.inject("unparseable", 2, match=lambda r: r.inputs.get("question") == "q6")
    config = validate_config(make_config(workdir, server, n=10, shard_size=3))
    report = run_evaluation(config)
    assert report.n == 10 and report.errors == 3
    rows = {r["index"]: r for r in pq.read_table(report.table_url).to_pylist()}
    assert rows[3]["error_type"] == "LMError" and rows[6]["error_type"] == "AdapterParseError"


def test_s3_artifacts_through_moto(prefect_harness, server, workdir, s3):
    from flows.evaluate import run_evaluation

    s3.mkdir("dsr-test")
    server.responder = upper_answer
    config = validate_config(make_config(workdir, server, n=8, artifacts_url="s3://dsr-test/runs"))
    report = run_evaluation(config)
    assert report.table_url == "s3://dsr-test/runs/eval-test/evaluation.parquet"
    s3.invalidate_cache()
    with s3.open(report.table_url, "rb") as handle:
        assert pq.read_table(handle).num_rows == 8
    assert s3.ls("dsr-test/runs/results")  # shard results persisted next to the table


def test_bad_config_reports_every_problem_with_its_path(workdir):
    (workdir / "bad.toml").write_text(
        textwrap.dedent("""
        [program]
        ref = "tests.programs:Nope"
        [data]
        dev = "dev.jsonl"
        input_keys = "question"
        [metric]
        ref = "no.such.module:metric"
        [lm]
        model = "m"
        max_concurrency = "many"
        colour = "blue"
    """)
    )
    with pytest.raises(ConfigError) as info:
        load_config(workdir / "bad.toml")
    paths = [p for p, _ in info.value.problems]
    assert "data.input_keys" in paths and "lm.max_concurrency" in paths and "lm.colour" in paths
    data = {
        "program": {"ref": "tests.programs:Nope"},
        "data": {"dev": "x", "input_keys": ["q"]},
        "metric": {"ref": "no.such.module:metric"},
        "lm": {"model": "m"},
    }
    with pytest.raises(ConfigError) as info:
        validate_config(data)
    assert [p for p, _ in info.value.problems] == ["program.ref", "metric.ref"]


def test_yaml_config_and_overrides(workdir):
    (workdir / "eval.yaml").write_text(
        textwrap.dedent("""
        program: {ref: "tests.programs:QA"}
        data: {dev: dev.jsonl, input_keys: [question]}
        lm: {model: m, max_concurrency: 8}
    """)
    )
    config = load_config(
        workdir / "eval.yaml", ["lm.max_concurrency=32", "run.shard_size=1", "lm.api_base=http://x/v1"]
    )
    assert config.lm.max_concurrency == 32 and config.run.shard_size == 1 and config.lm.api_base == "http://x/v1"
    assert config.metric.ref == "exact_match" and config.run.task_runner == "thread"
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(workdir / "eval.yaml", ["lm.max_concurrency"])


def test_cli_evaluate_and_config_check(prefect_harness, server, workdir):
    from typer.testing import CliRunner

    from flows.cli import app

    server.responder = upper_answer
    config = make_config(workdir, server, n=6)
    lines = []
    for section, values in config.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(
                f"{key} = {value!r}".replace("'", '"')
                if not isinstance(value, list)
                else f"{key} = {value}".replace("'", '"')
            )
    (workdir / "eval.toml").write_text("\n".join(lines))
    runner = CliRunner()
    check = runner.invoke(app, ["config", "check", str(workdir / "eval.toml")])
    assert check.exit_code == 0, check.output
    result = runner.invoke(app, ["evaluate", str(workdir / "eval.toml"), "--set", "run.name=cli-run"])
    assert result.exit_code == 0, result.output
    assert "cli-run" in result.output and "66.67" in result.output  # 4 of 6 gold answers are right
    bad = runner.invoke(app, ["evaluate", str(workdir / "eval.toml"), "--set", "lm.max_tokens=zero"])
    assert bad.exit_code == 1 and "lm.max_tokens" in bad.output


def test_tasks_of_one_process_share_one_lm_per_spec_until_reset(server):
    """Every shard in a process shares the LM of its spec (one set of limits); reset forgets them and the sinks."""
    from tasks import progress
    from tasks.program import get_lm
    from tasks.registry import TaskRegistry, registry
    from tasks.specs import LMSpec

    spec = LMSpec(model="test-model", api_base=server.url, max_concurrency=3)
    lm = get_lm(spec)
    assert get_lm(spec.model_dump()) is lm  # a spec and its JSON dump name the same LM
    assert get_lm(spec.model_copy(update={"max_concurrency": 4})) is not lm

    own = TaskRegistry()
    assert own.lm(spec) is not lm and own.lm(spec) is own.lm(spec)  # one per registry
    sink = type("Sink", (), {"on_row": lambda self, row: None, "on_start": lambda self, total: None})()
    own.register_sink("k", sink)
    assert own.sink("k") is sink and registry.sink("k") is None
    own.reset()
    assert own.sink("k") is None and own.lm(spec) is not lm

    progress.register("flow-key", sink)
    try:
        assert progress.lookup("flow-key") is sink and progress.lookup(None) is None
    finally:
        progress.unregister("flow-key")
    assert progress.lookup("flow-key") is None


def test_auto_shard_size_gives_a_few_shards_per_worker():
    from flows.shards import auto_shard_size

    assert auto_shard_size(2000, 4) == 167  # 12 shards
    assert auto_shard_size(5, 4) == 1  # small sets: one example per task
    assert auto_shard_size(1, 1) == 1


# -- persisted shard results are replayed only for the same code, and honestly ------------------------------------


PROJECT_PROGRAM = """
import dsr_core as dsr
from .helpers import clean


class QA(dsr.Module):
    def __init__(self):
        self.answer = dsr.Predict("question -> answer")

    async def aforward(self, question):
        prediction = await self.answer.acall(question=question)
        return dsr.Prediction(answer=clean(prediction.answer))
"""


@pytest.fixture
def user_project(workdir):
    """A user's project in the working folder (``proj``: program, helper, metric), written as files so a
    test can edit them between runs, as a user edits code between two ``dsr evaluate`` commands."""
    import sys

    package = workdir / "proj"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "program.py").write_text(PROJECT_PROGRAM)
    (package / "helpers.py").write_text("def clean(text):\n    return text\n")
    (package / "metric.py").write_text(
        "def exact(example, prediction, trace=None):\n    return prediction.answer == example.answer\n"
    )

    def edit(name, text):
        (package / name).write_text(text)
        for module in [m for m in sys.modules if m == "proj" or m.startswith("proj.")]:
            del sys.modules[module]  # the next run imports the edited code, as a new command would

    yield edit
    for module in [m for m in sys.modules if m == "proj" or m.startswith("proj.")]:
        del sys.modules[module]


def project_config(workdir, server, name, n=10, **lm):
    data = make_config(workdir, server, n=n, shard_size=5)
    data["program"] = {"ref": "proj.program:QA"}
    data["metric"] = {"ref": "proj.metric:exact"}
    data["run"]["name"] = name
    data["lm"].update(lm)
    return validate_config(data)


def test_a_changed_metric_or_program_is_never_scored_from_old_results(prefect_harness, server, workdir, user_project):
    from flows.evaluate import run_evaluation

    server.responder = upper_answer
    first = run_evaluation(project_config(workdir, server, "first"))
    assert first.score == 80.0 and first.lm_calls == 10 and first.replayed == 0
    requests = server.stats.requests

    user_project("metric.py", "def exact(example, prediction, trace=None):\n    return prediction.answer == 'Q1'\n")
    changed_metric = run_evaluation(project_config(workdir, server, "second"))
    assert changed_metric.score == 10.0  # the new metric's score, not the persisted 80.0
    assert changed_metric.replayed == 0 and changed_metric.lm_calls == 10
    assert server.stats.requests == requests  # the LM answers came from the LM cache: nothing paid twice

    user_project("helpers.py", "def clean(text):\n    return text.lower()\n")  # a module the program imports
    changed_helper = run_evaluation(project_config(workdir, server, "third"))
    assert changed_helper.score == 0.0 and changed_helper.replayed == 0


def test_a_replayed_shard_reports_no_calls_and_no_tokens(prefect_harness, server, workdir, user_project):
    from flows.evaluate import run_evaluation

    server.responder = upper_answer
    first = run_evaluation(project_config(workdir, server, "paid"))
    assert first.lm_calls == 10 and first.prompt_tokens > 0
    again = run_evaluation(project_config(workdir, server, "replayed"))
    assert again.score == first.score and again.replayed == 10
    assert again.lm_calls == 0 and again.prompt_tokens == 0 and again.completion_tokens == 0
    rows = pq.read_table(again.table_url).to_pylist()
    assert all(r["replayed"] and r["lm_calls"] == 0 for r in rows)


def test_rows_that_failed_for_infrastructure_reasons_are_computed_again(prefect_harness, server, workdir, user_project):
    from flows.evaluate import run_evaluation

    server.responder = upper_answer
    server.inject("500", 4, match=lambda r: r.inputs.get("question") == "q3")  # more than the retries
    first = run_evaluation(project_config(workdir, server, "outage", num_retries=1))
    rows = {r["index"]: r for r in pq.read_table(first.table_url).to_pylist()}
    assert rows[3]["error_type"] == "LMError" and rows[3]["transient"]
    assert first.errors == 1 and first.score == 70.0

    server.clear_faults()
    before = server.stats.completions
    second = run_evaluation(project_config(workdir, server, "recovered", num_retries=1))
    assert second.errors == 0 and second.score == 80.0  # the failed row was not replayed as final
    assert second.replayed == 5  # the shard without failures (rows 5-9) came back from its persisted result
    assert server.stats.completions - before == 1  # only q3 reached the server; rows 0-4 hit the LM cache


def test_with_the_lm_cache_off_nothing_is_replayed(prefect_harness, server, workdir, user_project, monkeypatch):
    from flows.evaluate import run_evaluation

    server.responder = upper_answer
    run_evaluation(project_config(workdir, server, "cached"))
    requests = server.stats.requests
    monkeypatch.setenv("DSR_CACHE", "0")
    fresh = run_evaluation(project_config(workdir, server, "fresh"))
    assert fresh.replayed == 0 and fresh.lm_calls == 10
    assert server.stats.requests - requests == 10  # every example asked the endpoint again


def test_an_evaluation_where_every_row_failed_the_same_way_fails(prefect_harness, server, workdir, user_project):
    from flows.evaluate import EvaluationFailed, run_evaluation

    server.responder = upper_answer
    server.inject("500", 100)
    with pytest.raises(EvaluationFailed, match=r"every one of the 10 examples failed with LMError") as info:
        run_evaluation(project_config(workdir, server, "down", num_retries=1))
    table = str(info.value).rsplit("rows in ", 1)[1].rstrip(")")
    assert pq.read_table(table).num_rows == 10  # the rows are written before the run fails
