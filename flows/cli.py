"""The ``dsr`` command line."""

from __future__ import annotations

import json
import logging
import os
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:
    from .config import RunConfig

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
lm_app = typer.Typer(help="The bundled local model (needs the local extra).", no_args_is_help=True)
app.add_typer(lm_app, name="lm")

RUN_KEY_WIDTH = 11  # `dsr runs show`: the widest key ("best score:")
SET_HELP = "Override a config key, e.g. --set lm.max_concurrency=32 (repeatable)."
LM_HELP = "The model of the lm section (sets lm.model); 'local' runs the bundled model on a server started for the run."


class _Options:
    debug = False  # --debug: tracebacks and every log line on the terminal too


@app.callback()
def main(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and every log line (Prefect's too)."),
) -> None:
    """dsr: declarative LM programs, evaluated and optimized."""
    from .runtime import prepare_prefect

    _Options.debug = debug
    prepare_prefect()  # before any command imports Prefect


def _fail(message: str, log_file: Path | None = None) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    if log_file is not None and not _Options.debug:
        typer.echo(f"details: {log_file}", err=True)
    raise typer.Exit(1)


def _fail_with(what: str, exc: BaseException, log_file: Path) -> NoReturn:
    """A command failed: the traceback to its log file (and the terminal with --debug), one line to the user."""
    logging.getLogger("dsr").error("%s failed", what, exc_info=exc)
    if _Options.debug:
        traceback.print_exception(exc)
    _fail(f"{what} failed: {_describe(exc)}", log_file)


def _describe(exc: BaseException) -> str:
    """dsr's own errors say what and where already; others get their type in front."""
    from dsr_core.errors import DsrError

    return str(exc) if isinstance(exc, DsrError) else f"{type(exc).__name__}: {exc}"


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
    from dsr_core.state import ProgramState, read_state

    try:
        program = ProgramState.from_json(read_state(path))
    except ProgramStateError as exc:
        _fail(str(exc))
    metadata = program.metadata or {}
    typer.echo(f"{path}  ({metadata.get('format', 'DSPy format')}, program {metadata.get('program', '?')})")
    for name, entry in program.predictors().items():
        signature = entry.get("signature", {}) if isinstance(entry, dict) else {}
        fields = [f.get("name") or f.get("prefix", "?").rstrip(":") for f in signature.get("fields", [])]
        typer.echo(f"\n[{name}]  fields: {', '.join(fields)}  demos: {len(entry.get('demos', []))}")
        typer.echo(f"  instructions: {json.dumps(signature.get('instructions', ''))}")
        if entry.get("lm"):
            typer.echo(f"  lm: {entry['lm'].get('model')}")


@program_app.command("graph")
def program_graph(
    source: str = typer.Argument(..., metavar="FILE_OR_MODEL", help="A program file, URL or models:/name@alias."),
    examples: Path | None = typer.Option(
        None, "--examples", help="A data file to trace the program on (a program not saved as a graph)."
    ),
    input_keys: list[str] = typer.Option(None, "--input-key", help="Input field of --examples (repeatable)."),
    limit: int = typer.Option(3, "--limit", help="How many of --examples to trace on."),
    out: Path | None = typer.Option(None, "--out", help="Where to write the picture (default: <name>.graph.dot)."),
) -> None:
    """Print a program's graph (nodes, fields on edges, LM calls per run) and write a picture of it: Graphviz
    DOT, plus a PNG next to it when Graphviz's ``dot`` is installed. A program saved by a GraphProgram
    carries its graph; any other is traced on the first ``--limit`` rows of ``--examples`` (real LM calls)."""
    import dsr_core as dsr
    from dsr_core.errors import DsrError
    from dsr_core.graph import graph_in_state, render_dot, render_png, render_text, trace_program
    from dsr_core.state import read_program_source

    try:
        graph = graph_in_state(read_program_source(source))
        if graph is None:
            if examples is None:
                _fail(f"{source} was not saved as a graph; pass --examples DATA (and --input-key) to trace it")
            if not input_keys:
                _fail("--examples needs the input fields: --input-key NAME (once per field)")
            rows = dsr.load_examples(examples, input_keys=input_keys, limit=limit)
            graph = trace_program(dsr.load_program(source), rows)
    except DsrError as exc:
        _fail(str(exc))
    typer.echo(render_text(graph))
    target = out or Path(f"{Path(source.rsplit('/', 1)[-1]).stem or 'program'}.graph.dot")
    target.write_text(render_dot(graph), encoding="utf-8")
    picture = render_png(graph, target.with_suffix(".png"))
    typer.echo(f"\npicture: {target}" + (f" and {picture}" if picture else " (install Graphviz for a PNG)"))


def _load(config_path: Path, overrides: list[str] | None, lm: str | None = None) -> RunConfig:
    from .config import ConfigError, load_config
    from .services.local_lm import LOCAL_MODEL, local_sections, missing_extra

    try:
        config = load_config(config_path, [*(overrides or []), *([f"lm.model={json.dumps(lm)}"] if lm else [])])
    except ConfigError as exc:
        _fail(str(exc))
    if lm == LOCAL_MODEL:
        config.lm.api_base = None  # the bundled model replaces the configured endpoint; other models keep it
    if local_sections(config) and (problem := missing_extra()):
        _fail(problem)
    return config


@config_app.command("check")
def config_check(
    config_path: Path = typer.Argument(..., metavar="CONFIG"),
    set_: list[str] = typer.Option(None, "--set", help=SET_HELP),
    probe: bool = typer.Option(False, "--probe", help="Also send one tiny request to every LM the run uses."),
) -> None:
    """Run the checks a run makes before its first LM call: keys, types, refs, optimizer parameters, API key
    variables, that the program builds, the data loads and is not empty, and that the artifact, checkpoint
    and MLflow locations are writable. Calls no LM unless --probe is given."""
    from .config import ConfigError
    from .preflight import preflight

    config = _load(config_path, set_)
    try:
        preflight(config, "check", probe=False)
    except ConfigError as exc:
        _fail(str(exc))
    if probe:
        from .services.local_lm import serve_local_models

        try:
            with serve_local_models(config) as served:
                preflight(served, "check", probe=True)
        except Exception as exc:  # noqa: BLE001 - one clear line
            _fail(_describe(exc))
    typer.echo(f"{config_path}: ok (program {config.program.ref}, metric {config.metric.ref}, lm {config.lm.model})")


@app.command()
def evaluate(
    config_path: Path = typer.Argument(..., metavar="CONFIG"),
    set_: list[str] = typer.Option(None, "--set", help=SET_HELP),
    lm: str = typer.Option(None, "--lm", help=LM_HELP),
) -> None:
    """Evaluate a program over the dev set as a Prefect flow; per-example table to Parquet, scores to MLflow."""
    from .display import EvaluationDisplay

    config = _load(config_path, set_, lm)
    from .evaluate import run_evaluation

    # rows reach the display only from tasks running in this process
    _run_with_display(EvaluationDisplay(live=config.run.task_runner == "thread"), run_evaluation, config, "evaluation")


def _run_with_display(display: Any, run: Any, config: Any, what: str) -> Any:
    """Run a flow with ``display`` as its progress sink, print its summary and return the report; one clear
    line on failure."""
    import uuid

    from tasks import progress

    from .logs import command_log

    key = uuid.uuid4().hex
    with command_log(what, debug=_Options.debug) as log_file, display:
        progress.register(key, display)
        try:
            report = run(config, progress_key=key)
        except Exception as exc:  # noqa: BLE001 - one clear line, non-zero exit; the traceback in the log
            _fail_with(what, exc, log_file)
        finally:
            progress.unregister(key)
    display.summary(report)
    return report


@app.command()
def optimize(
    config_path: Path = typer.Argument(..., metavar="CONFIG"),
    set_: list[str] = typer.Option(None, "--set", help=SET_HELP),
    name: str = typer.Option(None, "--name", help="Run name (sets run.name): an unfinished run of that name resumes."),
    lm: str = typer.Option(None, "--lm", help=LM_HELP),
    estimate: bool = typer.Option(
        False, "--estimate", help="Predict LM calls, tokens, cost and wall time by phase instead of running."
    ),
) -> None:
    """Optimize a program as a Prefect flow; checkpoint every step; log trials to MLflow; register the result.
    With --estimate: what the run would cost, from the optimizer's plan and a few real calls, without running."""
    from .display import OptimizationDisplay

    config = _load(config_path, [*(set_ or []), *([f"run.name={json.dumps(name)}"] if name else [])], lm)
    if estimate:
        _estimate(config)
        return
    from .optimize import run_optimization

    report = _run_with_display(OptimizationDisplay(), run_optimization, config, "optimization")
    _where_to_look(config, report)


def _estimate(config: Any) -> None:
    from dsr_core.errors import DsrError

    from .estimate import estimate, print_estimate, save_estimate
    from .services.local_lm import serve_local_models

    try:
        with serve_local_models(config) as served:
            result = estimate(served)
    except DsrError as exc:
        _fail(str(exc))
    print_estimate(result, save_estimate(config, result))


def _where_to_look(config: Any, report: Any) -> None:
    """The commands that show a finished optimization from every side."""
    from .tracking import DEFAULT_TRACKING_URI

    tracking_uri = config.mlflow.tracking_uri or DEFAULT_TRACKING_URI
    lines = [
        f"MLflow UI:    mlflow ui --backend-store-uri {tracking_uri}   (then open http://127.0.0.1:5000)"
        if tracking_uri.startswith("sqlite:")
        else f"MLflow:       {tracking_uri}",
        f"trials:       dsr runs show {config.run.checkpoint_url} {report.run_name}",
        f"program:      dsr program show {report.program_url}",
    ]
    if report.model_name:
        lines.append(f'load it:      dsr.load_program("models:/{report.model_name}/{report.model_version}")')
    typer.echo("\n".join(lines))


@app.command()
def serve(
    source: str = typer.Argument(..., metavar="MODEL", help="models:/name@alias, models:/name/version, or a path/URL"),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    log: str = typer.Option(None, "--log", help="Production log folder or s3:// prefix (JSONL parts)."),
    token_env: str = typer.Option(None, help="NAME of the environment variable holding the bearer token."),
    tracking_uri: str = typer.Option(None, help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or sqlite)."),
    refresh_seconds: float = typer.Option(30.0, help="How often to check whether the alias moved (0: never)."),
    max_field_chars: int = typer.Option(20_000, help="Largest accepted input field, in characters."),
) -> None:
    """Serve a registered program over HTTP: POST /predict, GET /health; a new champion is picked up live."""
    from dsr_core.errors import DsrError

    from .services.serving import serve as run_server

    if tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    try:
        run_server(
            source,
            host=host,
            port=port,
            log_url=log,
            token_env=token_env,
            refresh_seconds=refresh_seconds,
            max_field_chars=max_field_chars,
        )
    except DsrError as exc:
        _fail(str(exc))


@lm_app.command("serve")
def lm_serve(
    port: int = typer.Option(8478, help="Port to listen on (8478: where programs optimized on it look for it)."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    threads: int = typer.Option(None, help="CPU threads for generation (default: all cores)."),
    n_ctx: int = typer.Option(4096, help="Context window in tokens."),
) -> None:
    """Serve the bundled model (SmolLM2-135M-Instruct, llama.cpp) as an OpenAI-compatible endpoint until Ctrl-C."""
    from .services.local_lm import LOCAL_MODEL, MODEL_NAME, LocalLMServer, LocalModelError, missing_extra

    if problem := missing_extra():
        _fail(problem)
    server = LocalLMServer(port, host, n_ctx=n_ctx, n_threads=threads, echo=True)
    try:
        server.start()
    except LocalModelError as exc:
        _fail(str(exc))
    typer.echo(
        f"serving {MODEL_NAME} at {server.url} (Ctrl-C to stop)\n"
        f'in a config:  [lm] model = "{LOCAL_MODEL}"  api_base = "{server.url}"  max_concurrency = 2',
        err=True,
    )
    try:
        code = server.wait()
    except KeyboardInterrupt:
        code = 0
    finally:
        server.stop()
    if code:
        _fail(f"the model server exited with code {code}")


@app.command()
def monitor(
    config_path: Path = typer.Argument(..., metavar="CONFIG"),
    set_: list[str] = typer.Option(None, "--set", help=SET_HELP),
) -> None:
    """Run the drift monitor once: judge new production-log records, update the rolling score, maybe re-optimize."""
    config = _load(config_path, set_)
    from .logs import command_log
    from .monitor import monitor_flow
    from .services.prefect_server import ephemeral_api

    with command_log("monitor", debug=_Options.debug) as log_file:
        try:
            with ephemeral_api():  # the flow's Prefect server dies with this process
                report = monitor_flow(config)
        except Exception as exc:  # noqa: BLE001 - one clear line, non-zero exit; the traceback in the log
            _fail_with("monitor", exc, log_file)
    from .display import fields_table, print_table

    print_table(fields_table(((f"{key}:", value) for key, value in report.model_dump().items()), 21))


@runs_app.command("list")
def runs_list(checkpoint_url: str = typer.Argument(..., metavar="CHECKPOINT_URL")) -> None:
    """List the optimization runs under a checkpoint folder or s3:// prefix."""
    from .checkpoint import list_runs
    from .display import print_table, runs_table

    runs = list_runs(checkpoint_url)
    if not runs:
        typer.echo(f"no runs under {checkpoint_url}")
        return
    print_table(runs_table(runs))


@runs_app.command("show")
def runs_show(
    checkpoint_url: str = typer.Argument(..., metavar="CHECKPOINT_URL"),
    name: str = typer.Argument(..., metavar="NAME"),
) -> None:
    """Show one run: status, trials, best score, and the final report once it finished."""
    from .checkpoint import CheckpointError, CheckpointStore, summary

    store = CheckpointStore(checkpoint_url, name)
    try:
        checkpoint = store.read_latest(repair=False)
    except CheckpointError as exc:
        _fail(str(exc))
    if checkpoint is None:
        _fail(f"no run {name!r} under {checkpoint_url}")
    from .display import fields_table, print_candidates, print_table, trials_table
    from .lineage import lineage_rows

    info = summary(checkpoint)
    print_table(
        fields_table(
            [
                ("run:", f"{name}  ({store.url})"),
                ("status:", f"{info['status']}  (step {info['step']}, optimizer {info['optimizer']})"),
                ("best score:", info["best_score"]),
                ("MLflow run:", checkpoint.get("mlflow_run_id")),
                ("trials:", info["trials"]),
            ],
            RUN_KEY_WIDTH,
        )
    )
    if checkpoint.get("trials"):
        print_table(trials_table(checkpoint["trials"]))
    try:
        candidates = lineage_rows(checkpoint.get("state") or {}, checkpoint.get("trials"))
    except ValueError as exc:  # a state this version cannot read: the rest of the run is still worth showing
        candidates = None
        typer.echo(f"candidates: not shown ({type(exc).__name__}: the saved optimizer state does not load)")
    if candidates:
        print_candidates(candidates, RUN_KEY_WIDTH)
    report = info["report"]
    if report:
        result = [
            (
                "result:",
                f"baseline {report['baseline_score']:.2f} -> optimized {report['optimized_score']:.2f} "
                f"on {report['eval_examples']} {report['eval_split']} examples; program {report['program_url']}",
            )
        ]
        if report.get("model_name"):
            result.append(("registered:", f"{report['model_name']} v{report['model_version']}"))
        print_table(fields_table(result, RUN_KEY_WIDTH))


if __name__ == "__main__":
    app()
