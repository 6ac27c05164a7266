"""MLflow records through MlflowClient with explicit run ids.

MLflow's "active run" is thread-local; flows run tasks in threads and two runs may share a process, so
nothing here uses ``mlflow.start_run``.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from .config import RunConfig
from .tracking_store import ensure_tracking_store

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"

_log = logging.getLogger("dsr")


def client_for(config: RunConfig) -> Any:
    """An MlflowClient on the run's tracking store, a sqlite file created atomically on first use."""
    from mlflow.tracking import MlflowClient

    uri = config.mlflow.tracking_uri or DEFAULT_TRACKING_URI
    ensure_tracking_store(uri)
    return MlflowClient(tracking_uri=uri)


def experiment_id(client: Any, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment is not None else client.create_experiment(name)


def log_evaluation(config: RunConfig, run_name: str, summary: dict[str, Any], table_url: str, table: Any) -> str:
    """One MLflow run: config params, the summary metrics, the per-example table as an artifact."""
    import pyarrow.parquet as pq
    from mlflow.entities import Metric, Param

    client = client_for(config)
    run = client.create_run(
        experiment_id(client, config.mlflow.experiment),
        run_name=run_name,
        tags={"dsr.flow": "evaluate", "dsr.table_url": table_url},
    )
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    params = [Param(k, str(v)[:6000]) for k, v in sorted(config.public_params().items())]
    metrics = [Metric(k, float(v), now, 0) for k, v in summary.items() if isinstance(v, (int, float))]
    for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
        client.log_batch(run_id, params=params[i : i + 100])
    client.log_batch(run_id, metrics=metrics)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "evaluation.parquet"
        pq.write_table(table, path)
        client.log_artifact(run_id, str(path))
    client.set_terminated(run_id)
    return run_id


# -- optimization runs: one parent run, one nested run per trial --------------------------------------------------


def _log_params(client: Any, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
    for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
        client.log_batch(run_id, params=items[i : i + 100])


def start_optimization(config: RunConfig, run_name: str, fingerprint: dict[str, str]) -> str:
    """The parent run: the config (no secrets: only env-var names), the optimizer's parameters."""
    client = client_for(config)
    run = client.create_run(
        experiment_id(client, config.mlflow.experiment),
        run_name=run_name,
        tags={"dsr.flow": "optimize", "dsr.optimizer": config.optimizer.name, "dsr.run_name": run_name},
    )
    params = {**config.public_params(), **{f"fingerprint.{k}": v for k, v in fingerprint.items()}}
    _log_params(client, run.info.run_id, params)
    return str(run.info.run_id)


def resume_optimization(config: RunConfig, run_id: str, trials: list[dict[str, Any]]) -> None:
    """Mark the parent running again and log the trials a crash kept from reaching MLflow."""
    client_for(config).update_run(run_id, status="RUNNING")
    log_missing_trials(config, run_id, trials)


def log_missing_trials(config: RunConfig, run_id: str, trials: list[dict[str, Any]]) -> None:
    """Log every trial of ``trials`` that has no nested run under the parent yet."""
    client = client_for(config)
    children = client.search_runs(
        [client.get_run(run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{run_id}'",
        max_results=50000,
    )
    logged = {child.data.tags.get("dsr.trial") for child in children}
    log_trials(config, run_id, [t for t in trials if str(t["trial"]) not in logged])


class TrialLog:
    """Nested trial runs (and each step's candidate lineage) written in order by one background thread, so
    MLflow's round trips (a few sqlite or HTTP calls per trial) stay off the optimization's step loop. A
    failure is logged: missing trials are left to ``log_missing_trials``, which the flow calls at the end (and
    a resumed run calls at its start); the next step's lineage replaces a lineage that was not written."""

    def __init__(self, config: RunConfig, parent_id: str) -> None:
        import queue
        import threading

        self.config, self.parent_id = config, parent_id
        self._queue: queue.Queue[tuple[str, Callable[[], None]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="dsr-mlflow-trials", daemon=True)
        self._thread.start()

    def submit(self, trials: list[dict[str, Any]]) -> None:
        if trials:
            job = partial(log_trials, self.config, self.parent_id, list(trials))
            self._queue.put(("trials; retrying at the end", job))

    def submit_step(self, step: int, state: Any) -> None:
        """The candidate lineage of ``state`` after ``step`` (read now: the state changes with the next step),
        for the optimizers that keep one."""
        from .lineage import lineage_rows, step_metrics

        try:
            rows = lineage_rows(state)
            metrics = step_metrics(rows) if rows is not None else {}
        except Exception:  # noqa: BLE001 - bookkeeping never stops an optimization
            _log.warning("MLflow: could not read the candidate lineage of step %d", step, exc_info=True)
            return
        if rows is not None:
            job = partial(log_lineage, self.config, self.parent_id, step, rows, metrics)
            self._queue.put((f"the lineage of step {step}", job))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            what, job = item
            try:
                job()
            except Exception:  # noqa: BLE001 - an MLflow failure never fails the optimization
                _log.warning("MLflow: could not log %s", what, exc_info=True)

    def close(self) -> None:
        """Wait until every submitted trial is written (or has failed)."""
        self._queue.put(None)
        self._thread.join()


TRIAL_PARAMS = ("candidate", "kind", "split", "examples", "choice", "step")
TRIAL_METRICS = ("score", "errors", "lm_calls", "cached_calls", "prompt_tokens", "completion_tokens", "seconds")


def trial_metrics(trial: dict[str, Any]) -> dict[str, float]:
    """A trial's metrics: TRIAL_METRICS, its cost (``cost_usd``, when known) and its accounts by LM role
    (``lm_calls.task``, ``tokens.task``, ``cost_usd.task``, ...), as the parent run names them."""
    values = {k: float(trial[k]) for k in TRIAL_METRICS}
    values.update(role_metrics(trial.get("cost"), trial.get("by_role") or {}))
    return values


def role_metrics(cost: float | None, by_role: dict[str, dict[str, Any]]) -> dict[str, float]:
    """``cost_usd`` (when known) and per LM role ``tokens.role``, ``lm_calls.role`` and ``cost_usd.role``."""
    values = {} if cost is None else {"cost_usd": float(cost)}
    for role, spent in by_role.items():
        values[f"tokens.{role}"] = float(spent["tokens"])
        values[f"lm_calls.{role}"] = float(spent["lm_calls"])
        if spent.get("cost") is not None:
            values[f"cost_usd.{role}"] = float(spent["cost"])
    return values


def log_trials(config: RunConfig, parent_id: str, trials: list[dict[str, Any]]) -> None:
    """One nested run per trial (explicit ids: safe with several optimizations in one process)."""
    from mlflow.entities import Metric

    if not trials:
        return
    client = client_for(config)
    experiment = client.get_run(parent_id).info.experiment_id
    now = int(time.time() * 1000)
    parent_metrics = []
    for trial in trials:
        child = client.create_run(
            experiment,
            run_name=f"trial-{trial['trial']}",
            tags={"mlflow.parentRunId": parent_id, "dsr.trial": str(trial["trial"])},
        )
        child_id = child.info.run_id
        _log_params(client, child_id, {k: trial[k] for k in TRIAL_PARAMS if trial.get(k) is not None})
        client.log_batch(child_id, metrics=[Metric(k, v, now, 0) for k, v in trial_metrics(trial).items()])
        client.set_terminated(child_id)
        parent_metrics.append(Metric("trial_score", float(trial["score"]), now, trial["trial"]))
        if trial.get("best_so_far") is not None:
            parent_metrics.append(Metric("best_score", float(trial["best_so_far"]), now, trial["trial"]))
    client.log_batch(parent_id, metrics=parent_metrics)


LINEAGE_FILE = "lineage.json"


def log_lineage(
    config: RunConfig, run_id: str, step: int, rows: list[dict[str, Any]], metrics: dict[str, float]
) -> None:
    """The candidate lineage after ``step`` as ``lineage.json`` (each step replaces it) and its metrics
    (``candidates``, ``frontier_size``, ``frontier_best_score``) at that step."""
    from mlflow.entities import Metric

    client = client_for(config)
    client.log_dict(run_id, {"step": step, "candidates": rows}, LINEAGE_FILE)
    if metrics:
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])


def trials_table(trials: list[dict[str, Any]]) -> Any:
    import pyarrow as pa

    return pa.Table.from_pylist(trials) if trials else pa.table({"trial": pa.array([], pa.int64())})


def plot_trials(trials: list[dict[str, Any]], path: Path, title: str) -> None:
    """Score by trial (minibatch and full evaluations apart) with the best-so-far line, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=100)
    kinds = sorted({t["kind"] for t in trials})
    for kind in kinds:
        points = [(t["trial"], t["score"]) for t in trials if t["kind"] == kind]
        axes.scatter([p[0] for p in points], [p[1] for p in points], label=f"{kind} evaluation", s=24)
    best = [(t["trial"], t["best_so_far"]) for t in trials if t.get("best_so_far") is not None]
    if best:
        axes.step([b[0] for b in best], [b[1] for b in best], where="post", label="best so far", color="black")
    axes.set_xlabel("trial")
    axes.set_ylabel("score")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    if trials:
        axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def finish_optimization(
    config: RunConfig,
    run_id: str,
    report: dict[str, Any],
    trials: list[dict[str, Any]],
    program: dict[str, Any],
    *,
    state: Any = None,
    baseline: dict[str, Any] | None = None,
) -> None:
    """Final metrics and artifacts on the parent run: the trials table, the plot, the program JSON; with the
    optimizer's ``state`` and the ``baseline`` program, the pictures of ``write_pictures`` too."""
    import json

    import pyarrow.parquet as pq
    from mlflow.entities import Metric

    client = client_for(config)
    now = int(time.time() * 1000)
    metrics = ("baseline_score", "optimized_score", "champion_score", "lm_calls", "prompt_tokens", "completion_tokens")
    values = {k: float(report[k]) for k in metrics if report.get(k) is not None}
    values.update(role_metrics(report.get("cost"), report.get("by_role") or {}))  # task, prompt, judge
    client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in values.items()])
    title = f"{report['run_name']} ({config.optimizer.name})"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pq.write_table(trials_table(trials), folder / "trials.parquet")
        plot_trials(trials, folder / "trials.png", title)
        (folder / "program.json").write_text(json.dumps(program, indent=2, ensure_ascii=False), encoding="utf-8")
        client.log_artifacts(run_id, str(folder))
    if state is not None or baseline is not None:
        try:
            with tempfile.TemporaryDirectory() as tmp:
                if write_pictures(Path(tmp), title, state, baseline, program, report.get("steps"), trials):
                    client.log_artifacts(run_id, tmp)
        except Exception:  # noqa: BLE001 - an MLflow failure never fails the optimization
            _log.warning("MLflow: could not log the lineage and graph pictures", exc_info=True)
    client.set_terminated(run_id)


def write_pictures(
    folder: Path,
    title: str,
    state: Any,
    baseline: dict[str, Any] | None,
    program: dict[str, Any],
    step: int | None = None,
    trials: list[dict[str, Any]] | None = None,
) -> list[str]:
    """Write what a run's state and programs can show into ``folder``; returns the names written.

    - ``lineage.json`` and ``lineage.png``: the candidate tree of an optimizer that keeps one;
    - ``quality_cost.json`` and ``quality_cost.png``: a structural search's candidates, score against cost,
      with their Pareto front;
    - ``graph_baseline.*`` and ``graph_winner.*`` (``.dot``, ``.txt``, ``.png``): the program graphs, when the
      baseline or the result is a graph program (the PNG from Graphviz when installed, else matplotlib).

    Each picture is drawn on its own: one that fails is logged and the others are still written."""
    import json

    from dsr_core.graph import graph_in_state
    from dsr_core.optimizers.structural import StructuralState, quality_cost_table

    from .lineage import as_state, lineage_rows
    from .pictures import plot_lineage, plot_quality_cost

    def attempt(what: str, draw: Callable[[], Any]) -> Any:
        try:
            return draw()
        except Exception:  # noqa: BLE001 - a picture that cannot be drawn leaves the others
            _log.warning("MLflow: could not draw %s", what, exc_info=True)
            return None

    def write_json(name: str, value: Any) -> None:
        (folder / name).write_text(json.dumps(value, indent=2, ensure_ascii=False, default=str), encoding="utf-8")

    loaded = attempt("the optimizer state", lambda: as_state(state)) if state is not None else None
    rows = attempt("the candidate lineage", lambda: lineage_rows(loaded, trials)) if loaded is not None else None
    if rows is not None:
        attempt(LINEAGE_FILE, lambda: write_json(LINEAGE_FILE, {"step": step, "candidates": rows}))
        attempt("lineage.png", lambda: plot_lineage(rows, folder / "lineage.png", f"{title}: candidate lineage"))
    if isinstance(loaded, StructuralState):
        table = partial(quality_cost_table, loaded)
        attempt("quality_cost.json", lambda: write_json("quality_cost.json", [r.model_dump() for r in table()]))
        if rows is not None:
            attempt(
                "quality_cost.png",
                lambda: plot_quality_cost(rows, folder / "quality_cost.png", f"{title}: quality against cost"),
            )

    def find_graphs() -> dict[str, Any]:
        if isinstance(loaded, StructuralState) and loaded.candidates:
            first = loaded.candidates[0].graph  # the graph traced from the program as configured
        else:
            first = graph_in_state(baseline) if baseline is not None else None
        return {"baseline": first, "winner": graph_in_state(program)}

    for name, graph in (attempt("the program graphs", find_graphs) or {}).items():
        if graph is not None:
            attempt(f"graph_{name}", partial(write_graph, folder, f"graph_{name}", graph, f"{title}: {name}"))
    return sorted(path.name for path in folder.iterdir())


def write_graph(folder: Path, stem: str, graph: Any, title: str) -> None:
    """``stem.dot`` (Graphviz), ``stem.txt`` (the text listing) and ``stem.png``: drawn by Graphviz when its
    ``dot`` is installed, by matplotlib otherwise, so there is always a picture."""
    import subprocess

    from dsr_core.graph import render_dot, render_png, render_text

    from .pictures import plot_graph

    (folder / f"{stem}.dot").write_text(render_dot(graph), encoding="utf-8")
    (folder / f"{stem}.txt").write_text(render_text(graph) + "\n", encoding="utf-8")
    picture = folder / f"{stem}.png"
    try:
        drawn = render_png(graph, picture)
    except (OSError, subprocess.SubprocessError):
        _log.warning("Graphviz could not draw %s; drawing it with matplotlib", stem, exc_info=True)
        drawn = None
    if drawn is None:
        plot_graph(graph, picture, title)
