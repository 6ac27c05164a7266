"""MLflow records through MlflowClient with explicit run ids.

MLflow's "active run" is thread-local; flows run tasks in threads and two runs may share a process, so
nothing here uses ``mlflow.start_run``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from .config import RunConfig
from .tracking_store import ensure_tracking_store

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


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
    """Nested trial runs written in order by one background thread, so MLflow's round trips (a few sqlite or
    HTTP calls per trial) stay off the optimization's step loop. A failure is logged and left to
    ``log_missing_trials``, which the flow calls at the end (and a resumed run calls at its start)."""

    def __init__(self, config: RunConfig, parent_id: str) -> None:
        import queue
        import threading

        self.config, self.parent_id = config, parent_id
        self._queue: queue.Queue[list[dict[str, Any]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="dsr-mlflow-trials", daemon=True)
        self._thread.start()

    def submit(self, trials: list[dict[str, Any]]) -> None:
        if trials:
            self._queue.put(list(trials))

    def _run(self) -> None:
        import logging

        while (trials := self._queue.get()) is not None:
            try:
                log_trials(self.config, self.parent_id, trials)
            except Exception:  # noqa: BLE001 - reconciled at the end of the run
                logging.getLogger("dsr").warning("MLflow: could not log trials; retrying at the end", exc_info=True)

    def close(self) -> None:
        """Wait until every submitted trial is written (or has failed)."""
        self._queue.put(None)
        self._thread.join()


TRIAL_PARAMS = ("candidate", "kind", "split", "examples", "choice", "step")
TRIAL_METRICS = ("score", "errors", "lm_calls", "cached_calls", "prompt_tokens", "completion_tokens", "seconds")


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
        client.log_batch(child_id, metrics=[Metric(k, float(trial[k]), now, 0) for k in TRIAL_METRICS])
        client.set_terminated(child_id)
        parent_metrics.append(Metric("trial_score", float(trial["score"]), now, trial["trial"]))
        if trial.get("best_so_far") is not None:
            parent_metrics.append(Metric("best_score", float(trial["best_so_far"]), now, trial["trial"]))
    client.log_batch(parent_id, metrics=parent_metrics)


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
    config: RunConfig, run_id: str, report: dict[str, Any], trials: list[dict[str, Any]], program: dict[str, Any]
) -> None:
    """Final metrics and artifacts on the parent run: the trials table, the plot, the program JSON."""
    import json

    import pyarrow.parquet as pq
    from mlflow.entities import Metric

    client = client_for(config)
    now = int(time.time() * 1000)
    metrics = ("baseline_score", "optimized_score", "champion_score", "lm_calls", "prompt_tokens", "completion_tokens")
    values = {k: float(report[k]) for k in metrics if report.get(k) is not None}
    if report.get("cost") is not None:
        values["cost_usd"] = float(report["cost"])
    for role, spent in (report.get("by_role") or {}).items():  # split by LM role: task, prompt, judge
        values[f"tokens.{role}"] = float(spent["tokens"])
        values[f"lm_calls.{role}"] = float(spent["lm_calls"])
        if spent.get("cost") is not None:
            values[f"cost_usd.{role}"] = float(spent["cost"])
    client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in values.items()])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pq.write_table(trials_table(trials), folder / "trials.parquet")
        plot_trials(trials, folder / "trials.png", f"{report['run_name']} ({config.optimizer.name})")
        (folder / "program.json").write_text(json.dumps(program, indent=2, ensure_ascii=False), encoding="utf-8")
        client.log_artifacts(run_id, str(folder))
    client.set_terminated(run_id)
