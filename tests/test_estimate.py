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
    prefect_harness, server, workdir, capsys, monkeypatch, optimizer, responder
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
    assert (report.estimated_tokens, report.estimated_seconds) == (
        predicted.total["tokens"],
        predicted.total["seconds"],
    )
    assert report.estimated_phases == predicted.rows
    assert set(report.by_phase) == {row["phase"] for row in predicted.rows}  # the same phases, the final evaluation too
    assert sum(phase["lm_calls"] for phase in report.by_phase.values()) == report.lm_calls

    from flows.display import OptimizationDisplay

    monkeypatch.setenv("COLUMNS", "200")  # the summary's rows unfolded
    capsys.readouterr()
    OptimizationDisplay().summary(report)
    out = capsys.readouterr().out
    total = report.prompt_tokens + report.completion_tokens
    assert f"{report.lm_calls} ({report.cached_calls} cached); estimated {predicted.total['lm_calls']}" in out
    assert f"{report.prompt_tokens} in / {report.completion_tokens} out; estimated {predicted.total['tokens']:,}" in out
    assert f"{report.wall_time:.1f}s; estimated {predicted.total['seconds']:.0f}s" in out
    assert total > 0 and "estimate vs actual, by phase" in out
    for row in predicted.rows:  # each phase: the actual LM calls and tokens beside the estimated ones
        actual = report.by_phase.get(row["phase"])
        if actual is not None:
            line = next(line for line in out.splitlines() if line.startswith(row["phase"] + "  "))
            assert line.split()[-6:-2] == [str(actual["lm_calls"]), str(row["lm_calls"]),
                                           f"{actual['tokens']:,}", f"{row['tokens']:,}"]  # fmt: skip


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


def proposals_or_demos(request):
    """Any proposal or reflection gets an instruction back; the program learns from its demos."""
    if request.output_fields and request.output_fields[0] != "code":
        return request.reply(**{field: "Reverse the word." for field in request.output_fields})
    return learns_from_demos(request)


@pytest.mark.parametrize(
    "optimizer",
    [
        {"name": "GEPA", "max_metric_calls": 60, "reflection_minibatch_size": 2},
        {"name": "SIMBA", "bsize": 4, "num_candidates": 2, "max_steps": 2},
        {"name": "Structural", "max_steps": 2, "minibatch_size": 4},
    ],
    ids=lambda optimizer: optimizer["name"],
)
def test_the_estimate_of_gepa_simba_and_structural_finishes_with_its_phase_table(
    server, workdir, capsys, monkeypatch, optimizer
):
    from flows.cli import _estimate  # what `dsr optimize CONFIG --estimate` runs once the config is loaded

    monkeypatch.setenv("COLUMNS", "200")
    server.responder = proposals_or_demos
    _estimate(validate_config(make_config(workdir, server, optimizer=optimizer, name="est")))
    out = capsys.readouterr().out
    assert f"estimate for {optimizer['name']}" in out and "measured on 3 real program runs" in out
    table = out[out.index("phase") : out.index("measured on")].splitlines()
    assert table[0].split()[:3] == ["phase", "steps", "program"]
    assert any(line.startswith("final evaluation") for line in table) and table[-1].startswith("total")
    assert len(table) >= 4  # a header, at least one phase of the optimizer's own, the final evaluation, the total
    assert (workdir / "checkpoints" / "est" / "estimate.json").exists()


@pytest.mark.parametrize("set_throughput", [None, 500.0])
def test_a_gpu_hour_price_without_a_throughput_is_priced_at_the_measured_one(
    server, workdir, capsys, monkeypatch, set_throughput
):
    from flows.estimate import estimate, print_estimate

    monkeypatch.setenv("COLUMNS", "200")
    server.responder = learns_from_demos
    config = make_config(
        workdir, server, optimizer={"name": "BootstrapFewShotWithRandomSearch", "num_candidate_programs": 2}
    )
    config["lm"]["gpu_hour_price"] = 3.6
    if set_throughput is not None:
        config["lm"]["tokens_per_second"] = set_throughput
    predicted = estimate(validate_config(config))
    s = predicted.sample
    assert s.tokens_per_second > 0  # measured on the sample's calls: their tokens over its wall time
    rate = set_throughput or s.tokens_per_second  # a set throughput wins over the measured one
    tokens_in = predicted.total["lm_calls"] * s.prompt_tokens_per_call
    tokens_out = predicted.total["lm_calls"] * s.completion_tokens_per_call
    expected = (round(tokens_in) + round(tokens_out)) / rate / 3600 * 3.6
    assert predicted.total["cost"] == pytest.approx(expected, rel=0.01)
    assert predicted.measured_throughput == ({} if set_throughput else {"lm": round(s.tokens_per_second, 1)})
    print_estimate(predicted, None)
    out = capsys.readouterr().out
    assert ("at the measured" in out) == (set_throughput is None) and "unknown" not in out
