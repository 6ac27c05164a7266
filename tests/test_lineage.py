"""Candidate lineage, pictures and graph pictures in MLflow, ``dsr runs show``'s candidates, and LLMJudge's
feedback: the optimize flow with real parts (Prefect's test harness, MLflow on sqlite, the test LM server)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

import dsr_core as dsr
from flows.checkpoint import CheckpointStore
from flows.config import validate_config
from flows.lineage import lineage_rows, step_metrics
from tests.programs import reverses_when_told
from tests.test_flow_optimize import make_config

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def warnings():
    """The warnings dsr logs while the test runs (Prefect's logging setup leaves caplog without them)."""

    class Collect(logging.Handler):
        def __init__(self):
            super().__init__(logging.WARNING)
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    handler = Collect()
    logging.getLogger("dsr").addHandler(handler)
    yield handler.messages
    logging.getLogger("dsr").removeHandler(handler)


def mlflow_run(config, run_id):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=config.mlflow.tracking_uri)
    return client, {a.path for a in client.list_artifacts(run_id)}


def artifact(client, run_id, name, folder):
    (folder / "downloaded").mkdir(exist_ok=True)
    return Path(client.download_artifacts(run_id, name, str(folder / "downloaded")))


def candidate_line(output, number):
    """The line of candidate ``number`` in the candidates table (which follows the trials table)."""
    listing = output[output.index("candidates:") :].splitlines()
    return next(text for text in listing if text.startswith(f"#{number} "))


def runs_show(workdir, name="opt-test"):
    from typer.testing import CliRunner

    from flows.cli import app

    shown = CliRunner().invoke(app, ["runs", "show", str(workdir / "checkpoints"), name])
    assert shown.exit_code == 0, shown.output
    return shown.output


def structural_config(workdir, server, **optimizer):
    from tests.test_structural import TRAIN, VAL, world

    server.responder = world(max_outputs=2)
    config = make_config(workdir, server, optimizer={"name": "Structural"})
    for split, rows in (("train", TRAIN), ("dev", VAL)):
        with open(config["data"][split], "w") as handle:
            handle.writelines(json.dumps(e.toDict()) + "\n" for e in rows)
    config["program"] = {"ref": "tests.test_structural:ThreeSteps"}
    config["data"]["input_keys"] = ["question"]
    config["metric"] = {"ref": "tests.test_structural:exact"}
    config["lm"]["cache"] = False
    config["optimizer"].update({"minibatch_size": 4, "propose_splits": False, "add_reasoning": False, **optimizer})
    return validate_config(config)


# -- the flow ----------------------------------------------------------------------------------------------------


def test_gepa_logs_its_lineage_and_frontier_every_step_and_runs_show_lists_it(
    prefect_harness, server, workdir, warnings
):
    from flows.optimize import run_optimization

    server.responder = reverses_when_told
    optimizer = {"name": "GEPA", "max_metric_calls": 80, "reflection_minibatch_size": 3, "use_merge": False}
    config = make_config(workdir, server, optimizer=optimizer, shard_size=4)
    config["metric"] = {"ref": "tests.programs:code_feedback"}
    validated = validate_config(config)
    report = run_optimization(validated)
    assert (report.baseline_score, report.optimized_score) == (0.0, 100.0)
    assert not [m for m in warnings if m.startswith("MLflow")]

    client, artifacts = mlflow_run(validated, report.mlflow_run_id)
    assert {"lineage.json", "lineage.png", "trials.png"} <= artifacts
    assert not any(name.startswith("graph_") for name in artifacts)  # not a graph program
    lineage = json.loads(artifact(client, report.mlflow_run_id, "lineage.json", workdir).read_text())
    rows = lineage["candidates"]
    assert lineage["step"] == report.steps
    assert rows[0]["candidate"] == 0 and rows[0]["parents"] == [] and rows[0]["origin"] == "seed"
    assert rows[0]["score"] == 0.0
    improved = next(row for row in rows if row["score"] == 100.0)
    assert improved["parents"] == [0] and improved["origin"] == "mutation of encode" and improved["scored_on"] == "val"
    assert improved["pareto"] and improved["best"] and not rows[0]["pareto"]
    assert artifact(client, report.mlflow_run_id, "lineage.png", workdir).read_bytes().startswith(PNG)

    history = client.get_metric_history(report.mlflow_run_id, "frontier_size")
    assert [m.step for m in history] == list(range(1, report.steps + 1))  # one value per step
    best = client.get_metric_history(report.mlflow_run_id, "frontier_best_score")
    assert best[-1].value == 100.0 and best[0].value == 0.0

    # the checkpoint holds the same lineage, and runs show prints it after the trials
    state = CheckpointStore(str(workdir / "checkpoints"), "opt-test").read_latest()["state"]
    assert lineage_rows(state) == rows
    output = runs_show(workdir)
    assert output.index("trial") < output.index("candidates:")
    assert f"candidates: {len(rows)} (1 on the Pareto front)" in output
    line = candidate_line(output, improved["candidate"])
    assert "#0" in line and "mutation of encode" in line and "100.00" in line and "yes" in line


def test_simba_logs_the_programs_it_built_from_each_other(prefect_harness, server, workdir, warnings):
    from flows.optimize import run_optimization
    from tests.test_simba import Server, knows_from_demos, words

    server.responder = Server(knows_from_demos)
    optimizer = {"name": "SIMBA", "bsize": 4, "num_candidates": 3, "max_steps": 2}
    config = make_config(workdir, server, optimizer=optimizer, shard_size=4)
    for split, rows in (("train", words(8)), ("dev", words(6, offset=50))):
        with open(config["data"][split], "w") as handle:
            handle.writelines(json.dumps(e.toDict()) + "\n" for e in rows)
    config["metric"] = {"ref": "tests.test_simba:plain_metric"}
    validated = validate_config(config)
    report = run_optimization(validated)
    assert not [m for m in warnings if m.startswith("MLflow")]

    client, artifacts = mlflow_run(validated, report.mlflow_run_id)
    assert {"lineage.json", "lineage.png"} <= artifacts
    rows = json.loads(artifact(client, report.mlflow_run_id, "lineage.json", workdir).read_text())["candidates"]
    assert rows[0]["origin"] == "seed" and rows[0]["pareto"] is None  # SIMBA keeps no frontier
    children = rows[1:]
    assert children and all(len(row["parents"]) == 1 and row["step"] is not None for row in children)
    assert all(row["origin"].startswith(("append_a_demo", "append_a_rule")) for row in children)
    assert sum(row["best"] for row in rows) == 1
    assert client.get_metric_history(report.mlflow_run_id, "candidates")[-1].value == len(rows)
    assert not client.get_metric_history(report.mlflow_run_id, "frontier_size")

    output = runs_show(workdir)
    assert f"candidates: {len(rows)}\n" in output and "pareto" not in output
    assert "#0" in candidate_line(output, 1)


def test_structural_logs_graphs_quality_against_cost_and_its_lineage(prefect_harness, server, workdir, warnings):
    from flows.optimize import run_optimization

    validated = structural_config(workdir, server)
    report = run_optimization(validated)
    assert (report.baseline_score, report.optimized_score) == (100.0, 100.0)
    assert not [m for m in warnings if m.startswith("MLflow")]

    client, artifacts = mlflow_run(validated, report.mlflow_run_id)
    expected = {"lineage.json", "lineage.png", "quality_cost.json", "quality_cost.png"}
    expected |= {f"graph_{which}.{ext}" for which in ("baseline", "winner") for ext in ("dot", "txt", "png")}
    assert expected <= artifacts

    def read(name):
        return artifact(client, report.mlflow_run_id, name, workdir)

    assert "3 LM calls per run" in read("graph_baseline.txt").read_text()
    assert "2 LM calls per run" in read("graph_winner.txt").read_text()
    assert read("graph_winner.dot").read_text().startswith("digraph program {")
    # no Graphviz here: matplotlib drew the pictures
    assert read("graph_baseline.png").read_bytes().startswith(PNG)
    assert read("graph_winner.png").read_bytes().startswith(PNG)
    assert read("quality_cost.png").read_bytes().startswith(PNG)

    table = json.loads(read("quality_cost.json").read_text())
    rows = json.loads(read("lineage.json").read_text())["candidates"]
    assert [r["candidate"] for r in table] == [r["candidate"] for r in rows]
    baseline, winner = rows[0], next(r for r in rows if r["best"])
    assert baseline["origin"] == "baseline" and baseline["lm_calls"] == 3.0
    assert winner["origin"].startswith("Fuse(") and winner["parents"] == [0] and winner["lm_calls"] == 2.0
    assert winner["pareto"] and not baseline["pareto"]  # same score, fewer calls
    assert winner["tokens"] is not None and winner["status"] == "chosen"

    output = runs_show(workdir)
    assert "calls/ex" in output and "tokens/ex" in output and "status" in output
    line = candidate_line(output, winner["candidate"])
    assert "Fuse(" in line and "chosen" in line and "yes" in line


def test_mlflow_failures_in_lineage_and_pictures_do_not_fail_the_run(
    prefect_harness, server, workdir, monkeypatch, warnings
):
    from mlflow.tracking import MlflowClient

    from flows import pictures
    from flows.optimize import run_optimization

    def broken(*args, **kwargs):
        raise RuntimeError("artifact store is down")

    monkeypatch.setattr(MlflowClient, "log_dict", broken)
    monkeypatch.setattr(pictures, "plot_lineage", broken)
    validated = structural_config(workdir, server)
    report = run_optimization(validated)
    assert report.optimized_score == 100.0
    assert any(m.startswith("MLflow: could not log the lineage of step") for m in warnings)
    assert "MLflow: could not draw lineage.png" in warnings

    _, artifacts = mlflow_run(validated, report.mlflow_run_id)
    assert "lineage.png" not in artifacts  # the picture that failed; the others are there
    assert {"lineage.json", "quality_cost.png", "graph_winner.png", "program.json"} <= artifacts


# -- the pieces ------------------------------------------------------------------------------------------------


def test_a_merge_has_two_parents_in_the_lineage_and_the_picture(server, lm, tmp_path):
    from flows.pictures import plot_lineage, tree_layout
    from tests.test_gepa import Router, feedback_metric, merging, mixed, responder, run

    server.responder = responder
    router = Router()
    router.set_lm(lm)
    state = run(merging(), router, mixed(15), mixed(10, offset=50), feedback_metric)[-1]
    rows = lineage_rows(state)
    merges = [row for row in rows if row["origin"].startswith("merge")]
    assert merges and all(len(row["parents"]) == 2 for row in merges)
    assert "common ancestor" in merges[0]["origin"]
    layout = tree_layout(rows)
    for row in merges:  # a merge sits below both of its parents
        assert all(layout[row["candidate"]][1] > layout[parent][1] for parent in row["parents"])
    metrics = step_metrics(rows)
    assert metrics["candidates"] == len(rows) and metrics["frontier_size"] == sum(bool(r["pareto"]) for r in rows)
    plot_lineage(rows, tmp_path / "lineage.png", "merge")
    assert (tmp_path / "lineage.png").read_bytes().startswith(PNG)


def test_optimizers_without_a_pool_have_no_lineage():
    assert lineage_rows({"optimizer": "MIPROv2"}) is None
    assert lineage_rows({}) is None


def test_the_graph_picture_without_graphviz_shows_every_node(tmp_path, monkeypatch):
    from matplotlib import image

    from dsr_core.graph import Binding, FieldSpec, PredictNode, ProgramGraph, Ref, SignatureSpec, render_png
    from flows import tracking

    monkeypatch.setattr("shutil.which", lambda name: None)  # as on a machine without Graphviz

    def node(name, inputs, outputs, sources):
        spec = SignatureSpec.parse(f"{', '.join(inputs)} -> {', '.join(outputs)}")
        bindings = [Binding(field=f, source=Ref(node=s, field=f)) for f, s in zip(inputs, sources, strict=True)]
        return PredictNode(name=name, signature=spec, bindings=bindings)

    graph = ProgramGraph(
        inputs=[FieldSpec(name="question")],
        outputs=[FieldSpec(name="answer")],
        returns=[Binding(field="answer", source=Ref(node="answer", field="answer"))],
        nodes=[
            node("rewrite", ["question"], ["query"], [None]),
            node("expand", ["query"], ["keywords"], ["rewrite"]),
            node("answer", ["question", "keywords"], ["answer"], [None, "expand"]),  # question skips two nodes
        ],
    )
    assert render_png(graph, tmp_path / "unused.png") is None
    tracking.write_graph(tmp_path, "graph_winner", graph, "three steps")
    assert {p.name for p in tmp_path.iterdir()} == {"graph_winner.dot", "graph_winner.txt", "graph_winner.png"}
    picture = image.imread(tmp_path / "graph_winner.png")
    assert picture.shape[1] > picture.shape[0] > 100  # wide: the nodes in run order, left to right
    assert "3 LM calls per run" in (tmp_path / "graph_winner.txt").read_text()


# -- LLMJudge's feedback ---------------------------------------------------------------------------------------


def judge_responder(request):
    """The judge: right when the response matches the reference; its verdict names what is missing."""
    right = request.inputs["response"] == request.inputs["reference"]
    verdict = "Correct." if right else "Wrong: the instruction must mention zebra."
    return request.reply(feedback=verdict, score="1.0" if right else "0.0")


async def test_llm_judge_returns_its_verdict_as_feedback_when_asked(server):
    judge_lm = dsr.LM("judge-model", api_base=server.url)
    server.responder = judge_responder
    example = dsr.Example(word="w1", code="W1").with_inputs("word")
    judge = dsr.LLMJudge("The code is the word upper-cased.", lm=judge_lm, feedback=True)
    judged = await judge(example, dsr.Prediction(code="w1"))
    assert isinstance(judged, dsr.Prediction)
    assert judged.score == 0.0 and judged.feedback == "Wrong: the instruction must mention zebra."
    assert (await judge(example, dsr.Prediction(code="W1"))).feedback == "Correct."
    system = server.requests[-1]["messages"][0]["content"]
    assert system.index("`feedback`") < system.index("`score`")  # the verdict comes before the score

    plain = dsr.LLMJudge("The code is the word upper-cased.", lm=judge_lm)
    server.responder = lambda r: r.reply(score="1.0")
    assert await plain(example, dsr.Prediction(code="W1")) == 1.0  # unchanged without feedback=True

    server.responder = lambda r: r.reply(why="it is upper-case", ok="True")
    own = dsr.LLMJudge("word, code -> why, ok: bool", lm=judge_lm, feedback=True)
    judged = await own(example, dsr.Prediction(code="W1"))
    assert (judged.score, judged.feedback) == (1.0, "it is upper-case")  # its own text output is the feedback


def test_gepa_reflects_on_the_judges_feedback(server, lm):
    from dsr_core.optimizers import GEPA
    from tests.test_gepa import Encoder, plain_metric, responder, words

    judge_lm = dsr.LM("judge-model", api_base=server.url, retry_backoff=(0.01, 0.05), timeout=5.0)
    server.responder = lambda r: judge_responder(r) if r.model == "judge-model" else responder(r)
    encoder = Encoder()
    encoder.set_lm(lm)
    judge = dsr.LLMJudge("The code is the word upper-cased.", lm=judge_lm, feedback=True)
    train, val, dev = words("w", 4), words("w", 4, offset=50), words("w", 4, offset=100)
    compiled = GEPA(judge, max_metric_calls=30).compile(encoder, trainset=train, valset=val)
    reflections = [b for b in server.requests if "current_instruction" in str(b)]
    assert reflections and "must mention zebra" in reflections[0]["messages"][-1]["content"]
    assert "zebra" in compiled.encode.signature.instructions
    assert dsr.Evaluate(dev, plain_metric)(compiled).score == 100.0
