"""``dsr serve``: a registered program over real HTTP (uvicorn on 127.0.0.1), its LM the test server."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from flows.config import validate_config
from tests.programs import learns_from_demos
from tests.test_flow_optimize import make_config


class Uvicorn:
    def __init__(self, app):
        import uvicorn

        from tests.conftest import free_port

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
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
    from flows.serving import ProductionLog, ProgramService, create_app, read_production_log

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
    from flows.serving import ProgramService, create_app

    with pytest.raises(DsrError, match="DSR_NO_SUCH_TOKEN: that environment variable is not set"):
        create_app(ProgramService("models:/wordcode@champion"), token_env="DSR_NO_SUCH_TOKEN")


def test_production_log_on_s3(s3):
    from flows.serving import ProductionLog, read_production_log

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
