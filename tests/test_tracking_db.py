"""The sqlite MLflow store under kill -9: real MLflow migrations in real subprocesses, killed with SIGKILL."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.config import validate_config
from flows.tracking import client_for
from flows.tracking_store import TrackingStoreError, check_tracking_store, ensure_tracking_store

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

# MLflow's own in-place creation (what MlflowClient does with a new sqlite file), paused right after the
# statement that starts with argv[2]: the test SIGKILLs it there, which is where a kill -9 of a first run left
# the files every later run failed on. The pause only holds the moment still; the migrations are MLflow's.
PAUSED_MLFLOW_CREATION = """
import sys, time
import sqlalchemy
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

@sqlalchemy.event.listens_for(sqlalchemy.engine.Engine, "after_cursor_execute")
def pause(conn, cursor, statement, *args):
    if " ".join(statement.split()).startswith(sys.argv[2]):
        print("paused", flush=True)
        time.sleep(600)

SqlAlchemyStore("sqlite:///" + sys.argv[1], "./mlruns")
"""

# dsr's creation, then one run recorded in the store it made (prints the run id)
DSR_CREATION = """
import sys
from mlflow.tracking import MlflowClient
from flows.tracking_store import ensure_tracking_store

ensure_tracking_store(sys.argv[1])
client = MlflowClient(tracking_uri=sys.argv[1])
print(client.create_run("0").info.run_id, flush=True)
"""


def uri(path: Path) -> str:
    return f"sqlite:///{path}"


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as connection:
        return {r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def schema_head() -> str:
    from mlflow.store.db.utils import _get_latest_schema_revision

    return _get_latest_schema_revision()


def revision(path: Path) -> str | None:
    with sqlite3.connect(path) as connection:
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    return row[0] if row else None


def kill_mlflow_creation_after(db: Path, statement: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", PAUSED_MLFLOW_CREATION, str(db), statement],
        cwd=db.parent,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "paused"
    finally:
        child.kill()
        child.wait()


def test_a_first_run_killed_mid_migration_is_refused_with_what_to_do(tmp_path):
    """The reported state, made for real: MLflow's in-place first creation SIGKILLed with _alembic_tmp_params
    in the file. MLflow then fails on it with the bare sqlite error; dsr names the file and what to do."""
    db = tmp_path / "mlflow.db"
    kill_mlflow_creation_after(db, "CREATE TABLE _alembic_tmp_params")
    assert "_alembic_tmp_params" in tables(db)

    copy = tmp_path / "copy.db"
    shutil.copy(db, copy)
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    with pytest.raises(Exception, match="table _alembic_tmp_params already exists"):  # the symptom
        SqlAlchemyStore(uri(copy), str(tmp_path / "mlruns"))

    with pytest.raises(TrackingStoreError) as info:
        check_tracking_store(uri(db))
    message = str(info.value)
    assert str(db) in message and "\n" not in message
    assert "interrupted first run" in message and "_alembic_tmp_params" in message
    assert "it holds no runs: delete it and run again" in message

    config = validate_config(
        {
            "program": {"ref": "tests.programs:QA"},
            "data": {"dev": "dev.jsonl", "input_keys": ["question"]},
            "lm": {"model": "m"},
            "mlflow": {"tracking_uri": uri(db)},
        }
    )
    with pytest.raises(TrackingStoreError, match="delete it and run again"):
        client_for(config)  # every MLflow call of a run goes through here

    db.unlink()  # what the message says to do
    client_for(config).create_run("0")
    assert revision(db) == schema_head()


def test_a_kill_inside_a_migration_without_leftover_tables_is_refused_too(tmp_path):
    """Killed after the migration that adds metrics.step ran its ALTER TABLE but before alembic recorded it:
    no _alembic_tmp_ table, yet MLflow fails on every later open ("duplicate column name: step"). MLflow's
    error becomes the same one line."""
    db = tmp_path / "mlflow.db"
    kill_mlflow_creation_after(db, "ALTER TABLE metrics ADD COLUMN step")
    assert not any(t.startswith("_alembic_tmp_") for t in tables(db))
    with pytest.raises(TrackingStoreError) as info:
        check_tracking_store(uri(db))
    message = str(info.value)
    assert "interrupted first run" in message and "duplicate column name: step" in message
    assert "it holds no runs: delete it and run again" in message and "\n" not in message


def test_a_store_holding_runs_is_never_called_empty(tmp_path):
    """A leftover _alembic_tmp_ table in a store that holds runs (an upgrade killed half-way; made here by
    copying a table, as alembic's batch step does, since no older-schema store is at hand): keep it."""
    db = tmp_path / "mlflow.db"
    ensure_tracking_store(uri(db))
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri(db))
    for _ in range(2):
        client.create_run("0")
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE _alembic_tmp_params AS SELECT * FROM params")
    with pytest.raises(TrackingStoreError) as info:
        check_tracking_store(uri(db))
    message = str(info.value)
    assert "holds 2 runs, so keep it" in message and "delete" not in message
    assert "mlflow db upgrade" in message and "_alembic_tmp_params" in message


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"not a database at all " * 200)
    with pytest.raises(TrackingStoreError) as info:
        check_tracking_store(uri(db))
    assert str(db) in str(info.value) and "not a usable SQLite database" in str(info.value)
    with pytest.raises(TrackingStoreError):
        ensure_tracking_store(uri(db))


def test_other_stores_and_missing_files_pass(tmp_path):
    check_tracking_store("http://127.0.0.1:5000")
    check_tracking_store("sqlite:///:memory:")
    check_tracking_store(uri(tmp_path / "not-there-yet.db"))
    assert not (tmp_path / "not-there-yet.db").exists()  # the check never creates


def test_first_creation_killed_at_any_moment_leaves_no_file_or_a_complete_one(tmp_path):
    """dsr's creation SIGKILLed at several moments after its temporary database appears (the migration takes
    about a second): the store is either absent or complete, and the next run creates or uses it."""
    head = schema_head()
    outcomes = []
    for i, delay in enumerate((0.0, 0.05, 0.15, 0.3, 0.5, 0.8, 1.2, 2.0)):
        folder = tmp_path / f"kill-{i}"
        folder.mkdir()
        db = folder / "mlflow.db"
        child = subprocess.Popen(
            [sys.executable, "-c", DSR_CREATION, uri(db)],
            cwd=folder,
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while not list(folder.glob(".mlflow.db.*.creating")) and child.poll() is None:
            assert time.monotonic() < deadline, "the creation never started"
            time.sleep(0.01)
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        if db.exists():
            check_tracking_store(uri(db))
            assert revision(db) == head and not any(t.startswith("_alembic_tmp_") for t in tables(db))
            outcomes.append("complete")
        else:
            outcomes.append("absent")
        ensure_tracking_store(uri(db))  # the next run: creates it, or uses the complete one
        assert revision(db) == head
        assert not list(folder.glob(".mlflow.db.*")), "a killed creation's temporary file was left behind"
    assert set(outcomes) <= {"absent", "complete"}, outcomes


def test_concurrent_first_runs_share_one_database(tmp_path):
    """Three runs creating the same store at once: one database wins, every run's record is in it."""
    db = tmp_path / "mlflow.db"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", DSR_CREATION, uri(db)], cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    run_ids = set()
    for child in children:
        out, _ = child.communicate(timeout=300)
        assert child.returncode == 0
        run_ids.add(out.strip())
    from mlflow.tracking import MlflowClient

    found = {r.info.run_id for r in MlflowClient(tracking_uri=uri(db)).search_runs(["0"])}
    assert len(run_ids) == 3 and run_ids <= found
    assert not list(tmp_path.glob(".mlflow.db.*"))
