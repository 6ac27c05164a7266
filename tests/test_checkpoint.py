"""Checkpoint storage: a lost ``latest.json`` is recovered from the objects, and no object is ever overwritten."""

from __future__ import annotations

import json
import uuid

import pytest

from flows.checkpoint import CheckpointError, CheckpointStore


def write_steps(store, steps, name="run-a"):
    for step in range(steps):
        store.write(step, {"run_name": name, "status": "running", "state": {"step": step}})


@pytest.fixture(params=["local", "s3"])
def checkpoint_url(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "checkpoints")
    s3 = request.getfixturevalue("s3")
    bucket = f"ckpt-{uuid.uuid4().hex[:12]}"  # moto keeps buckets in process memory across tests
    s3.mkdir(bucket)
    return f"s3://{bucket}/checkpoints"


def objects(store):
    store.fs.invalidate_cache()
    return sorted(p.rsplit("/", 1)[-1] for p in store.fs.ls(store.url, detail=False))


def test_a_deleted_pointer_is_recovered_from_the_newest_checkpoint(checkpoint_url):
    store = CheckpointStore(checkpoint_url, "run-a")
    write_steps(store, 5)
    store.fs.rm(store._path("latest.json"))

    reopened = CheckpointStore(checkpoint_url, "run-a")
    checkpoint = reopened.read_latest()
    assert checkpoint["step"] == 4 and checkpoint["state"] == {"step": 4}
    assert "latest.json" in objects(reopened)  # the pointer is written again
    reopened.write(5, {"run_name": "run-a", "status": "running", "state": {"step": 5}})
    assert json.loads(reopened._read_bytes(reopened._path("latest.json")))["sequence"] == 6  # nothing reused


def test_recovery_skips_a_damaged_newest_object_and_never_overwrites_it(checkpoint_url):
    store = CheckpointStore(checkpoint_url, "run-a")
    write_steps(store, 4)
    store.fs.rm(store._path("latest.json"))
    with store.fs.open(store._path("checkpoint-000004.json"), "wb") as handle:
        handle.write(b'{"format": "dsr-checkpoint/1", "step": 3, "sta')  # cut off mid-write
    reopened = CheckpointStore(checkpoint_url, "run-a")
    assert reopened.read_latest()["step"] == 2  # the newest readable one
    reopened.write(3, {"run_name": "run-a", "status": "running", "state": {}})
    assert "checkpoint-000005.json" in objects(reopened)  # written after the damaged one, not over it


def test_a_kill_between_object_and_pointer_resumes_from_the_pointer_and_writes_past_the_orphan(checkpoint_url):
    store = CheckpointStore(checkpoint_url, "run-a")
    write_steps(store, 3)
    orphan = store._path("checkpoint-000004.json")  # the killed run wrote its next object, not its pointer
    store._put(orphan, json.dumps({"format": "dsr-checkpoint/1", "step": 3, "run_name": "run-a"}).encode())

    reopened = CheckpointStore(checkpoint_url, "run-a")
    assert reopened.read_latest()["step"] == 2  # the pointer is the commit point
    reopened.write(3, {"run_name": "run-a", "status": "running", "state": {"step": 3}})
    pointer = json.loads(reopened._read_bytes(reopened._path("latest.json")))
    assert pointer["object"] == "checkpoint-000005.json"
    assert json.loads(reopened._read_bytes(orphan))["step"] == 3  # left as it was
    assert reopened.read_latest()["state"] == {"step": 3}


def test_checkpoints_of_another_run_are_not_adopted_and_not_overwritten(checkpoint_url):
    store = CheckpointStore(checkpoint_url, "run-a")
    write_steps(store, 2, name="someone-else")
    store.fs.rm(store._path("latest.json"))
    before = objects(store)
    with pytest.raises(CheckpointError, match="refusing to start over"):
        CheckpointStore(checkpoint_url, "run-a").read_latest()
    assert objects(store) == before


def test_a_store_that_did_not_read_the_folder_cannot_overwrite_a_checkpoint(checkpoint_url):
    write_steps(CheckpointStore(checkpoint_url, "run-a"), 1)
    stranger = CheckpointStore(checkpoint_url, "run-a")  # never read: it would start at sequence 1
    with pytest.raises(CheckpointError, match="refusing to overwrite"):
        stranger.write(0, {"run_name": "run-a", "status": "running", "state": {}})


def test_listing_runs_reads_a_lost_pointer_without_writing(tmp_path):
    from flows.checkpoint import list_runs

    url = str(tmp_path / "checkpoints")
    store = CheckpointStore(url, "run-a")
    write_steps(store, 2)
    store.fs.rm(store._path("latest.json"))
    assert [(r["name"], r["step"]) for r in list_runs(url)] == [("run-a", 1)]
    assert "latest.json" not in objects(store)
