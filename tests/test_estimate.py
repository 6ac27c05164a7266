"""Estimates before a run: the optimizer's own plan times a measured sample of real calls, within 25% of the
LM calls the run then makes."""

from __future__ import annotations

import pytest

from flows.config import validate_config
from tests.programs import learns_from_demos
from tests.test_flow_optimize import make_config


@pytest.mark.parametrize(
    ("optimizer", "responder"),
    [
        ({"name": "BootstrapFewShotWithRandomSearch", "num_candidate_programs": 3}, "tests.programs:learns_from_demos"),
        ({"name": "MIPROv2", "auto": "light"}, "tests.test_mipro:responder"),
    ],
)
def test_the_estimate_is_within_a_quarter_of_the_actual_lm_calls(
    prefect_harness, server, workdir, optimizer, responder
):
    from dsr_core.imports import import_ref
    from flows.estimate import estimate, read_estimate, save_estimate
    from flows.optimize import run_optimization

    server.responder = import_ref(responder)
    config = validate_config(make_config(workdir, server, optimizer=optimizer, shard_size=8))
    before = server.stats.requests
    predicted = estimate(config)
    assert predicted.sample.runs == 3 and predicted.sample.calls_per_run == 1.0
    assert server.stats.requests - before == predicted.sample.real_calls  # the sample is all it spends
    assert [row["phase"] for row in predicted.rows][-1] == "final evaluation"
    assert predicted.total["lm_calls"] == sum(row["lm_calls"] for row in predicted.rows)
    assert predicted.total["cost"] is None  # no prices on the LM section: unknown, not zero
    assert save_estimate(config, predicted) is not None
    assert read_estimate(config.run.checkpoint_url, "opt-test")["total"] == predicted.total

    report = run_optimization(config)
    assert abs(predicted.total["lm_calls"] - report.lm_calls) <= 0.25 * report.lm_calls, (
        predicted.total["lm_calls"],
        report.lm_calls,
    )
    assert report.estimated_lm_calls == predicted.total["lm_calls"]  # the report shows both


def test_an_estimate_prices_the_plan_when_the_lm_sections_have_prices(prefect_harness, server, workdir):
    from flows.estimate import estimate

    server.responder = learns_from_demos
    config = make_config(
        workdir, server, optimizer={"name": "BootstrapFewShotWithRandomSearch", "num_candidate_programs": 2}
    )
    config["lm"].update(input_price=2.0, output_price=8.0)
    predicted = estimate(validate_config(config))
    s = predicted.sample
    calls = predicted.total["lm_calls"]
    expected = calls * (s.prompt_tokens_per_call * 2.0 + s.completion_tokens_per_call * 8.0) / 1e6
    assert predicted.total["cost"] == pytest.approx(expected, rel=0.01)
    assert predicted.total["seconds"] >= 0


def test_dsr_optimize_estimate_prints_the_plan_by_phase_and_runs_nothing_else(server, workdir):
    from tests.programs import upper_answer
    from tests.test_cli import run_dsr, write_config

    server.responder = upper_answer
    path = write_config(workdir, server, input_price=1.0, output_price=4.0)
    text = path.read_text().replace('ref = "tests.programs:QA"', 'ref = "tests.programs:QA"\n[optimizer]\nname = '
                                    '"BootstrapFewShotWithRandomSearch"\nnum_candidate_programs = 2\n[run]\nname = "est"')  # fmt: skip
    (workdir / "dev.jsonl").rename(workdir / "train.jsonl")
    path.write_text(text.replace('dev = "dev.jsonl"', 'train = "train.jsonl"'))
    done = run_dsr(["optimize", str(path), "--estimate"], workdir)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "estimate for BootstrapFewShotWithRandomSearch" in done.stdout and "final evaluation" in done.stdout
    assert "measured on 3 real program runs" in done.stdout and "$" in done.stdout
    assert (workdir / ".dsr" / "checkpoints" / "est" / "estimate.json").exists()
    assert not (workdir / ".dsr" / "checkpoints" / "est" / "latest.json").exists()  # nothing was run
    assert server.stats.requests <= 3 + 1  # the sample (and a probe)
