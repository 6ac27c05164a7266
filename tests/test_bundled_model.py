"""Optimization on the bundled model, end to end: `dsr optimize ... --lm local` on the travel_destination example.

Nothing is simulated: llama.cpp serves SmolLM2-135M-Instruct on 127.0.0.1 for the run, the program reaches it
through the same LM client as any endpoint, and the validation examples are never shown to the optimizer
(BootstrapFewShot draws its demos from the training set only). About a minute on 2 cores.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.config import read_config_file
from flows.services.local_lm import INSTALL_COMMAND, MODEL_NAME, missing_extra

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "travel_destination"

pytestmark = pytest.mark.skipif(
    missing_extra() is not None, reason=f"the bundled model needs the local extra: {INSTALL_COMMAND}"
)


def write_toml(path: Path, config: dict) -> None:
    lines = []
    for section, values in config.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items() if value is not None]
    path.write_text("\n".join(lines) + "\n")


def test_optimized_program_beats_the_baseline_on_held_out_examples(prefect_harness, workdir):
    config = read_config_file(EXAMPLE / "optimize.toml")
    config["data"].update(train=str(EXAMPLE / "data/train.jsonl"), dev=str(EXAMPLE / "data/dev.jsonl"), limit=30)
    config["lm"]["model"] = "gpt-4o-mini"  # replaced on the command line, as a user would
    config["optimizer"] = {"name": "BootstrapFewShot", "max_bootstrapped_demos": 2, "max_labeled_demos": 4}
    config["run"] = {"name": "bundled", "checkpoint_url": str(workdir / "ckpt"), "artifacts_url": str(workdir / "art")}
    config["mlflow"].update(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}", register_as="bundled-test")
    write_toml(workdir / "optimize.toml", config)

    result = CliRunner().invoke(app, ["optimize", str(workdir / "optimize.toml"), "--lm", "local"])
    assert result.exit_code == 0, result.output
    scores = re.search(r"baseline ([\d.]+) -> optimized ([\d.]+) \((\d+) examples\)", result.output)
    assert scores, result.output
    baseline, optimized, examples = float(scores[1]), float(scores[2]), int(scores[3])
    assert examples == 30
    assert optimized > baseline, result.output
    assert "registered" in result.output and "mlflow ui --backend-store-uri" in result.output

    program = json.loads((workdir / "ckpt" / "bundled" / "program.json").read_text())
    assert program["extract"]["lm"]["model"] == "openai/" + MODEL_NAME and len(program["extract"]["demos"]) >= 2
