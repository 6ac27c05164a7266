"""The ``dsr`` command line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NoReturn

import typer

# The live display reports progress; Prefect's per-task INFO lines would scroll over it. Warnings and errors
# still show, and PREFECT_LOGGING_LEVEL=INFO brings the rest back.
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

app = typer.Typer(
    help="dsr: declarative LM programs, evaluated and optimized.", no_args_is_help=True, add_completion=False
)
cache_app = typer.Typer(
    help="The LM response cache (directory from DSR_CACHE_DIR, default ~/.cache/dsr).", no_args_is_help=True
)
program_app = typer.Typer(help="Saved programs (JSON files written by program.save()).", no_args_is_help=True)
config_app = typer.Typer(help="Run configs (TOML or YAML).", no_args_is_help=True)
app.add_typer(cache_app, name="cache")
app.add_typer(program_app, name="program")
runs_app = typer.Typer(help="Optimization runs, read from their checkpoints.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(runs_app, name="runs")

SET_HELP = "Override a config key, e.g. --set lm.max_concurrency=32 (repeatable)."


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


@app.command()
def version() -> None:
    """Print the dsr version."""
    import dsr_core

    typer.echo(dsr_core.__version__)


@cache_app.command("info")
def cache_info() -> None:
    """Show where the cache lives, how many entries it holds and their size."""
    from dsr_core.cache import Cache

    stats = Cache().disk_stats()
    typer.echo(f"directory: {stats['directory']}\nentries:   {stats['entries']}\nsize:      {stats['bytes']:,} bytes")


@cache_app.command("clear")
def cache_clear(yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")) -> None:
    """Delete every cached LM response."""
    from dsr_core.cache import Cache

    cache = Cache()
    if not yes:
        typer.confirm(f"Delete every entry under {cache.directory}?", abort=True)
    cache.clear()
    typer.echo(f"cleared {cache.directory}")


@program_app.command("show")
def program_show(path: Path) -> None:
    """Show a saved program: each predictor's instructions, fields and number of demos."""
    from dsr_core.errors import ProgramStateError
    from dsr_core.state import read_state

    try:
        state = read_state(path)
    except ProgramStateError as exc:
        _fail(str(exc))
    metadata = state.pop("metadata", {})
    typer.echo(f"{path}  ({metadata.get('format', 'DSPy format')}, program {metadata.get('program', '?')})")
    for name, entry in state.items():
        signature = entry.get("signature", {}) if isinstance(entry, dict) else {}
        fields = [f.get("name") or f.get("prefix", "?").rstrip(":") for f in signature.get("fields", [])]
        typer.echo(f"\n[{name}]  fields: {', '.join(fields)}  demos: {len(entry.get('demos', []))}")
        typer.echo(f"  instructions: {json.dumps(signature.get('instructions', ''))}")
        if entry.get("lm"):
            typer.echo(f"  lm: {entry['lm'].get('model')}")


def _load(config_path: Path, overrides: list[str] | None) -> "RunConfig":  # noqa: F821, UP037
    from .config import ConfigError, load_config

    try:
        return load_config(config_path, overrides or [])
    except ConfigError as exc:
        _fail(str(exc))


@config_app.command("check")
def config_check(
    config_path: Path = typer.Argument(..., metavar="CONFIG"),
    set_: list[str] = typer.Option(None, "--set", help=SET_HELP),
) -> None:
    """Validate a config (keys, types, importable refs) without calling any LM."""
    config = _load(config_path, set_)
    typer.echo(f"{config_path}: ok (program {config.program.ref}, metric {config.metric.ref}, lm {config.lm.model})")


@app.command()
def evaluate(
    config_path: Path = typer.Argument(..., metavar="CONFIG"),
    set_: list[str] = typer.Option(None, "--set", help=SET_HELP),
) -> None:
    """Evaluate a program over the dev set as a Prefect flow; per-example table to Parquet, scores to MLflow."""
    from .display import EvaluationDisplay

    config = _load(config_path, set_)
    from .evaluate import run_evaluation

    # rows reach the display only from tasks running in this process
    _run_with_display(EvaluationDisplay(live=config.run.task_runner == "thread"), run_evaluation, config, "evaluation")


def _run_with_display(display: Any, run: Any, config: Any, what: str) -> None:
    """Run a flow with ``display`` as its progress sink, then print its summary; one clear line on failure."""
    import uuid

    from tasks import progress

    key = uuid.uuid4().hex
    with display:
        progress.register(key, display)
        try:
            report = run(config, progress_key=key)
        except Exception as exc:  # noqa: BLE001 - one clear line, non-zero exit
            _fail(f"{what} failed: {type(exc).__name__}: {exc}")
        finally:
            progress.unregister(key)
    display.summary(report)


@app.command()
def optimize(
    config_path: Path = typer.Argument(..., metavar="CONFIG"),
    set_: list[str] = typer.Option(None, "--set", help=SET_HELP),
    name: str = typer.Option(None, "--name", help="Run name (sets run.name): an unfinished run of that name resumes."),
) -> None:
    """Optimize a program as a Prefect flow; checkpoint every step; log trials to MLflow; register the result."""
    from .display import OptimizationDisplay

    config = _load(config_path, [*(set_ or []), *([f"run.name={json.dumps(name)}"] if name else [])])
    from .optimize import run_optimization

    _run_with_display(OptimizationDisplay(), run_optimization, config, "optimization")


@runs_app.command("list")
def runs_list(checkpoint_url: str = typer.Argument(..., metavar="CHECKPOINT_URL")) -> None:
    """List the optimization runs under a checkpoint folder or s3:// prefix."""
    from .checkpoint import list_runs

    runs = list_runs(checkpoint_url)
    if not runs:
        typer.echo(f"no runs under {checkpoint_url}")
        return
    for run in runs:
        if run["status"] == "damaged":
            typer.echo(f"{run['name']}  damaged: {run['error']}")
            continue
        best = run["best_score"]
        typer.echo(
            f"{run['name']}  {run['status']}  {run['optimizer']}  step {run['step']}  {run['trials']} trials  "
            f"best {best if best is not None else '-'}"
        )


@runs_app.command("show")
def runs_show(
    checkpoint_url: str = typer.Argument(..., metavar="CHECKPOINT_URL"),
    name: str = typer.Argument(..., metavar="NAME"),
) -> None:
    """Show one run: status, trials, best score, and the final report once it finished."""
    from .checkpoint import CheckpointError, CheckpointStore, summary

    store = CheckpointStore(checkpoint_url, name)
    try:
        checkpoint = store.read_latest()
    except CheckpointError as exc:
        _fail(str(exc))
    if checkpoint is None:
        _fail(f"no run {name!r} under {checkpoint_url}")
    info = summary(checkpoint)
    typer.echo(f"run:        {name}  ({store.url})")
    typer.echo(f"status:     {info['status']}  (step {info['step']}, optimizer {info['optimizer']})")
    typer.echo(f"best score: {info['best_score']}")
    typer.echo(f"MLflow run: {checkpoint.get('mlflow_run_id')}")
    typer.echo(f"trials:     {info['trials']}")
    for trial in checkpoint.get("trials", []):
        typer.echo(
            f"  #{trial['trial']:<4} step {trial['step']:<4} {trial['kind']:<9} {trial['split']:<5} "
            f"n={trial['examples']:<5} score {trial['score']:7.2f}  best {trial['best_so_far']}"
        )
    report = info["report"]
    if report:
        typer.echo(
            f"result:     baseline {report['baseline_score']:.2f} -> optimized {report['optimized_score']:.2f} "
            f"on {report['eval_examples']} {report['eval_split']} examples; program {report['program_url']}"
        )
        if report.get("model_name"):
            typer.echo(f"registered: {report['model_name']} v{report['model_version']}")


if __name__ == "__main__":
    app()
