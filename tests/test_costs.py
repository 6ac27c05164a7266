"""What runs cost: prices applied per call, accounts by LM role that add up, budgets that stop a run at a step
boundary and a resume with a higher budget that ends where an uninterrupted run ends."""

from __future__ import annotations

import json

import pytest

import dsr_core as dsr
from dsr_core.costs import Prices, known_cost, price
from dsr_core.tracking import track_usage_by_role
from flows.checkpoint import CheckpointStore
from flows.config import ConfigError, validate_config
from tests.programs import learns_from_demos
from tests.test_flow_optimize import make_config

API = {"input_price": 2.0, "output_price": 8.0}  # USD per million tokens
PROMPT = {"input_price": 10.0, "output_price": 30.0}


# -- prices --------------------------------------------------------------------------------------------------------


def test_prices_per_token_per_cached_token_and_per_gpu_hour():
    assert Prices(input=2.0, output=8.0).of(1_000_000, 500_000) == pytest.approx(2.0 + 4.0)
    cached = Prices(input=2.0, output=8.0, cached_input=0.5)
    assert cached.of(1_000_000, 0, cached_prompt_tokens=400_000) == pytest.approx(0.6 * 2.0 + 0.4 * 0.5)
    gpu = Prices(gpu_hour=3.6, tokens_per_second=1000)  # 1000 tokens a second at $3.60 an hour
    assert gpu.of(600, 400) == pytest.approx(3.6 / 3600)  # one second of GPU time
    assert not gpu.needs_throughput and gpu.with_throughput(10) is gpu  # a set throughput wins
    hourly = Prices(gpu_hour=3.6)  # no throughput yet: no call is priced (--estimate measures one)
    assert hourly.needs_throughput and hourly.with_throughput(1000).of(600, 400) == pytest.approx(3.6 / 3600)
    call = dsr.Usage(prompt_tokens=600, completion_tokens=400, lm_calls=1)
    price(call, hourly)
    assert call.unpriced_calls == 1 and known_cost(call) is None  # unknown, never guessed
    with pytest.raises(ValueError, match="prices no call"):
        hourly.of(600, 400)
    for bad, message in [
        ({"input": 1.0}, "give both input and output"),
        ({"tokens_per_second": 5}, "give gpu_hour too"),
        ({"input": 1.0, "output": 1.0, "gpu_hour": 1.0, "tokens_per_second": 5}, "not both"),
        ({"input": -1.0, "output": 1.0}, "non-negative"),
    ]:
        with pytest.raises(ValueError, match=message):
            Prices(**bad)


def test_max_cost_stops_a_run_whose_cost_is_unknown_after_its_first_step():
    """The budget's own guard for calls it cannot price (the config refuses gpu_hour_price without a throughput
    under max_cost; a run built without the config check still stops rather than spend blind)."""
    from flows.budget import Budget, Spend

    budget, spend = Budget(max_cost=1.0), Spend()
    assert budget.exceeded_by(spend, {"task": 4}) is None  # the first step runs: nothing is spent yet
    spend.add_step(
        {"task": dsr.Usage(prompt_tokens=90, completion_tokens=10, lm_calls=4, unpriced_calls=4)}, {"task": 4}, 1.0
    )
    assert budget.exceeded_by(spend, {"task": 4}) == "run.max_cost = 1: the cost of 4 LM calls is unknown"


async def test_each_call_is_priced_by_its_own_lm_and_unpriced_calls_make_the_total_unknown(server):
    server.record_bodies = True
    priced = dsr.LM("task-model", api_base=server.url, prices=Prices(input=2.0, output=8.0))
    unpriced = dsr.LM("judge-model", api_base=server.url, role="judge")
    with track_usage_by_role() as roles:
        first = await dsr.Predict("question -> answer", lm=priced).acall(question="what is rain")
        again = await dsr.Predict("question -> answer", lm=priced).acall(question="what is rain")  # cached
        await dsr.Predict("question -> answer", lm=unpriced).acall(question="is it wet")
    usage = first.usage
    assert usage.cost == pytest.approx((usage.prompt_tokens * 2.0 + usage.completion_tokens * 8.0) / 1e6)
    assert usage.cost > 0 and known_cost(usage) == round(usage.cost, 6)
    assert again.usage.cached_calls == 1 and again.usage.cost == 0 and known_cost(again.usage) == 0  # free
    assert set(roles) == {"task", "judge"} and roles["task"].lm_calls == 2 and roles["task"].cached_calls == 1
    assert roles["judge"].unpriced_calls == 1 and known_cost(roles["judge"]) is None


def test_max_cost_needs_prices_on_every_lm_the_run_uses(workdir, server):
    config = make_config(workdir, server, max_cost=1.0)
    with pytest.raises(ConfigError, match=r"lm: run.max_cost needs prices"):
        validate_config(config)
    config["lm"].update(API)
    assert validate_config(config).run.max_cost == 1.0
    config["lm"] = {**make_config(workdir, server)["lm"], "gpu_hour_price": 0.5}  # no throughput to price at
    with pytest.raises(ConfigError, match=r"lm.tokens_per_second: run.max_cost cannot be kept with gpu_hour_price"):
        validate_config(config)
    config["lm"]["tokens_per_second"] = 50.0
    assert validate_config(config).run.max_cost == 1.0


# -- accounts ------------------------------------------------------------------------------------------------------


def test_an_evaluation_reports_its_cost_per_example_and_in_all(prefect_harness, server, workdir):
    import pyarrow.parquet as pq

    from flows.evaluate import run_evaluation

    server.responder = learns_from_demos
    config = make_config(workdir, server, name="eval-cost")
    config["lm"].update(API)
    report = run_evaluation(validate_config(config))
    table = pq.read_table(report.table_url).to_pylist()
    expected = [(r["prompt_tokens"] * 2.0 + r["completion_tokens"] * 8.0) / 1e6 for r in table]
    assert [r["cost"] for r in table] == pytest.approx(expected) and all(c > 0 for c in expected)
    assert report.cost == pytest.approx(sum(expected), abs=1e-6)
    assert report.prompt_tokens == sum(r["prompt_tokens"] for r in table)


def test_an_optimization_accounts_by_role_and_the_parts_add_up(prefect_harness, server, workdir):
    from mlflow.tracking import MlflowClient

    from flows.optimize import run_optimization

    def copro_responder(request):
        if "proposed_instruction" in request.output_fields:
            return [
                request.reply(
                    proposed_instruction=f"Reverse the word, then uppercase it ({i}).",
                    proposed_prefix_for_output_field="Code:",
                )
                for i in range(request.body.get("n", 1))
            ]
        word = request.inputs.get("word", "")
        return request.reply(code=word[::-1].upper() if "Reverse the word" in request.instructions else word)

    server.responder = copro_responder
    config = make_config(workdir, server, optimizer={"name": "COPRO", "breadth": 3, "depth": 2})
    config["lm"].update(API)
    config["prompt_lm"] = {"model": "prompt-model", "api_base": server.url, "temperature": 1.0, **PROMPT}
    report = run_optimization(validate_config(config))
    assert set(report.by_role) == {"task", "prompt"}
    assert report.by_role["prompt"]["lm_calls"] >= 1
    assert report.lm_calls == sum(r["lm_calls"] for r in report.by_role.values())
    assert report.cost == pytest.approx(sum(r["cost"] for r in report.by_role.values()), abs=1e-6)
    assert report.by_role["prompt"]["cost"] > 0 and report.by_role["task"]["cost"] > 0
    client = MlflowClient(tracking_uri=config["mlflow"]["tracking_uri"])
    metrics = client.get_run(report.mlflow_run_id).data.metrics
    assert metrics["cost_usd"] == pytest.approx(report.cost)
    assert metrics["lm_calls.prompt"] == report.by_role["prompt"]["lm_calls"]
    assert sum(p["lm_calls"] for p in report.by_phase.values()) == report.lm_calls  # the phases add up too

    # per trial: each evaluation's own cost and calls by role; the trials and the final evaluation are all the
    # task LM spent (COPRO's other work is the prompt model's proposals)
    checkpoint = CheckpointStore(str(workdir / "checkpoints"), "opt-test").read_latest()
    trials, spend = checkpoint["trials"], checkpoint["spend"]
    for trial in trials:
        assert set(trial["by_role"]) == {"task"} and trial["by_role"]["task"]["lm_calls"] == trial["lm_calls"]
        assert trial["by_role"]["task"]["tokens"] == trial["prompt_tokens"] + trial["completion_tokens"]
        assert trial["cost"] == trial["by_role"]["task"]["cost"] and (trial["cost"] > 0) == (trial["lm_calls"] > 0)
    final = [usage for e in spend["history"] if e["phase"] == "final evaluation" for usage in e["by_role"].values()]
    task = spend["by_role"]["task"]
    assert sum(t["lm_calls"] for t in trials) + sum(u["lm_calls"] for u in final) == task["lm_calls"]
    assert sum(t["cost"] for t in trials) + sum(u["cost"] for u in final) == pytest.approx(task["cost"], abs=1e-9)
    assert (
        sum(t["lm_calls"] for t in trials)
        == report.by_role["task"]["lm_calls"] - report.by_phase["final evaluation"]["lm_calls"]
    )
    children = client.search_runs(
        [client.get_run(report.mlflow_run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{report.mlflow_run_id}'",
    )
    logged = {child.data.tags["dsr.trial"]: child.data.metrics for child in children}
    assert len(logged) == len(trials)
    for trial in trials:
        assert logged[str(trial["trial"])]["cost_usd"] == pytest.approx(trial["cost"], abs=1e-12)
        assert logged[str(trial["trial"])]["lm_calls.task"] == trial["lm_calls"]
        assert logged[str(trial["trial"])]["tokens.task"] == trial["by_role"]["task"]["tokens"]


# -- budgets -------------------------------------------------------------------------------------------------------


def final_program(report) -> dict:
    with open(report.program_url) as handle:
        return {k: v for k, v in json.load(handle).items() if k != "metadata"}


def trials_of(workdir, name) -> list[dict]:
    """The trials without what depends on caches and replays (time, calls, tokens, cost)."""
    spend = ("seconds", "lm_calls", "cached_calls", "prompt_tokens", "completion_tokens", "cost", "by_role")
    trials = CheckpointStore(str(workdir / "checkpoints"), name).read_latest()["trials"]
    return [{k: v for k, v in t.items() if k not in spend} for t in trials]


def steps_of(checkpoint) -> list[dict]:
    """The run's own accounts step by step (without its final evaluations)."""
    return [entry for entry in checkpoint["spend"]["history"] if entry["phase"] != "final evaluation"]


def stop_step(steps: list[dict], units: list[dict], cap: str, value: float) -> int | None:
    """Where a cap stops a run, as flows/budget.py predicts it: after step k, the spend so far plus the next
    step's share of it (its program runs over those done so far; random search has no other work) is over the
    cap. ``steps`` are the capped run's accounts, ``units`` every step's work (an uninterrupted run's)."""
    spent = dsr.Usage()
    seconds = 0.0
    done = 0
    for k, step in enumerate(steps, start=1):
        for usage in step["by_role"].values():
            spent.add(dsr.Usage.from_dict(usage))
        seconds += step["seconds"]
        done += step["units"]["task"]
        share = units[k]["task"] / done
        coming = {
            "max_lm_calls": (spent.lm_calls, round(spent.lm_calls * share)),
            "max_tokens": (
                spent.total_tokens,
                round(spent.prompt_tokens * share) + round(spent.completion_tokens * share),
            ),
            "max_cost": (spent.cost, spent.cost * share),
            "max_wall_time": (seconds, seconds * share),
        }[cap]
        if sum(coming) > value:
            return k
    return None


@pytest.mark.parametrize(
    ("cap", "value", "prices"),
    [
        ("max_lm_calls", 60, {}),
        ("max_tokens", 10_000, {}),
        ("max_cost", 0.015, API),
        # less than any step takes: the first step runs (nothing is measured before it), the run stops after it
        ("max_wall_time", 0.001, {}),
    ],
)
def test_a_budget_stops_at_the_step_it_predicts_and_a_higher_one_continues_to_the_same_end(
    prefect_harness, server, workdir, cap, value, prices
):
    from flows.optimize import run_optimization

    def config(name, **caps):
        config = make_config(workdir, server, name=name, **caps)
        config["lm"].update(prices)
        return validate_config(config)

    server.responder = learns_from_demos
    stopped = run_optimization(config("capped", **{cap: value}))
    assert stopped.status == "stopped: budget" and f"run.{cap} = {value:g}" in stopped.stop_reason
    checkpoint = CheckpointStore(str(workdir / "checkpoints"), "capped").read_latest()
    assert checkpoint["status"] == "stopped: budget" and len(steps_of(checkpoint)) == checkpoint["step"] > 0
    assert stopped.model_dump()["optimized_score"] is not None  # finished with the best program found so far

    resumed = run_optimization(config("capped", **{cap: value * 10_000}))
    assert resumed.status == "finished" and resumed.resumed and resumed.steps > checkpoint["step"]
    units = [step["units"] for step in steps_of(CheckpointStore(str(workdir / "checkpoints"), "capped").read_latest())]
    assert len(units) == resumed.steps  # the resumed run's accounts continue the stopped run's
    assert stop_step(steps_of(checkpoint), units, cap, value) == checkpoint["step"]  # the exact step, not a bound
    if cap == "max_lm_calls":  # the same end as a run never stopped (one cap shows it: the stop is the same for all)
        whole = run_optimization(config("whole"))
        assert whole.status == "finished" and whole.optimized_score == 100.0 and resumed.steps == whole.steps
        assert final_program(resumed) == final_program(whole)
        assert trials_of(workdir, "capped") == trials_of(workdir, "whole")


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("BootstrapFewShotWithRandomSearch", {"num_candidate_programs": 3}),
        ("COPRO", {"breadth": 2, "depth": 2}),
        ("MIPROv2", {"auto": None, "num_candidates": 2, "num_trials": 3, "minibatch_size": 4}),
        ("GEPA", {"max_metric_calls": 60, "reflection_minibatch_size": 2}),
        ("SIMBA", {"bsize": 4, "num_candidates": 2, "max_steps": 2}),
        ("Structural", {"max_steps": 2, "minibatch_size": 4}),
    ],
)
def test_every_optimizer_names_its_best_program_so_far_mid_run(server, lm, name, params):
    """What a budget stop finishes with: after a few steps, a program state that loads into the student."""
    from dsr_core._async import run_sync
    from dsr_core.optimizers import LocalRunner
    from flows.config import optimizer_class
    from tests.programs import WordCode, code

    def responder(request):
        if request.output_fields and request.output_fields[0] != "code":  # any proposal or reflection
            return request.reply(**{field: "Reverse the word." for field in request.output_fields})
        return learns_from_demos(request)

    server.responder = responder
    train = [dsr.Example(word=f"w{i}x", code=code(f"w{i}x")).with_inputs("word") for i in range(10)]
    student = WordCode()
    student.set_lm(lm)
    optimizer = optimizer_class(name)(metric=lambda e, p, t=None: p.code == e.code, seed=0, **params)
    runner = LocalRunner(student, train, train[:6], optimizer.metric)
    state = optimizer.init_state(student, train, train[:6])
    named = []
    for _ in range(4):
        if state.done:
            break
        state = optimizer.tell(state, run_sync(runner.run(optimizer.ask(state))))
        named.append(optimizer.best_so_far(state))
    assert any(found is not None for found in named), f"{name} never named a best program"
    for found in named:
        if found is not None:
            student.deepcopy().load_state(found)  # a program state of the student


def test_an_evaluation_under_a_budget_stops_between_waves_with_what_it_scored(prefect_harness, server, workdir):
    from flows.evaluate import run_evaluation

    server.responder = learns_from_demos
    config = make_config(workdir, server, name="eval-capped", shard_size=2, max_workers=2, max_lm_calls=6)
    report = run_evaluation(validate_config(config))
    assert report.status == "stopped: budget" and "run.max_lm_calls = 6" in report.stop_reason
    assert (report.n, report.planned, report.lm_calls) == (4, 12, 4)  # one wave of two 2-example shards
    assert server.stats.requests == 4


def test_an_lm_judges_calls_are_its_own_role_with_its_own_prices(prefect_harness, server, workdir):
    import pyarrow.parquet as pq

    from flows.evaluate import run_evaluation
    from tests.test_monitor import judge

    server.responder = judge
    config = make_config(workdir, server, name="judged")
    config["metric"] = {"ref": "judge"}
    config["lm"].update(API)
    config["judge_lm"] = {"model": "judge-model", "api_base": server.url, **PROMPT}
    report = run_evaluation(validate_config(config))
    table = pq.read_table(report.table_url).to_pylist()
    assert set(report.by_role) == {"task", "judge"}
    assert report.by_role["judge"]["lm_calls"] == report.by_role["task"]["lm_calls"] == 12  # one each per example
    judge_tokens = sum(r["judge_prompt_tokens"] + r["judge_completion_tokens"] for r in table)
    assert report.by_role["judge"]["tokens"] == judge_tokens > 0
    judge_cost = sum(r["judge_prompt_tokens"] * 10.0 + r["judge_completion_tokens"] * 30.0 for r in table) / 1e6
    assert report.by_role["judge"]["cost"] == pytest.approx(judge_cost, abs=1e-6)
    assert report.cost == pytest.approx(report.by_role["task"]["cost"] + report.by_role["judge"]["cost"], abs=1e-6)
