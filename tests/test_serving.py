"""``dsr serve``: a program (registered, or saved to a file) over real HTTP (uvicorn on 127.0.0.1), its LM the
test server; the production log on real folders and S3 (moto)."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pydantic
import pytest

import dsr_core as dsr
from flows.config import validate_config
from tests.programs import WordCode, learns_from_demos
from tests.test_flow_optimize import make_config


class Uvicorn:
    """The app on uvicorn with the settings ``dsr serve`` runs it with."""

    def __init__(self, app):
        import uvicorn

        from flows.services.http_limits import server_options
        from tests.conftest import free_port

        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", **server_options())
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started and time.time() < deadline:
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(20)


@pytest.fixture
def registered(prefect_harness, server, workdir, monkeypatch):
    """'wordcode' v1 = champion: a program that scores 0 (one demo is not enough for the server)."""
    from flows.optimize import run_optimization

    server.responder = learns_from_demos
    weak = make_config(
        workdir, server, name="weak", register_as="wordcode", optimizer={"name": "LabeledFewShot", "k": 1}
    )
    config = validate_config(weak)
    assert run_optimization(config).model_version == "1"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", config.mlflow.tracking_uri)
    return config


def test_serve_predicts_validates_logs_and_follows_the_champion(registered, server, workdir, monkeypatch):
    from flows.optimize import run_optimization
    from flows.services.production_log import ProductionLog, read_production_log
    from flows.services.serving import ProgramService, create_app

    monkeypatch.setenv("DSR_SERVE_TOKEN", "s3cret-token")
    log = ProductionLog(str(workdir / "prodlog"), flush_seconds=0.2)
    service = ProgramService("models:/wordcode@champion")
    app = create_app(service, log=log, token_env="DSR_SERVE_TOKEN", refresh_seconds=0.2, max_field_chars=50)
    auth = {"Authorization": "Bearer s3cret-token"}
    with Uvicorn(app) as url, httpx.Client(base_url=url, timeout=10) as http:
        health = http.get("/health").json()
        assert health == {"status": "ok", "source": "models:/wordcode@champion", "version": "1",
                          "program": "WordCode", "inputs": ["word"]}  # fmt: skip
        assert http.post("/predict", json={"word": "abc"}).status_code == 401
        wrong = http.post("/predict", json={"word": "abc"}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "s3cret" not in wrong.text

        answer = http.post("/predict", json={"word": "abc"}, headers=auth)
        assert answer.status_code == 200
        body = answer.json()
        assert body["outputs"] == {"code": "abc"} and body["version"] == "1"  # v1 has one demo: the server echoes
        assert body["usage"]["lm_calls"] == 1

        for payload, status, words in [
            ({}, 422, "missing field(s) ['word']"),
            ({"word": "a", "extra": 1}, 422, "unknown field(s) ['extra']"),
            (["abc"], 422, "must be a JSON object"),
            ({"word": "x" * 51}, 413, "field 'word' has 51 characters; the limit is 50"),
        ]:
            response = http.post("/predict", json=payload, headers=auth)
            assert (response.status_code, words in response.json()["error"]) == (status, True), response.text
        assert http.post("/predict", content=b"{not json", headers=auth).status_code == 400

        server.latency = 0.2  # concurrent requests overlap at the LM
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda i: http.post("/predict", json={"word": f"c{i}"}, headers=auth), range(8)))
        assert all(r.status_code == 200 for r in codes) and server.stats.max_in_flight >= 4
        server.latency = 0.0

        # a better program becomes champion; the server swaps it in without a restart
        strong = make_config(workdir, server, name="strong", register_as="wordcode")
        assert run_optimization(validate_config(strong)).promoted
        deadline = time.time() + 10
        while http.get("/health").json()["version"] != "2" and time.time() < deadline:
            time.sleep(0.1)
        answer = http.post("/predict", json={"word": "hello"}, headers=auth).json()
        assert answer == {**answer, "outputs": {"code": "OLLEH"}, "version": "2"}

    log.close()
    records, watermark = read_production_log(str(workdir / "prodlog"))
    assert len(records) == 10 and watermark > 0  # 1 + 8 + 1 answered requests; rejected ones never ran
    assert {r["version"] for r in records} == {"1", "2"}
    assert records[0]["inputs"] == {"word": "abc"} and records[0]["outputs"] == {"code": "abc"}
    text = "".join(p.read_text() for p in (workdir / "prodlog").rglob("*.jsonl"))
    assert "s3cret" not in text and "Bearer" not in text
    assert read_production_log(str(workdir / "prodlog"), since_ms=watermark) == ([], watermark)


def test_serve_refuses_to_start_without_its_token(registered):
    from dsr_core.errors import DsrError
    from flows.services.serving import ProgramService, create_app

    with pytest.raises(DsrError, match="DSR_NO_SUCH_TOKEN: that environment variable is not set"):
        create_app(ProgramService("models:/wordcode@champion"), token_env="DSR_NO_SUCH_TOKEN")


def test_production_log_on_s3(s3):
    from flows.services.production_log import ProductionLog, read_production_log

    s3.mkdir("prod")
    log = ProductionLog("s3://prod/log", flush_seconds=60)
    for i in range(3):
        log.append({"i": i})
    first = log.flush()
    log.append({"i": 3})
    log.close()
    records, watermark = read_production_log("s3://prod/log")
    assert [r["i"] for r in records] == [0, 1, 2, 3] and first.startswith("s3://prod/log/date=")
    assert json.loads(s3.cat(first.removeprefix("s3://")).splitlines()[0]) == {"i": 0}


# -- programs served from a file (no registry), and helpers ----------------------------------------------------


class Profile(pydantic.BaseModel):
    name: str
    age: int


class TypedProgram(dsr.Module):
    """Typed inputs: the predictor's signature types ``question`` (str) and ``context``; annotations the rest."""

    def __init__(self):
        self.answer = dsr.Predict("question, context: list[str] -> answer")

    async def aforward(self, question, context, count: int, profile: Profile | None = None, note: str = ""):
        prediction = await self.answer.acall(question=question, context=context)
        return prediction.copy(kinds=f"{type(count).__name__},{type(profile).__name__}")


class DeepOutput(dsr.Module):
    """No LM: answers with a list nested ``depth`` levels (a program returns whatever it builds)."""

    async def aforward(self, depth: int):
        tree: list = []
        for _ in range(depth):
            tree = [tree]
        return dsr.Prediction(tree=tree)


def saved(program, server, path):
    """``program`` saved to ``path`` with its LM on the test server; a ProgramService loading it back."""
    from flows.services.serving import ProgramService

    program.set_lm(dsr.LM("test-model", api_base=server.url))
    program.save(path)
    return ProgramService(str(path))


@pytest.fixture
def wordcode(server, tmp_path):
    server.responder = learns_from_demos
    return saved(WordCode(), server, tmp_path / "wordcode.json")


def eventually(check, timeout=30.0):
    """``check()`` once it is truthy, polling (a generous deadline for something to happen, not a timing test)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


def records_at(url):
    from flows.services.production_log import read_production_log

    return read_production_log(url)[0]


def warnings_with(caplog, words):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and words in r.getMessage()]


# -- the production log survives anything ----------------------------------------------------------------------


def test_a_lone_surrogate_is_a_422_and_the_log_keeps_writing(wordcode, tmp_path):
    from flows.services.production_log import ProductionLog
    from flows.services.serving import create_app

    url = str(tmp_path / "prodlog")
    log = ProductionLog(url, flush_seconds=0.1)
    with Uvicorn(create_app(wordcode, log=log)) as base, httpx.Client(base_url=base, timeout=10) as http:
        bad = http.post("/predict", content=b'{"word": "\\ud800abc"}', headers={"content-type": "application/json"})
        assert bad.status_code == 422 and "field 'word'" in bad.json()["error"], bad.text
        assert "lone surrogate" in bad.json()["error"]
        assert http.post("/predict", json={"word": "abc"}).status_code == 200
        assert [r["inputs"] for r in eventually(lambda: records_at(url))] == [{"word": "abc"}]  # no close()
        assert http.post("/predict", json={"word": "later"}).status_code == 200
        assert len(eventually(lambda: len(records_at(url)) == 2 and records_at(url))) == 2
    log.close()
    assert [r["inputs"]["word"] for r in records_at(url)] == ["abc", "later"]


def test_an_answer_holding_a_lone_surrogate_is_returned_and_logged(wordcode, server, tmp_path):
    from flows.services.production_log import ProductionLog
    from flows.services.serving import create_app

    server.responder = lambda request: request.reply(code="odd \ud800 answer")  # the LM's JSON says "\\ud800"
    url = str(tmp_path / "prodlog")
    log = ProductionLog(url, flush_seconds=0.1)
    with Uvicorn(create_app(wordcode, log=log)) as base, httpx.Client(base_url=base, timeout=10) as http:
        answer = http.post("/predict", json={"word": "abc"})
        assert answer.status_code == 200 and b"odd \\ud800 answer" in answer.content
        assert answer.json()["outputs"] == {"code": "odd \ud800 answer"}
        assert [r["outputs"] for r in eventually(lambda: records_at(url))] == [{"code": "odd \ud800 answer"}]
    log.close()


def test_a_record_that_cannot_be_encoded_costs_only_itself(tmp_path, caplog):
    from flows.services.production_log import ProductionLog

    caplog.set_level(logging.WARNING, logger="dsr.serve")
    url = str(tmp_path / "prodlog")
    log = ProductionLog(url, flush_seconds=0.1)
    cycle: list = []
    cycle.append(cycle)
    log.append({"i": 0})
    log.append({"i": 1, "text": "lone \ud800 surrogate"})  # UTF-8 cannot hold it: written as a \\u escape
    log.append({"i": 2, "cycle": cycle})  # JSON cannot hold it at all: dropped
    log.append({"i": 3, "thing": object()})  # no JSON type: written as its str()
    records = eventually(lambda: len(records_at(url)) >= 3 and records_at(url))  # the writer flushed, no close()
    assert [r["i"] for r in records] == [0, 1, 3]
    assert records[1]["text"] == "lone \ud800 surrogate" and records[2]["thing"].startswith("<object object")
    assert log.dropped == 1
    assert eventually(lambda: warnings_with(caplog, "dropped 1 record(s): not serializable as JSON (ValueError"))
    log.append({"i": 4})  # the writer thread is alive
    assert [r["i"] for r in eventually(lambda: len(records_at(url)) == 4 and records_at(url))] == [0, 1, 3, 4]
    log.close()
    text = "".join(p.read_text(encoding="utf-8") for p in (tmp_path / "prodlog").rglob("*.jsonl"))
    assert "\\ud800" in text


def test_a_failed_write_keeps_its_records_for_the_next_flush(tmp_path, caplog):
    from flows.services.production_log import ProductionLog

    caplog.set_level(logging.WARNING, logger="dsr.serve")
    down = tmp_path / "storage"
    down.write_text("a file where the log's folder should be: every write fails")
    url = str(down / "prodlog")
    log = ProductionLog(url, flush_seconds=0.1)
    for i in range(3):
        log.append({"i": i})
    assert eventually(lambda: warnings_with(caplog, "could not write"))
    log.append({"i": 3})
    assert eventually(lambda: warnings_with(caplog, "4 record(s) kept for the next flush"))
    assert eventually(lambda: log.buffered == 4) and log.dropped == 0

    down.unlink()  # the storage is back
    records = eventually(lambda: records_at(url))  # the next scheduled flush writes them; no close()
    assert [r["i"] for r in records] == [0, 1, 2, 3] and log.buffered == 0
    log.close()
    assert [r["i"] for r in records_at(url)] == [0, 1, 2, 3] and log.dropped == 0


def test_the_buffer_is_bounded_while_storage_is_down(tmp_path, caplog):
    from flows.services.production_log import ProductionLog, encode_record

    caplog.set_level(logging.WARNING, logger="dsr.serve")
    down = tmp_path / "storage"
    down.write_text("not a folder")
    url = str(down / "prodlog")
    record_bytes = len(encode_record({"i": 10, "pad": "x" * 80}))
    log = ProductionLog(url, flush_seconds=3600, max_buffer_bytes=10 * record_bytes)
    for i in range(10, 40):
        log.append({"i": i, "pad": "x" * 80})
    with pytest.raises(OSError):
        log.flush()  # the store is down: the records stay
    for i in range(40, 60):
        log.append({"i": i, "pad": "x" * 80})
    assert (log.buffered, log.dropped) == (10, 40)  # the oldest went first
    down.unlink()
    log.close()
    assert [r["i"] for r in records_at(url)] == list(range(50, 60))
    assert warnings_with(caplog, f"dropped 40 record(s): the buffer was over {10 * record_bytes} bytes")


def test_the_writer_flushes_on_schedule_under_load_without_close(tmp_path):
    from flows.services.production_log import ProductionLog

    url = str(tmp_path / "prodlog")
    log = ProductionLog(url, flush_seconds=0.1, flush_records=10**9)  # only the schedule triggers a flush
    stop = threading.Event()
    appended = []

    def load():
        while not stop.is_set():
            appended.append(len(appended))
            log.append({"i": appended[-1]})
            time.sleep(0.001)

    def parts():
        return list((tmp_path / "prodlog").rglob("part-*.jsonl"))

    appender = threading.Thread(target=load)
    appender.start()
    try:
        assert len(eventually(lambda: len(parts()) >= 3 and parts())) >= 3  # written while appends go on
    finally:
        stop.set()
        appender.join()
    written = eventually(lambda: len(records_at(url)) == len(appended) and records_at(url))
    assert [r["i"] for r in written] == appended
    log.close()


# -- hardening -------------------------------------------------------------------------------------------------


def test_deeply_nested_json_is_a_400(wordcode):
    from flows.services.http_limits import MAX_JSON_DEPTH
    from flows.services.serving import create_app

    json_headers = {"content-type": "application/json"}
    with Uvicorn(create_app(wordcode)) as base, httpx.Client(base_url=base, timeout=30) as http:
        for body in [
            b"[" * 100_000 + b"]" * 100_000,
            b'{"word": ' + b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH + b"}",
            b"{" * 100_000,  # and not valid either
        ]:
            response = http.post("/predict", content=body, headers=json_headers)
            assert response.status_code == 400, response.text
            assert f"more than {MAX_JSON_DEPTH} levels" in response.json()["error"]
        # brackets inside strings (escaped quotes too) are text, not nesting
        text = '[[[[ \\" {{{{' * 100
        answer = http.post("/predict", content=json.dumps({"word": text}).encode(), headers=json_headers)
        assert answer.status_code == 200 and answer.json()["outputs"] == {"code": text}
        assert http.get("/health").status_code == 200


def test_an_output_too_deep_to_return_is_a_502(server, tmp_path):
    from flows.services.http_limits import MAX_JSON_DEPTH
    from flows.services.production_log import ProductionLog
    from flows.services.serving import create_app

    url = str(tmp_path / "prodlog")
    log = ProductionLog(url, flush_seconds=60)
    service = saved(DeepOutput(), server, tmp_path / "deep.json")
    with Uvicorn(create_app(service, log=log)) as base, httpx.Client(base_url=base, timeout=30) as http:
        assert http.post("/predict", json={"depth": 2}).json()["outputs"] == {"tree": [[[]]]}
        deep = http.post("/predict", json={"depth": 100_000})
        assert deep.status_code == 502 and f"more than {MAX_JSON_DEPTH} levels" in deep.json()["error"]
        assert http.get("/health").status_code == 200
    log.close()
    records = records_at(url)
    assert "outputs" in records[0] and "nests more than" in records[1]["error"]


def test_docs_are_off_and_openapi_needs_the_token(wordcode, monkeypatch):
    from flows.services.serving import create_app

    monkeypatch.setenv("DSR_SERVE_TOKEN", "s3cret-token")
    auth = {"Authorization": "Bearer s3cret-token"}
    with Uvicorn(create_app(wordcode, token_env="DSR_SERVE_TOKEN")) as base, httpx.Client(base_url=base) as http:
        for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
            assert http.get(path, headers=auth).status_code == 404, path
        assert http.get("/openapi.json").status_code == 401
        assert http.get("/openapi.json", headers={"Authorization": "Bearer nope"}).status_code == 401
        schema = http.get("/openapi.json", headers=auth)
        assert schema.status_code == 200 and "/predict" in schema.json()["paths"]
        assert "/openapi.json" not in schema.json()["paths"] and "s3cret" not in schema.text
    with Uvicorn(create_app(wordcode)) as base, httpx.Client(base_url=base) as http:  # no token: nothing is
        assert http.get("/openapi.json").status_code == 200 and http.get("/docs").status_code == 404


def test_values_are_checked_against_the_declared_types(server, tmp_path):
    from flows.services.serving import create_app

    service = saved(TypedProgram(), server, tmp_path / "typed.json")
    good = {"question": "q", "context": ["c"], "count": 2}
    with Uvicorn(create_app(service)) as base, httpx.Client(base_url=base, timeout=10) as http:
        assert http.get("/health").json()["inputs"] == ["question", "context", "count", "profile", "note"]
        for changes, words in [
            ({"question": None}, "field 'question' must be str, got null"),
            ({"question": 5}, "field 'question' must be str, got number"),
            ({"question": ["q"]}, "field 'question' must be str, got array"),
            ({"question": {"q": 1}}, "field 'question' must be str, got object"),
            ({"context": ["c", 1]}, "field 'context' must be list[str], got array (1: Input should be a valid string)"),
            ({"context": None}, "field 'context' must be list[str], got null"),
            ({"count": "many"}, "field 'count' must be int, got string"),
            ({"profile": {"name": "ann"}}, "field 'profile' must be Union[Profile, NoneType], got object (age: Field"),
            ({"note": None}, "field 'note' must be str, got null"),  # its default is "", not None
        ]:
            response = http.post("/predict", json={**good, **changes})
            assert response.status_code == 422 and words in response.json()["error"], (changes, response.text)
        for changes, kinds in [
            ({}, "int,NoneType"),
            ({"profile": None, "note": "n"}, "int,NoneType"),
            ({"count": "3", "profile": {"name": "ann", "age": 3}}, "int,Profile"),  # the program gets the types
        ]:
            response = http.post("/predict", json={**good, **changes})
            assert response.status_code == 200 and response.json()["outputs"]["kinds"] == kinds, response.text


def test_an_oversized_header_is_a_431(wordcode):
    from flows.services.http_limits import MAX_HEADER_BYTES
    from flows.services.serving import create_app

    with Uvicorn(create_app(wordcode)) as base:
        with httpx.Client(base_url=base, timeout=10) as http:
            assert http.get("/health", headers={"X-Big": "a" * 10_000}).status_code == 200
            big = http.get("/health", headers={"X-Big": "a" * 100_000})
            assert big.status_code == 431 and f"the limit is {MAX_HEADER_BYTES}" in big.json()["error"]
            big = http.post("/predict", json={"word": "abc"}, headers={"X-Big": "a" * 100_000})
            assert big.status_code == 431
        # a head still arriving when it outgrows the protocol's buffer: the protocol answers, not the app
        with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])), timeout=10) as raw:
            raw.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 60_000)
            time.sleep(0.2)  # let the server read the unfinished head
            raw.sendall(b"a" * 40_000 + b"\r\n\r\n")
            answer = b""
            while chunk := raw.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), answer[:200]
        with httpx.Client(base_url=base, timeout=10) as http:
            assert http.get("/health").status_code == 200


def test_a_react_agent_is_served_like_any_program(server, tmp_path):
    """ReAct's two predictors save under DSPy's names, load back into the agent, and answer over HTTP with
    the tools running inside the service."""
    from flows.services.serving import create_app
    from tests.programs import CapitalAgent
    from tests.test_react import agent

    server.responder = agent()
    service = saved(CapitalAgent(), server, tmp_path / "agent.json")
    assert set(json.loads((tmp_path / "agent.json").read_text())) >= {"agent.react", "agent.extract.predict"}
    with Uvicorn(create_app(service)) as base, httpx.Client(base_url=base, timeout=20) as http:
        response = http.post("/predict", json={"question": "How many people live in the capital of Peru?"})
    assert response.status_code == 200, response.text
    assert response.json()["outputs"]["answer"] == "10092000"
    assert server.stats.requests == 4  # three react steps and the extract step


def test_a_structurally_optimized_program_is_registered_and_served_as_its_graph(
    prefect_harness, server, workdir, monkeypatch, capsys
):
    """Structural fuses two of ThreeSteps' calls; the registry holds the graph program and serve answers
    with two LM calls per request."""
    from flows.optimize import run_optimization
    from flows.services.serving import ProgramService, create_app
    from tests.test_structural import TRAIN, VAL, world

    server.responder = world(max_outputs=2)
    config = make_config(workdir, server, name="fused", register_as="threesteps", optimizer={"name": "Structural"})
    for split, rows in (("train", TRAIN), ("dev", VAL)):
        with open(config["data"][split], "w") as handle:
            handle.writelines(json.dumps(e.toDict()) + "\n" for e in rows)
    config["program"] = {"ref": "tests.test_structural:ThreeSteps"}
    config["data"]["input_keys"] = ["question"]
    config["metric"] = {"ref": "tests.test_structural:exact"}
    config["lm"]["cache"] = False
    config["optimizer"].update({"minibatch_size": 4, "propose_splits": False, "add_reasoning": False})
    validated = validate_config(config)
    report = run_optimization(validated)
    assert (report.baseline_score, report.optimized_score) == (100.0, 100.0) and report.model_version == "1"
    chosen = [row for row in report.candidates if row["status"] == "chosen"]
    assert chosen and chosen[-1]["lm_calls"] == 2 and any(row["pareto"] for row in report.candidates)
    assert all(row["latency"] > 0 for row in report.candidates if row["scored_on"] == "val")  # seconds/example

    from flows.display import OptimizationDisplay

    OptimizationDisplay().summary(report)  # the CLI summary ends with the quality-vs-cost table
    printed = capsys.readouterr().out
    assert "candidates:" in printed and "on the Pareto front" in printed and "Fuse(" in printed and "s/ex" in printed

    monkeypatch.setenv("MLFLOW_TRACKING_URI", validated.mlflow.tracking_uri)
    service = ProgramService("models:/threesteps@champion")
    with Uvicorn(create_app(service)) as base, httpx.Client(base_url=base, timeout=20) as http:
        server.reset_stats()
        response = http.post("/predict", json={"question": "what is snow"})
    assert response.status_code == 200, response.text
    assert response.json()["outputs"]["answer"] == "what is snow:WHAT,IS,SNOW"
    assert server.stats.requests == 2  # the fused graph: two LM calls where the Python program makes three
