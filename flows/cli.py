"""The ``dsr`` command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NoReturn

import typer

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
app.add_typer(config_app, name="config")

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
    import uuid

    from .display import EvaluationDisplay

    config = _load(config_path, set_)
    from tasks import progress

    from .evaluate import run_evaluation

    key = uuid.uuid4().hex
    # rows reach the display only from tasks running in this process
    with EvaluationDisplay(live=config.run.task_runner == "thread") as display:
        progress.register(key, display)
        try:
            report = run_evaluation(config, progress_key=key)
        except Exception as exc:  # noqa: BLE001 - one clear line, non-zero exit
            _fail(f"evaluation failed: {type(exc).__name__}: {exc}")
        finally:
            progress.unregister(key)
    display.summary(report)


if __name__ == "__main__":
    app()
