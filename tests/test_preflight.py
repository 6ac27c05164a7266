"""Runs that cannot succeed are refused before the first LM call, with the problem and its config path.

Each test builds a config that would have spent LM calls (or run on placeholder keys, or on empty data)
before these checks existed, and asserts the refusal and that the test server saw no completion request.
"""

from __future__ import annotations

import pytest

from flows.config import ConfigError, validate_config
from flows.preflight import preflight
from tests.programs import upper_answer, write_dataset


def base_config(workdir, server, **sections):
    data = {
        "program": {"ref": "tests.programs:QA"},
        "data": {"dev": write_dataset(workdir / "dev.jsonl", 6), "input_keys": ["question"]},
        "metric": {"ref": "tests.programs:exact_upper"},
        "lm": {"model": "test-model", "api_base": server.url, "num_retries": 1},
        "run": {"artifacts_url": str(workdir / "artifacts"), "checkpoint_url": str(workdir / "checkpoints")},
        "mlflow": {"tracking_uri": f"sqlite:///{workdir / 'mlflow.db'}"},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return data


def problems_of(data, purpose="evaluate", probe=True):
    with pytest.raises(ConfigError) as info:
        preflight(validate_config(data), purpose, probe=probe)
    return dict(info.value.problems)


def test_a_sound_config_passes_and_hands_back_what_it_loaded(server, workdir):
    server.responder = upper_answer
    prepared = preflight(validate_config(base_config(workdir, server)), "evaluate")
    assert len(prepared.devset) == 6 and prepared.program_state is None
    assert server.stats.completions <= 1  # at most the probe


def test_a_named_key_variable_that_is_unset_is_a_config_error(server, workdir, monkeypatch):
    monkeypatch.delenv("DSR_TEST_KEY", raising=False)
    problems = problems_of(base_config(workdir, server, lm={"api_key_env": "DSR_TEST_KEY"}))
    assert "DSR_TEST_KEY" in problems["lm.api_key_env"] and "not set" in problems["lm.api_key_env"]
    # the default variable for the default endpoint (OpenAI itself) is needed too
    config = base_config(workdir, server)
    config["lm"].pop("api_base")
    assert "OPENAI_API_KEY" in problems_of(config, probe=False)["lm.api_key_env"]
    # a hosted provider's endpoint needs the variable LiteLLM reads for it
    monkeypatch.delenv("GROQ_API_KEY", raising=False)
    config["lm"]["model"] = "groq/llama-3.1-8b-instant"
    assert problems_of(config, probe=False)["lm.api_key_env"] == (
        "names GROQ_API_KEY, which is not set (needed for https://api.groq.com/openai/v1)"
    )
    config["lm"]["model"] = "bedrock/anthropic.claude-3-haiku"
    with pytest.raises(ConfigError, match="lm: .*bedrock has no OpenAI-compatible API"):
        validate_config(config)
    # a local endpoint with the default name needs no key: base_config passes (see the test above)
    monkeypatch.setenv("DSR_TEST_KEY", "sk-test-123")
    preflight(validate_config(base_config(workdir, server, lm={"api_key_env": "DSR_TEST_KEY"})), "evaluate")
    assert server.stats.completions <= 1


def test_a_refused_connection_is_one_clear_line_before_any_spending(server, workdir):
    from tests.conftest import free_port

    dead = f"http://127.0.0.1:{free_port()}/v1"
    problems = problems_of(base_config(workdir, server, lm={"api_base": dead}))
    assert problems["lm"] == f"test-model: cannot connect to {dead}: connection refused (probe, 1 attempt)"


def test_a_rejected_key_is_reported_with_its_variable_never_the_key(workdir, monkeypatch):
    from dsr_core.testing.server import LMTestServer

    monkeypatch.setenv("DSR_TEST_KEY", "sk-wrong-456")
    with LMTestServer(upper_answer, api_key="sk-right-789") as guarded:
        problems = problems_of(base_config(workdir, guarded, lm={"api_key_env": "DSR_TEST_KEY"}))
        assert "DSR_TEST_KEY" in problems["lm"]
        assert "sk-wrong-456" not in str(problems) and "sk-right-789" not in str(problems)
        assert guarded.stats.completions == 0


def test_empty_data_is_refused(server, workdir):
    (workdir / "empty.jsonl").write_text("")
    problems = problems_of(base_config(workdir, server, data={"dev": str(workdir / "empty.jsonl")}), probe=False)
    assert "holds no examples" in problems["data.dev"]
    config = base_config(workdir, server, data={"train": str(workdir / "empty.jsonl")})
    assert "holds no examples" in problems_of(config, "optimize", probe=False)["data.train"]


def test_a_program_that_does_not_build_is_refused(server, workdir):
    problems = problems_of(base_config(workdir, server, program={"ref": "tests.programs:Broken"}), probe=False)
    assert "does not build" in problems["program.ref"] and "no retriever configured" in problems["program.ref"]


def test_unwritable_locations_are_refused_before_paying(server, workdir, moto_s3, s3):
    (workdir / "a-file").write_text("not a folder")
    config = base_config(
        workdir,
        server,
        run={"artifacts_url": "s3://no-such-bucket/runs", "checkpoint_url": str(workdir / "a-file" / "ckpt")},
    )
    problems = problems_of(config, "optimize", probe=False)
    assert "cannot write to s3://no-such-bucket/runs" in problems["run.artifacts_url"]
    assert "cannot write to" in problems["run.checkpoint_url"]
    assert server.stats.completions == 0


def test_a_corrupt_mlflow_database_is_refused_before_paying(server, workdir):
    (workdir / "mlflow.db").write_bytes(b"this is not a sqlite database" * 100)
    problems = problems_of(base_config(workdir, server), probe=False)
    assert "mlflow.db" in problems["mlflow.tracking_uri"]
    assert server.stats.completions == 0


@pytest.mark.parametrize(
    ("params", "path", "fragment"),
    [
        ({"num_candidate_programs": -3}, "optimizer.num_candidate_programs", "greater than 0"),
        ({"num_candidate_programs": "three"}, "optimizer.num_candidate_programs", "valid integer"),
        ({"max_rounds": 0}, "optimizer.max_rounds", "greater than 0"),
        ({"max_bootstrapped_demos": 2.5}, "optimizer.max_bootstrapped_demos", "integer"),
    ],
)
def test_optimizer_parameters_are_checked_against_the_signature(server, workdir, params, path, fragment):
    data = base_config(workdir, server, optimizer={"name": "BootstrapFewShotWithRandomSearch", **params})
    with pytest.raises(ConfigError) as info:
        validate_config(data)
    problems = dict(info.value.problems)
    assert fragment in problems[path]


def test_optimizer_parameter_combinations_its_constructor_refuses(server, workdir):
    data = base_config(workdir, server, optimizer={"name": "MIPROv2", "auto": "light", "num_trials": 3})
    with pytest.raises(ConfigError, match="with auto set, num_candidates and num_trials"):
        validate_config(data)
    data = base_config(workdir, server, optimizer={"name": "COPRO", "breadth": 1})
    with pytest.raises(ConfigError, match="optimizer.breadth"):
        validate_config(data)


def test_in_process_construction_checks_parameters_too():
    from dsr_core.optimizers import BootstrapFewShotWithRandomSearch, MIPROv2

    with pytest.raises(ValueError, match="num_candidate_programs: Input should be greater than 0"):
        BootstrapFewShotWithRandomSearch(num_candidate_programs=-3)
    with pytest.raises(ValueError, match="minibatch_size"):
        MIPROv2(minibatch_size=0)
    assert BootstrapFewShotWithRandomSearch(num_candidate_programs="4").num_candidate_programs == 4


def test_an_optimizer_taking_args_and_kwargs_gets_them_as_given():
    """The parameter check wraps every optimizer's __init__, one with ``*args``/``**kwargs`` too (as DSPy's
    KNNFewShot takes BootstrapFewShot's arguments): checked names are converted, the rest pass through."""
    from dsr_core.optimizers.base import Optimizer

    class Forwarding(Optimizer):
        def __init__(self, k: int, *extra: str, **options: int) -> None:
            self.k, self.extra, self.options = k, extra, options

    made = Forwarding("3", "a", "b", max_rounds=2, seed=7)
    assert (made.k, made.extra, made.options) == (3, ("a", "b"), {"max_rounds": 2, "seed": 7})
    with pytest.raises(ValueError, match="Forwarding: invalid parameter.*k: Input should be a valid integer"):
        Forwarding("three", max_rounds=2)


def test_config_check_runs_the_same_checks(server, workdir):
    from typer.testing import CliRunner

    from flows.cli import app

    (workdir / "empty.jsonl").write_text("")
    (workdir / "run.toml").write_text(
        f"""
[program]
ref = "tests.programs:Broken"
[data]
dev = "{workdir / "empty.jsonl"}"
input_keys = ["question"]
[lm]
model = "test-model"
api_base = "{server.url}"
[run]
artifacts_url = "{workdir / "artifacts"}"
[mlflow]
tracking_uri = "sqlite:///{workdir / "mlflow.db"}"
"""
    )
    result = CliRunner().invoke(app, ["config", "check", str(workdir / "run.toml")])
    assert result.exit_code == 1
    assert "program.ref" in result.output and "data.dev" in result.output
    assert server.stats.requests == 0  # config check calls no LM


def test_optimize_refuses_an_empty_training_set_before_prefect_starts(server, workdir):
    from flows.optimize import run_optimization

    (workdir / "empty.jsonl").write_text("")
    data = base_config(
        workdir,
        server,
        data={"train": str(workdir / "empty.jsonl"), "dev": write_dataset(workdir / "dev.jsonl", 4)},
    )
    with pytest.raises(ConfigError, match="holds no examples"):
        run_optimization(validate_config(data))  # no Prefect harness: the refusal comes before the flow starts
    assert server.stats.completions == 0


def test_references_are_checked_once_and_a_checked_config_is_handed_on_as_is(server, workdir):
    from flows.config import RunConfig, resolve_config

    config = validate_config(base_config(workdir, server))
    assert resolve_config(config) is config  # the flow does not import the program's and metric's refs again
    with pytest.raises(ConfigError, match="metric.ref: cannot import"):
        resolve_config(config, ["metric.ref=tests.programs:no_such_metric"])  # overrides are checked
    unchecked = RunConfig.model_validate(base_config(workdir, server, metric={"ref": "tests.programs:no_such_metric"}))
    with pytest.raises(ConfigError, match="metric.ref: cannot import"):
        resolve_config(unchecked)  # made without validate_config: checked when a flow gets it


def test_every_lm_section_of_a_gepa_run_is_checked_and_can_be_the_bundled_model(workdir, server):
    from flows.preflight import lm_sections
    from flows.services.local_lm import local_sections
    from tests.test_flow_optimize import make_config

    config = make_config(workdir, server, optimizer={"name": "GEPA", "max_metric_calls": 10})
    config["prompt_lm"] = {"model": "proposer", "api_base": server.url}
    config["reflection_lm"] = {"model": "local"}
    validated = validate_config(config)
    assert set(lm_sections(validated, "optimize")) == {"lm", "reflection_lm"}  # it replaces prompt_lm for GEPA
    assert local_sections(validated) == ["reflection_lm"]  # started for the run like the other sections
