"""The MLflow sqlite tracking store, created atomically and refused with what to do when damaged.

MLflow creates a new sqlite store in place, by running its ~70 alembic migrations (about 1 s), which sqlite
does not make atomic: a run killed during its first creation of mlflow.db left a file that every later run
failed on ("table _alembic_tmp_latest_metrics already exists", "duplicate column name: step", ...; a kill
loop here hit 9 such states in 20 kills). So dsr migrates a temporary file in the same folder and links it
into place only when complete, and refuses a damaged file with one line naming it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

import dsr_core as dsr


class TrackingStoreError(dsr.DsrError):
    """The MLflow tracking database cannot be used; the message names the file and what to do."""


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
    ready_stores().ensure(uri)


class ReadyStores:
    """The sqlite files this process created or checked (each is made ready once); ``reset()`` forgets them."""

    def __init__(self) -> None:
        self._ready: set[str] = set()
        self._lock = threading.Lock()

    def ensure(self, uri: str) -> None:
        """``ensure_tracking_store``."""
        path = sqlite_path(uri)
        if path is None:
            return
        key = str(path.resolve())
        if key in self._ready:
            return
        with self._lock:
            if key in self._ready:
                return
            _remove_stale_temporaries(path.absolute())
            if not path.exists():
                create_tracking_store(path)
            check_tracking_store(uri)
            self._ready.add(key)

    def reset(self) -> None:
        """Check every file again at its next use (for tests, or after a file was replaced)."""
        with self._lock:
            self._ready.clear()


_stores = ReadyStores()


def ready_stores() -> ReadyStores:
    """The process's record of ready tracking stores."""
    return _stores


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
