"""MLflow records through MlflowClient with explicit run ids.

MLflow's "active run" is thread-local; flows run tasks in threads and two runs may share a process, so
nothing here uses ``mlflow.start_run``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import sqlite3
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dsr_core as dsr

from .config import RunConfig

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def client_for(config: RunConfig) -> Any:
    """An MlflowClient on the run's tracking store, a sqlite file created atomically on first use."""
    from mlflow.tracking import MlflowClient

    uri = config.mlflow.tracking_uri or DEFAULT_TRACKING_URI
    ensure_tracking_store(uri)
    return MlflowClient(tracking_uri=uri)


# -- the sqlite tracking store: created atomically, a half-created one refused with what to do -----------------
#
# MLflow creates a new sqlite store in place, by running its ~70 alembic migrations (about 1 s), which sqlite
# does not make atomic: a run killed during its first creation of mlflow.db left a file that every later run
# failed on ("table _alembic_tmp_latest_metrics already exists", "duplicate column name: step", ...; a kill
# loop here hit 9 such states in 20 kills). So dsr migrates a temporary file in the same folder and links it
# into place only when complete, and refuses a damaged file with one line naming it.


class TrackingStoreError(dsr.DsrError):
    """The MLflow tracking database cannot be used; the message names the file and what to do."""


_ready: set[str] = set()  # sqlite files this process created or checked
_ready_lock = threading.Lock()


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (relative to the working folder), or None for other
    stores and in-memory databases."""
    if not uri.startswith("sqlite:"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(uri).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def ensure_tracking_store(uri: str) -> None:
    """Make a sqlite tracking store ready for MlflowClient: create it atomically when the file is not there
    yet, else check it (``check_tracking_store``). Once per file and process; other stores pass through."""
    path = sqlite_path(uri)
    if path is None:
        return
    key = str(path.resolve())
    if key in _ready:
        return
    with _ready_lock:
        if key in _ready:
            return
        _remove_stale_temporaries(path.absolute())
        if not path.exists():
            create_tracking_store(path)
        check_tracking_store(uri)
        _ready.add(key)


def create_tracking_store(path: Path) -> None:
    """Create an MLflow sqlite database at ``path`` so that it is either absent or complete, whenever the
    process is killed: the migrations run on a temporary file in the same folder, which is then hard-linked
    into place. Linking fails when the file exists, so when runs create it at the same time the first one
    wins and the others use it (replacing it could drop runs already written to the winner's file)."""
    from mlflow.store.tracking import DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    path = path.absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.creating")
    temporary_uri = f"sqlite:///{temporary}"
    try:
        # the artifact root MlflowClient gives a sqlite store (./mlruns), so the Default experiment's
        # artifact location is what MLflow's own in-place creation would have recorded
        store = SqlAlchemyStore(temporary_uri, DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH)
        del store
        _drop_engine(temporary_uri)
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another run finished first: its database is the one to use
        except OSError:  # a filesystem without hard links (FAT, some network mounts): a small race remains
            if not path.exists():
                os.replace(temporary, path)
    finally:
        for leftover in (temporary, temporary.with_name(temporary.name + "-journal")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def _remove_stale_temporaries(path: Path) -> None:
    """Temporary databases of creations that were killed (their process is gone) are removed."""
    for leftover in path.parent.glob(f".{path.name}.*.creating*"):
        pid = leftover.name[len(path.name) + 2 :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _drop_engine(uri: str) -> None:
    """Close MLflow's cached engine for ``uri``: its pooled connections would keep the file open."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    engine = SqlAlchemyStore._engine_map.pop(uri, None)
    if engine is not None:
        engine.dispose()


@dataclass
class _StoreState:
    tables: set[str]
    revision: str | None
    runs: int
    models: int

    @property
    def leftovers(self) -> list[str]:
        return sorted(t for t in self.tables if t.startswith("_alembic_tmp_"))


def check_tracking_store(uri: str) -> None:
    """Raise TrackingStoreError (one line: the file, what is wrong, what to do) when ``uri`` is a sqlite file
    MLflow cannot use: not a database, unreadable, or left half-created by an interrupted first run (or
    schema upgrade). A file not there yet passes (the run creates it atomically), as do other stores. A
    complete database is only read; one behind MLflow's schema is opened by MLflow, which upgrades an older
    MLflow's database as it would on any open, and fails on a half-migrated one."""
    path = sqlite_path(uri)
    if path is None or not path.exists():
        return
    path = path.absolute()
    state = _read_state(path)
    if state.leftovers:
        raise TrackingStoreError(_damaged(path, uri, state, f"table {state.leftovers[0]} exists"))
    if state.revision is not None and state.revision == _schema_head():
        return
    if not state.tables:
        return  # an empty sqlite file: MLflow creates its tables in it
    try:
        from mlflow.store.tracking import DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        SqlAlchemyStore(uri, DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH)
    except Exception as exc:  # noqa: BLE001 - whatever MLflow or sqlite raised, said in one line
        _drop_engine(uri)
        where = f"schema at revision {state.revision}" if state.revision else "no schema version"
        raise TrackingStoreError(_damaged(path, uri, state, f"{where}; MLflow: {_first_line(exc)}")) from exc


def _read_state(path: Path) -> _StoreState:
    """Tables, schema revision and how many runs and registered models the file holds (leftover copies of
    those tables counted too). Opened read-write, so a journal left by a killed writer is rolled back."""
    try:
        connection = sqlite3.connect(f"{path.absolute().as_uri()}?mode=rw", uri=True, timeout=30)
        try:
            tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            revision = None
            if "alembic_version" in tables:
                row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
                revision = row[0] if row else None

            def count(table: str) -> int:
                names = [t for t in (table, f"_alembic_tmp_{table}") if t in tables]
                return sum(connection.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in names)

            return _StoreState(tables, revision, count("runs"), count("registered_models"))
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:
        raise TrackingStoreError(
            f"{path} is not a usable SQLite database ({exc}), so MLflow cannot record runs in it: move it aside "
            "(or set mlflow.tracking_uri to another file) and run again"
        ) from exc
    except OSError as exc:
        raise TrackingStoreError(f"{path} cannot be read ({exc}): fix its permissions or move it aside") from exc


def _damaged(path: Path, uri: str, state: _StoreState, detail: str) -> str:
    if state.runs == 0 and state.models == 0:
        return f"{path} was left half-created by an interrupted first run ({detail}); it holds no runs: delete it and run again"
    held = _count(state.runs, "run") + (f" and {_count(state.models, 'registered model')}" if state.models else "")
    repair = f"take a copy, then try `mlflow db upgrade {uri}`"
    if any(t.removeprefix("_alembic_tmp_") in state.tables for t in state.leftovers):
        repair += f" after dropping the leftover table {', '.join(state.leftovers)} (its original is still there)"
    return f"{path} has an interrupted schema migration ({detail}) and holds {held}, so keep it: {repair}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _first_line(exc: BaseException) -> str:
    """The first sentence of the first line: MLflow's and SQLAlchemy's messages go on for lines."""
    lines = str(exc).strip().splitlines()
    return (lines[0].split(". ")[0] if lines else type(exc).__name__)[:300]


@functools.lru_cache(maxsize=1)
def _schema_head() -> str:
    """The schema revision this MLflow creates (its newest alembic migration)."""
    from mlflow.store.db.utils import _get_latest_schema_revision

    return str(_get_latest_schema_revision())


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
    client.log_batch(
        run_id, metrics=[Metric(k, float(report[k]), now, 0) for k in metrics if report.get(k) is not None]
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pq.write_table(trials_table(trials), folder / "trials.parquet")
        plot_trials(trials, folder / "trials.png", f"{report['run_name']} ({config.optimizer.name})")
        (folder / "program.json").write_text(json.dumps(program, indent=2, ensure_ascii=False), encoding="utf-8")
        client.log_artifacts(run_id, str(folder))
    client.set_terminated(run_id)
