"""The drift monitor flow: production log -> judge (a separate judge model on the test server) -> MLflow,
with a real Prefect deployment of the optimize flow for the trigger path."""

from __future__ import annotations

import json

import pytest

from flows.config import validate_config
from tests.programs import code, learns_from_demos
from tests.test_flow_optimize import make_config
from tests.test_serving import registered  # noqa: F401 - the fixture: 'wordcode' v1 is champion


def judge(request):
    """The judge model: 1.0 when the served code is the word reversed and upper-cased."""
    if request.model != "judge-model":
        return learns_from_demos(request)
    fields = dict(
        line.split(": ", 1) for line in (request.inputs["task_inputs"] + "\n" + request.inputs["response"]).splitlines()
    )
    return request.reply(score=1.0 if fields.get("code") == code(fields["word"]) else 0.0)


def serve_records(url, words, *, right):
    from flows.services.production_log import ProductionLog

    log = ProductionLog(url, flush_seconds=60)
    for word in words:
        log.append(
            {"ts": 0, "inputs": {"word": word}, "outputs": {"code": code(word) if right else word}, "version": "1"}
        )
    log.append({"ts": 0, "inputs": {"word": "boom"}, "error": "LMError: down", "version": "1"})  # never judged
    log.close()


@pytest.fixture
def monitor_config(registered, server, workdir):  # noqa: F811
    server.responder = judge
    config = make_config(workdir, server, name="monitored", register_as="wordcode")
    config["judge_lm"] = {"model": "judge-model", "api_base": server.url}
    config["monitor"] = {
        "log_url": str(workdir / "prodlog"),
        "model": "wordcode",
        "criteria": "The code is the word reversed, in capitals.",
        "sample": 1.0,
        "min_examples": 20,
        "optimize_deployment": "",
    }
    return config


def test_monitor_sets_a_baseline_then_stays_quiet(monitor_config, workdir):
    from flows.monitor import monitor_flow

    serve_records(str(workdir / "prodlog"), [f"a{i}b" for i in range(25)], right=True)
    first = monitor_flow(validate_config(monitor_config))
    assert (first.new_records, first.failed_records, first.judged) == (26, 1, 25)
    assert first.batch_score == 100.0 and first.baseline == 100.0 and not first.triggered
    second = monitor_flow(validate_config(monitor_config))  # nothing new since the watermark
    assert (second.new_records, second.judged, second.rolling_score, second.triggered) == (0, 0, 100.0, False)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=monitor_config["mlflow"]["tracking_uri"])
    assert client.get_model_version("wordcode", "1").tags["dsr.monitor_baseline"] == "100.0"
    assert client.get_run(second.mlflow_run_id).data.metrics["rolling_score"] == 100.0


def test_a_drop_triggers_the_optimize_deployment_with_the_new_data(monitor_config, workdir):
    from prefect import get_client
    from prefect.utilities.asyncutils import run_coro_as_sync

    from flows.monitor import monitor_flow
    from flows.optimize import optimize_flow

    deployment_id = optimize_flow.to_deployment(name="reoptimize", parameters={"config": "optimize.toml"}).apply()
    monitor_config["monitor"]["optimize_deployment"] = "dsr-optimize/reoptimize"
    serve_records(str(workdir / "prodlog"), [f"a{i}b" for i in range(25)], right=True)
    assert monitor_flow(validate_config(monitor_config)).baseline == 100.0
    serve_records(str(workdir / "prodlog"), [f"z{i}y" for i in range(5)], right=False)  # a small dip: 83.3
    dip = monitor_flow(validate_config(monitor_config))
    assert dip.rolling_score == pytest.approx(83.3333, abs=1e-3) and dip.triggered  # 16.7 points below
    assert dip.optimize_flow_run_id is not None

    rows = [json.loads(line) for line in open(dip.collected_url)]
    assert len(rows) == 5 and rows[0] == {"word": "z0y", "served_code": "z0y", "judge_score": 0.0}

    async def flow_run():
        async with get_client() as client:
            return await client.read_flow_run(dip.optimize_flow_run_id)

    run = run_coro_as_sync(flow_run())
    assert run.deployment_id == deployment_id
    assert run.parameters["overrides"] == [f"data.train={json.dumps(dip.collected_url)}"]
    after = monitor_flow(validate_config(monitor_config))  # the window started afresh
    assert (after.window_examples, after.triggered) == (0, False)


def test_dsr_monitor_command(monitor_config, workdir):
    from typer.testing import CliRunner

    from flows.cli import app
    from tests.test_deployments import toml

    serve_records(str(workdir / "prodlog"), [f"a{i}b" for i in range(3)], right=True)
    (workdir / "monitor.toml").write_text(toml(monitor_config))
    result = CliRunner().invoke(app, ["monitor", str(workdir / "monitor.toml")])
    assert result.exit_code == 0, result.output
    assert "judged:               3" in result.output and "triggered:            False" in result.output
