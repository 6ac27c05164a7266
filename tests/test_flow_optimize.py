"""The optimize flow with real parts: Prefect's test harness, MLflow on sqlite, moto S3, the test LM server."""

from __future__ import annotations

import json
import time

import pytest

from flows.checkpoint import CheckpointError, CheckpointStore
from flows.config import ConfigError, validate_config
from tests.programs import learns_from_demos, reverses_when_told, write_words


def make_config(workdir, server, *, optimizer=None, name="opt-test", register_as=None, **run):
    return {
        "program": {"ref": "tests.programs:WordCode"},
        "data": {
            "train": write_words(workdir / "train.jsonl", 16),
            "dev": write_words(workdir / "dev.jsonl", 12, offset=100),
            "input_keys": ["word"],
        },
        "metric": {"ref": "tests.programs:exact_code"},
        "lm": {"model": "test-model", "api_base": server.url, "max_concurrency": 16, "num_retries": 1},
        "optimizer": optimizer or {"name": "BootstrapFewShotWithRandomSearch", "num_candidate_programs": 3},
        "run": {
            "name": name,
            "artifacts_url": str(workdir / "artifacts"),
            "checkpoint_url": str(workdir / "checkpoints"),
            **run,
        },
        "mlflow": {
            "tracking_uri": f"sqlite:///{workdir / 'mlflow.db'}",
            "experiment": "tests",
            "register_as": register_as,
        },
    }


def task_run_names() -> set[str]:
    """The names of every task run this test session's Prefect server holds (with their run ids, unique)."""
    from prefect.client.orchestration import get_client

    names: set[str] = set()
    with get_client(sync_client=True) as client:
        while page := client.read_task_runs(limit=200, offset=len(names)):  # the server's largest page
            names.update(f"{run.name}-{run.id}" for run in page)
    return names


def test_random_search_flow_checkpoints_logs_and_registers(prefect_harness, server, workdir):
    from mlflow.tracking import MlflowClient

    from flows.optimize import run_optimization

    server.responder = learns_from_demos
    config = validate_config(make_config(workdir, server, register_as="wordcode", shard_size=5))
    report = run_optimization(config)
    assert report.baseline_score == 0.0 and report.optimized_score == 100.0
    assert report.trials == 6  # zero-shot, labeled, unshuffled + 3 shuffled bootstraps
    assert report.model_name == "wordcode" and report.model_version == "1" and report.promoted

    checkpoint = CheckpointStore(config.run.checkpoint_url, "opt-test").read_latest()
    assert checkpoint["status"] == "finished" and checkpoint["step"] == report.steps
    assert [t["trial"] for t in checkpoint["trials"]] == list(range(1, 7))

    client = MlflowClient(tracking_uri=config.mlflow.tracking_uri)
    parent = client.get_run(report.mlflow_run_id)
    assert parent.data.metrics["optimized_score"] == 100.0 and parent.data.params["optimizer.name"]
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{report.mlflow_run_id}'"
    )
    assert sorted(int(c.data.tags["dsr.trial"]) for c in children) == list(range(1, 7))
    artifacts = {a.path for a in client.list_artifacts(report.mlflow_run_id)}
    assert {"trials.parquet", "trials.png", "program.json", "model"} <= artifacts


def test_registry_keeps_the_better_champion_and_programs_load_back(prefect_harness, server, workdir, monkeypatch):
    import mlflow.pyfunc
    import pandas as pd
    from mlflow.tracking import MlflowClient

    import dsr_core as dsr
    from flows.optimize import run_optimization

    server.responder = learns_from_demos
    good = validate_config(make_config(workdir, server, name="good", register_as="wordcode"))
    assert run_optimization(good).promoted
    # one labeled demo is not enough for the server: this program scores 0 and must not become champion
    weak = make_config(
        workdir, server, name="weak", register_as="wordcode", optimizer={"name": "LabeledFewShot", "k": 1}
    )
    report = run_optimization(validate_config(weak))
    assert (report.model_version, report.optimized_score, report.promoted) == ("2", 0.0, False)
    assert report.champion_version == "1" and report.champion_score == 100.0

    client = MlflowClient(tracking_uri=good.mlflow.tracking_uri)
    assert str(client.get_model_version_by_alias("wordcode", "champion").version) == "1"
    assert str(client.get_model_version_by_alias("wordcode", "candidate").version) == "2"
    assert client.get_model_version("wordcode", "2").tags["dsr.champion_score_at_registration"] == "100.0"

    monkeypatch.setenv("MLFLOW_TRACKING_URI", good.mlflow.tracking_uri)
    program = dsr.load_program("models:/wordcode@champion")  # the class comes from the file's metadata
    assert type(program).__name__ == "WordCode" and len(program.encode.demos) >= 2
    assert program(word="abc").code == "CBA"  # its LM (base URL, model) came with it; no key stored
    model = mlflow.pyfunc.load_model("models:/wordcode@champion")
    assert model.predict([{"word": "hello"}]) == [{"code": "OLLEH"}]
    frame = model.predict(pd.DataFrame({"word": ["ab", "cd"]}))
    assert list(frame["code"]) == ["BA", "DC"]
    with pytest.raises(dsr.ProgramStateError, match="models:/nosuch@champion"):
        dsr.load_program("models:/nosuch@champion")


def test_finished_run_is_reported_not_redone(prefect_harness, server, workdir):
    from flows.optimize import run_optimization

    server.responder = learns_from_demos
    config = validate_config(make_config(workdir, server))
    first = run_optimization(config)
    requests = server.stats.requests
    again = run_optimization(config)
    assert again.already_finished and server.stats.requests == requests
    assert again.optimized_score == first.optimized_score and again.program_url == first.program_url


def test_incompatible_and_corrupt_checkpoints_stop_with_a_clear_error(prefect_harness, server, workdir):
    from flows.optimize import run_optimization

    server.responder = learns_from_demos
    run_optimization(validate_config(make_config(workdir, server, optimizer={"name": "LabeledFewShot", "k": 2})))
    folder = workdir / "checkpoints" / "opt-test"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    other = make_config(workdir, server, optimizer={"name": "BootstrapFewShot"})
    with pytest.raises(CheckpointError, match=r"incompatible run \(different optimizer, optimizer_params"):
        run_optimization(validate_config(other))
    reseeded = make_config(workdir, server, optimizer={"name": "LabeledFewShot", "k": 2, "seed": 7})
    with pytest.raises(CheckpointError, match=r"different optimizer_params\)"):
        run_optimization(validate_config(reseeded))
    more_data = make_config(workdir, server, optimizer={"name": "LabeledFewShot", "k": 2})
    write_words(workdir / "train.jsonl", 17)
    with pytest.raises(CheckpointError, match=r"different data\)"):
        run_optimization(validate_config(more_data))
    write_words(workdir / "train.jsonl", 16)

    latest = folder / json.loads((folder / "latest.json").read_text())["object"]
    latest.write_bytes(latest.read_bytes()[:-40])  # truncated
    with pytest.raises(CheckpointError, match="does not match the checksum"):
        run_optimization(validate_config(make_config(workdir, server, optimizer={"name": "LabeledFewShot", "k": 2})))
    (folder / "latest.json").write_text('{"step": 0, "obj')
    with pytest.raises(CheckpointError, match="latest.json: not valid JSON"):
        run_optimization(validate_config(make_config(workdir, server, optimizer={"name": "LabeledFewShot", "k": 2})))
    after = {p.name for p in folder.iterdir()}
    assert after == set(before)  # nothing was overwritten or restarted


LOCAL_PROGRAM = """
import dsr_core as dsr


class LocalWordCode(dsr.Module):
    def __init__(self):
        self.encode = dsr.Predict("word -> code")

    async def aforward(self, word):
        return await self.encode.acall(word=word)


def local_exact(example, prediction, trace=None):
    return prediction.code == example.code
"""


def test_a_checkpoint_is_refused_by_a_run_with_other_code_state_metric_or_lm(prefect_harness, server, workdir):
    """Each part of a run's identity the checkpoint records, changed alone, is named and nothing is written."""
    from flows.optimize import run_optimization

    (workdir / "local_wordcode.py").write_text(LOCAL_PROGRAM)

    def config(**changes):
        base = make_config(workdir, server, optimizer={"name": "LabeledFewShot", "k": 2})
        base["program"] = {"ref": "local_wordcode:LocalWordCode"}
        base["metric"] = {"ref": "local_wordcode:local_exact"}
        for section, values in changes.items():
            base[section] = {**base[section], **values}
        return validate_config(base)

    server.responder = learns_from_demos
    first = run_optimization(config())
    folder = workdir / "checkpoints" / "opt-test"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def refused(part, **changes):
        # the part is named (a metric of another name is other code as well)
        with pytest.raises(CheckpointError, match=rf"incompatible run \(different ([a-z_]+, )*{part}\b"):
            run_optimization(config(**changes))

    refused("lms", lm={"model": "another-model"})
    refused("metric", metric={"ref": "exact_match"})
    # starting from the optimized program instead of the bare one: same shape, other state
    refused("program_state", program={"state": first.program_url})
    (workdir / "local_wordcode.py").write_text(LOCAL_PROGRAM + "\n# an edit to the user's code\n")
    refused("code")

    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # nothing was overwritten or restarted


def test_config_problems_of_the_optimize_section(workdir, server):
    bad = make_config(workdir, server, optimizer={"name": "BootstrapFewShot", "max_bootstraped_demos": 3})
    with pytest.raises(ConfigError) as error:
        validate_config(bad)
    assert "optimizer.max_bootstraped_demos: BootstrapFewShot has no parameter" in str(error.value)
    assert "max_bootstrapped_demos" in str(error.value)  # the list of what it takes
    with pytest.raises(ConfigError, match="optimizer.name"):
        validate_config(make_config(workdir, server, optimizer={"name": "BetterTogether"}))
    with pytest.raises(ConfigError, match="GEPA: exactly one of auto, max_full_evals and max_metric_calls"):
        validate_config(make_config(workdir, server, optimizer={"name": "GEPA"}))


def test_copro_proposals_run_as_tasks(prefect_harness, server, workdir):
    from flows.optimize import run_optimization

    proposals = ["Echo the word back.", "Reverse the word, then uppercase it.", "Say something."]

    def responder(request):
        if "proposed_instruction" in request.output_fields:
            return [
                request.reply(proposed_instruction=proposals[i % 3], proposed_prefix_for_output_field="Code:")
                for i in range(request.body.get("n", 1))
            ]
        word = request.inputs.get("word", "")
        return request.reply(code=word[::-1].upper() if "Reverse the word" in request.instructions else word)

    server.responder = responder
    config = make_config(workdir, server, optimizer={"name": "COPRO", "breadth": 3, "depth": 2})
    config["prompt_lm"] = {"model": "prompt-model", "api_base": server.url, "temperature": 1.0}
    report = run_optimization(validate_config(config))
    assert (report.baseline_score, report.optimized_score) == (0.0, 100.0)
    assert {b["model"] for b in server.requests} == {"test-model", "prompt-model"}


def test_checkpoints_on_s3_survive_a_brief_outage(prefect_harness, server, workdir, moto_s3, s3):
    import threading

    from flows.optimize import run_optimization

    s3.mkdir("dsr-ckpt")
    server.responder = learns_from_demos
    server.latency = 0.05
    config = validate_config(make_config(workdir, server, checkpoint_url="s3://dsr-ckpt/runs", shard_size=6))
    outage = threading.Event()

    def interrupt():  # S3 goes away for 1.5 s once the run has written its second checkpoint
        while not outage.is_set():
            s3.invalidate_cache()
            if s3.exists("dsr-ckpt/runs/opt-test/checkpoint-000003.json"):
                moto_s3.stop()
                time.sleep(1.5)
                moto_s3.restart()
                outage.set()
            time.sleep(0.02)

    watcher = threading.Thread(target=interrupt, daemon=True)
    watcher.start()
    report = run_optimization(config)
    watcher.join(10)
    assert outage.is_set() and report.optimized_score == 100.0
    s3.invalidate_cache()
    pointer = json.loads(s3.cat("dsr-ckpt/runs/opt-test/latest.json"))
    assert pointer["step"] == report.steps
    checkpoint = CheckpointStore("s3://dsr-ckpt/runs", "opt-test").read_latest()
    assert checkpoint["status"] == "finished" and len(checkpoint["trials"]) == report.trials == 6


def test_two_optimizations_at_once_in_one_process(prefect_harness, server, workdir):
    from concurrent.futures import ThreadPoolExecutor

    from mlflow.tracking import MlflowClient

    from flows.optimize import run_optimization

    server.responder = learns_from_demos
    configs = [
        validate_config(make_config(workdir, server, name="left")),
        validate_config(
            make_config(workdir, server, name="right", optimizer={"name": "BootstrapFewShot", "max_labeled_demos": 2})
        ),
    ]
    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(run_optimization, configs))
    assert [r.run_name for r in reports] == ["left", "right"]
    client = MlflowClient(tracking_uri=configs[0].mlflow.tracking_uri)
    for report in reports:
        parent = client.get_run(report.mlflow_run_id)
        assert parent.info.run_name == report.run_name and parent.info.status == "FINISHED"
        children = client.search_runs(
            [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{report.mlflow_run_id}'"
        )
        assert len(children) == report.trials  # each run's trials under its own parent, none lost or mixed
    assert reports[0].trials == 6 and reports[1].trials == 0


# (optimizer section, metric ref, the server's rule) of the runs killed and resumed: random search, and two whose
# state is their own (GEPA's candidate pool, reflecting with [lm] as no [prompt_lm] or [reflection_lm] is set;
# Structural's graphs, its planner's traced runs and split questions)
KILLED_RUNS = {
    "random_search": (
        {"name": "BootstrapFewShotWithRandomSearch", "num_candidate_programs": 3},
        None,
        learns_from_demos,
    ),
    "gepa": (
        {"name": "GEPA", "max_metric_calls": 60, "reflection_minibatch_size": 3, "use_merge": False},
        "tests.programs:code_feedback",
        reverses_when_told,
    ),
    "structural": ({"name": "Structural", "max_steps": 2, "minibatch_size": 4}, None, learns_from_demos),
}


@pytest.mark.parametrize("kind", list(KILLED_RUNS))
def test_kill_9_mid_run_then_resume_ends_identical(prefect_harness, prefect_server, server, workdir, monkeypatch, kind):
    """A run killed with SIGKILL after step k resumes at k+1, pays for no finished trial again, and ends
    with the same program and score as an uninterrupted run with the same seed."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from typer.testing import CliRunner

    from flows.cli import app
    from flows.optimize import run_optimization

    seen: list[tuple[float, str]] = []

    optimizer, metric, rule = KILLED_RUNS[kind]

    def recording(request):
        seen.append((time.time(), json.dumps(request.body, sort_keys=True)))
        return rule(request)

    def configured(folder, name):
        config = make_config(folder, server, optimizer=optimizer, name=name, shard_size=4)
        if metric is not None:
            config["metric"] = {"ref": metric}
        return config

    server.responder = recording
    server.latency = 0.15
    # the uninterrupted reference: its own LM cache, results and checkpoints
    monkeypatch.setenv("DSR_CACHE_DIR", str(workdir / "ref" / "cache"))
    (workdir / "ref").mkdir()
    reference = run_optimization(validate_config(configured(workdir / "ref", "reference")))
    assert reference.steps > 4  # long enough to be killed in the middle
    seen.clear()

    config = configured(workdir, "spot")
    toml = "\n".join(
        f"[{section}]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in values.items() if v is not None)
        for section, values in config.items()
    )
    (workdir / "optimize.toml").write_text(toml)
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_server["url"],
        "PREFECT_HOME": prefect_server["home"],
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        "DSR_CACHE_DIR": str(workdir / "cache"),
    }
    command = [sys.executable, "-m", "flows.cli", "optimize", str(workdir / "optimize.toml")]
    pointer = workdir / "checkpoints" / "spot" / "latest.json"
    first = subprocess.Popen(
        command, cwd=workdir, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.time() + 180
    killed_at = None
    while time.time() < deadline and first.poll() is None:
        if pointer.exists() and json.loads(pointer.read_text())["step"] >= 3:
            killed_at = json.loads(pointer.read_text())
            os.killpg(first.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    first.wait(30)
    assert killed_at is not None, first.stderr.read().decode()[-3000:]
    assert killed_at["step"] < reference.steps  # killed mid-run, not after the end
    requests_before = [key for at, key in seen if at <= killed_at["written_at"]]

    resumed = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "(resumed)" in resumed.stdout
    after_restart = [key for at, key in seen if at > killed_at["written_at"]]
    assert after_restart and not set(requests_before) & set(after_restart)  # finished trials were not paid again
    checkpoint = CheckpointStore(str(workdir / "checkpoints"), "spot").read_latest()
    report = checkpoint["report"]
    assert report["resumed"] and report["steps"] == reference.steps
    assert report["optimized_score"] == reference.optimized_score
    assert [t["score"] for t in checkpoint["trials"]] == [
        t["score"] for t in CheckpointStore(str(workdir / "ref" / "checkpoints"), "reference").read_latest()["trials"]
    ]
    assert (
        checkpoint["state"] == CheckpointStore(str(workdir / "ref" / "checkpoints"), "reference").read_latest()["state"]
    )
    program = json.loads(Path(report["program_url"]).read_text())
    expected = json.loads(Path(reference.program_url).read_text())
    assert program == expected

    cli = CliRunner()
    listing = cli.invoke(app, ["runs", "list", str(workdir / "checkpoints")])
    assert listing.exit_code == 0 and f"spot  finished  {optimizer['name']}" in listing.output
    shown = cli.invoke(app, ["runs", "show", str(workdir / "checkpoints"), "spot"])
    assert shown.exit_code == 0 and "status:     finished" in shown.output
    assert kind != "random_search" or "#6" in shown.output


def test_mipro_flow_searches_with_parallel_trials(prefect_harness, server, workdir):
    from flows.optimize import run_optimization
    from tests.test_mipro import responder  # the server needs a proposed instruction and demos

    server.responder = responder
    optimizer = {"name": "MIPROv2", "auto": None, "num_candidates": 3, "num_trials": 6, "minibatch_size": 5}
    config = make_config(workdir, server, optimizer={**optimizer, "parallel_trials": 2}, shard_size=5)
    report = run_optimization(validate_config(config))
    assert (report.baseline_score, report.optimized_score) == (0.0, 100.0)
    trials = CheckpointStore(str(workdir / "checkpoints"), "opt-test").read_latest()["trials"]
    assert [t["kind"] for t in trials][:1] == ["baseline"] and {"minibatch", "full"} <= {t["kind"] for t in trials}
    assert all("0_predictor_instruction" in json.loads(t["choice"]) for t in trials)
    assert [t["examples"] for t in trials if t["kind"] == "minibatch"] == [5] * 6
    # two trials per step, except where a full evaluation comes between (after the 5th minibatch trial)
    minibatch_steps = [t["step"] for t in trials if t["kind"] == "minibatch"]
    assert sorted(minibatch_steps.count(step) for step in set(minibatch_steps)) == [1, 1, 2, 2]


def test_gepa_flow_reflects_with_the_reflection_lm_and_traces_as_tasks(prefect_harness, server, workdir):
    from flows.optimize import run_optimization

    server.responder = reverses_when_told
    optimizer = {"name": "GEPA", "max_metric_calls": 80, "reflection_minibatch_size": 3, "use_merge": False}
    config = make_config(workdir, server, optimizer=optimizer, shard_size=4)
    config["metric"] = {"ref": "tests.programs:code_feedback"}
    config["reflection_lm"] = {"model": "reflection-model", "api_base": server.url}
    before = task_run_names()
    report = run_optimization(validate_config(config))
    assert (report.baseline_score, report.optimized_score) == (0.0, 100.0)
    labels = task_run_names() - before
    # the traces of the reflection minibatches (3 examples: one shard), the reflections, and the evaluations of
    # the 12 validation examples in shards of 4 (named by their first example), each its own task
    names = {label.rsplit("-", 5)[0] for label in labels}
    assert {"trace[0]", "generate[reflect:0]", "evaluate_shard[0]", "evaluate_shard[4]", "evaluate_shard[8]"} <= names
    assert {b["model"] for b in server.requests} == {"test-model", "reflection-model"}
    reflections = [b for b in server.requests if b["model"] == "reflection-model" and b.get("max_tokens") != 1]
    assert reflections and "must say: reverse" in json.dumps(reflections[0]["messages"])  # the feedback reached it
    checkpoint = CheckpointStore(str(workdir / "checkpoints"), "opt-test").read_latest()
    assert checkpoint["status"] == "finished" and checkpoint["state"]["optimizer"] == "GEPA"
    with open(report.program_url) as handle:
        assert "Reverse the word" in handle.read()  # the winning instruction is the one the feedback asked for


def test_simba_flow_samples_trajectories_as_tasks_and_keeps_the_demos_that_help(prefect_harness, server, workdir):
    from flows.optimize import run_optimization
    from tests.test_simba import Server, knows_from_demos, words

    server.responder = Server(knows_from_demos)
    optimizer = {"name": "SIMBA", "bsize": 4, "num_candidates": 3, "max_steps": 3}
    config = make_config(workdir, server, optimizer=optimizer, shard_size=4)
    for split, rows in (("train", words(8)), ("dev", words(6, offset=50))):  # upper-cased words, not make_config's
        with open(config["data"][split], "w") as handle:
            handle.writelines(json.dumps(e.toDict()) + "\n" for e in rows)
    config["metric"] = {"ref": "tests.test_simba:plain_metric"}
    report = run_optimization(validate_config(config))
    assert (report.baseline_score, report.optimized_score) == (0.0, 100.0)
    checkpoint = CheckpointStore(str(workdir / "checkpoints"), "opt-test").read_latest()
    assert checkpoint["status"] == "finished" and checkpoint["state"]["optimizer"] == "SIMBA"
    with open(report.program_url) as handle:
        assert json.load(handle)["encode"]["demos"]  # the program that won carries the demos that lifted it


def test_a_crashed_run_is_marked_failed_in_mlflow_and_resumes(prefect_harness, server, workdir, monkeypatch):
    from mlflow.tracking import MlflowClient

    from flows.optimize import run_optimization
    from tests.programs import upper_answer, write_dataset

    server.responder = upper_answer
    config = make_config(
        workdir, server, optimizer={"name": "BootstrapFewShotWithRandomSearch", "num_candidate_programs": 1}
    )
    config["program"] = {"ref": "tests.programs:QA"}
    config["data"] = {
        "train": write_dataset(workdir / "qa-train.jsonl", 10),
        "dev": write_dataset(workdir / "qa-dev.jsonl", 6),
        "input_keys": ["question"],
    }
    config["metric"] = {"ref": "tests.programs:exact_upper"}
    config = validate_config(config)
    monkeypatch.setenv("DSR_TEST_CRASH_ON", "q8")  # dies when bootstrapping reaches training example 8
    with pytest.raises(BaseException):  # noqa: B017 - the flow fails; which wrapper Prefect uses is not the point
        run_optimization(config)
    checkpoint = CheckpointStore(str(workdir / "checkpoints"), "opt-test").read_latest()
    client = MlflowClient(tracking_uri=config.mlflow.tracking_uri)
    assert client.get_run(checkpoint["mlflow_run_id"]).info.status == "FAILED"
    assert checkpoint["status"] == "running" and checkpoint["step"] >= 1  # the dev-set trials before the crash

    monkeypatch.delenv("DSR_TEST_CRASH_ON")
    report = run_optimization(config)
    assert report.resumed and report.mlflow_run_id == checkpoint["mlflow_run_id"]
    assert client.get_run(report.mlflow_run_id).info.status == "FINISHED"


def test_a_deleted_pointer_neither_restarts_the_run_nor_registers_again(prefect_harness, server, workdir):
    from mlflow.tracking import MlflowClient

    from flows.optimize import run_optimization

    server.responder = learns_from_demos
    config = validate_config(
        make_config(workdir, server, optimizer={"name": "LabeledFewShot", "k": 2}, register_as="ptr-model")
    )
    first = run_optimization(config)
    folder = workdir / "checkpoints" / "opt-test"
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.name != "latest.json"}
    (folder / "latest.json").unlink()

    again = run_optimization(config)
    assert again.already_finished and again.mlflow_run_id == first.mlflow_run_id
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.name in before} == before  # nothing overwritten
    client = MlflowClient(tracking_uri=config.mlflow.tracking_uri)
    parents = client.search_runs(
        [client.get_experiment_by_name("tests").experiment_id], "tags.`dsr.run_name` = 'opt-test'"
    )
    assert len(parents) == 1
    assert len(client.search_model_versions("name = 'ptr-model'")) == 1


def test_the_api_key_reaches_nothing_the_run_writes(prefect_harness, server, workdir, monkeypatch):
    """Checkpoints, shard results, tables, the program, MLflow's database and artifacts: no byte of the key."""
    from flows.optimize import run_optimization

    secret = "sk-dsr-test-SECRET-5f3a9c"
    monkeypatch.setenv("DSR_TEST_KEY", secret)
    server.responder = learns_from_demos
    config = make_config(workdir, server, optimizer={"name": "BootstrapFewShot"}, register_as="keyless")
    config["lm"]["api_key_env"] = "DSR_TEST_KEY"
    report = run_optimization(validate_config(config))
    assert report.optimized_score > report.baseline_score
    written = [p for p in workdir.rglob("*") if p.is_file()]
    assert len(written) > 10  # checkpoints, results, program.json, mlflow.db, artifacts
    leaks = [str(p) for p in written if secret.encode() in p.read_bytes()]
    assert leaks == []


@pytest.mark.parametrize(
    ("optimizer", "where"),
    [
        ({"name": "BootstrapFewShot", "max_bootstrapped_demos": 2}, "optimizer calls of this step"),
        ({"name": "LabeledFewShot", "k": 2}, "final evaluation of the baseline program"),  # no LM call before it
    ],
)
def test_an_endpoint_that_is_down_fails_the_run_instead_of_scoring_zero(
    prefect_harness, server, workdir, optimizer, where
):
    from flows.evaluate import EvaluationFailed
    from flows.optimize import run_optimization

    server.responder = learns_from_demos
    server.inject("500", 10_000)  # every request, the probe's included (a 5xx is reachable: warned, not refused)
    config = validate_config(make_config(workdir, server, optimizer=optimizer, name="down"))
    with pytest.raises(EvaluationFailed, match=where):
        run_optimization(config)
    latest = CheckpointStore(config.run.checkpoint_url, "down").read_latest()
    assert latest is None or latest["status"] != "finished"  # nothing was registered as a result


def test_references_are_checked_once_on_the_way_into_the_flow(prefect_harness, server, workdir, monkeypatch):
    """The CLI's load_config checks the program and metric references; run_optimization, Prefect's parameter
    validation, the flow and its tasks take the checked config as it is and never import-check them again."""
    import yaml

    import flows.config
    from flows.config import RunConfig, load_config
    from flows.optimize import optimize_flow, run_optimization

    checked: list[str] = []
    check_references = flows.config.check_references

    def counted(config):
        checked.append(config.program.ref)
        return check_references(config)

    monkeypatch.setattr(flows.config, "check_references", counted)
    server.responder = learns_from_demos
    path = workdir / "optimize.yaml"
    path.write_text(yaml.safe_dump(make_config(workdir, server, optimizer={"name": "LabeledFewShot", "k": 2})))

    config = load_config(path)
    assert checked == ["tests.programs:WordCode"]
    # what Prefect does with the flow's parameters before the flow body runs keeps the "already checked" mark
    validated = optimize_flow.validate_parameters({"config": config})["config"]
    assert isinstance(validated, RunConfig) and validated._references_checked
    assert flows.config.resolve_config(validated) is validated

    report = run_optimization(config)
    assert report.optimized_score == 100.0 and report.eval_examples == 12
    assert checked == ["tests.programs:WordCode"]  # once, by load_config: not by the flow nor anything it started
    # a config that was never checked is checked once when the flow resolves it
    unchecked = flows.config.validate_config(make_config(workdir, server, name="unchecked"), check_refs=False)
    assert not unchecked._references_checked
    flows.config.resolve_config(unchecked)
    assert len(checked) == 2
