"""ColBERTv2 and Retrieve, DSPy's retrieval client and retriever step, against a real ColBERT-like HTTP server on
127.0.0.1 (and against DSPy 3.4.1's own client, run on the same server)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

import dsr_core as dsr
from dsr_core.dsp.colbertv2 import ColBERTv2, ColBERTv2Error, clear_cache
from dsr_core.dsp.utils import dotdict
from dsr_core.errors import DsrError, ProgramStateError
from dsr_core.retrievers import Retrieve
from dsr_core.retrievers.retrieve import RetrieverNotConfiguredError
from tests.test_dspy_compat import dspy_python  # noqa: F401 - the fixture: DSPy 3.4.1's interpreter

CORPUS = [
    "Ada Lovelace wrote the first published algorithm for a machine.",
    "Alan Turing proposed the Turing machine and the imitation game.",
    "Grace Hopper built the first compiler for a programming language.",
    "The Analytical Engine was a machine designed by Charles Babbage.",
    "Marie Curie won the Nobel Prize in physics and in chemistry.",
]


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def ranked(query: str, k: int) -> list[dict]:
    """The corpus ranked by words shared with the query (ties: corpus order), DSPy's JSON shape."""
    scores = [(len(words(query) & words(text)), pid) for pid, text in enumerate(CORPUS)]
    order = sorted(scores, key=lambda s: (-s[0], s[1]))[:k]
    return [{"text": CORPUS[pid], "pid": pid, "score": float(score)} for score, pid in order]


class ColBERTServer:
    """A ColBERTv2 server's API over ``CORPUS``: ``GET /?query=..&k=..`` or ``POST /`` with a JSON body. It
    records each request as (method, query, k); ``reply`` overrides the answer with (status, body bytes); while
    ``hold`` is set, nothing is answered until it is cleared."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, int]] = []
        self.reply: tuple[int, bytes] | None = None
        self.release = threading.Event()
        self.release.set()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._http.daemon_threads = True
        self.port = self._http.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                params = parse_qs(urlsplit(self.path).query)
                self.answer("GET", params["query"][0], int(params["k"][0]))

            def do_POST(self) -> None:  # noqa: N802
                assert self.headers["Content-Type"].startswith("application/json")
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                self.answer("POST", body["query"], body["k"])

            def answer(self, method: str, query: str, k: int) -> None:
                server.requests.append((method, query, k))
                server.release.wait()
                status, body = server.reply or (200, json.dumps({"topk": ranked(query, k)}).encode())
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def __enter__(self) -> ColBERTServer:
        threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._http.shutdown()
        self._http.server_close()


@pytest.fixture
def colbert():
    clear_cache()
    with ColBERTServer() as server:
        yield server
    clear_cache()


QUERY = "who designed the first machine algorithm"


def test_get_returns_dspys_passages(colbert):
    passages = ColBERTv2(url=colbert.url)(QUERY, k=3)
    assert colbert.requests == [("GET", QUERY, 3)]
    assert [p.pid for p in passages] == [0, 3, 1]  # most shared words first
    first = passages[0]
    assert isinstance(first, dotdict) and isinstance(first, dict)
    assert first == {**ranked(QUERY, 1)[0], "long_text": CORPUS[0]}
    assert first.text == first.long_text == first["long_text"] == CORPUS[0] and first.score == 4.0
    with pytest.raises(AttributeError, match="no attribute 'rank'"):
        first.rank  # noqa: B018
    assert len(ColBERTv2(url=colbert.url)(QUERY)) == 5  # DSPy's k=10; the corpus has 5
    assert ColBERTv2("http://127.0.0.1", port=colbert.port).url == colbert.url  # DSPy's url:port


def test_post_sends_the_query_as_json_and_gives_the_same_shape(colbert):
    posted = ColBERTv2(url=colbert.url, post_requests=True)(QUERY, k=2)
    assert colbert.requests == [("POST", QUERY, 2)]
    assert posted == ColBERTv2(url=colbert.url)(QUERY, k=2)  # long_text on POST too (DSPy's POST lacks it)
    assert ColBERTv2(url=colbert.url, post_requests=True)(QUERY, k=2, simplify=True) == [CORPUS[0], CORPUS[3]]


def test_simplify_gives_the_texts(colbert):
    assert ColBERTv2(url=colbert.url)(QUERY, k=2, simplify=True) == [CORPUS[0], CORPUS[3]]
    assert ColBERTv2(url=colbert.url)("Nobel prize", k=1, simplify=True) == [CORPUS[4]]


def test_answers_are_cached_per_method_url_query_and_k(colbert):
    client = ColBERTv2(url=colbert.url)
    first = client(QUERY, k=2)
    first[0]["text"] = "changed by the caller"
    assert client(QUERY, k=2) == ColBERTv2(url=colbert.url)(QUERY, k=2, simplify=False)  # another client too
    assert client(QUERY, k=2)[0].text == CORPUS[0]  # what a caller changes is not what the cache holds
    assert client(QUERY, k=2, simplify=True) == [CORPUS[0], CORPUS[3]]
    assert colbert.requests == [("GET", QUERY, 2)]
    client(QUERY, k=3)
    client("Nobel prize", k=2)
    ColBERTv2(url=colbert.url, post_requests=True)(QUERY, k=2)
    ColBERTv2(url=colbert.url + "/")(QUERY, k=2)  # another URL
    assert colbert.requests[1:] == [("GET", QUERY, 3), ("GET", "Nobel prize", 2), ("POST", QUERY, 2), ("GET", QUERY, 2)]
    clear_cache()
    client(QUERY, k=2)
    assert len(colbert.requests) == 6


async def test_acall_asks_without_blocking_and_shares_the_cache(colbert):
    client = ColBERTv2(url=colbert.url, post_requests=True)
    assert await client.acall(QUERY, k=2) == client(QUERY, k=2)
    assert await client.acall(QUERY, k=2, simplify=True) == [CORPUS[0], CORPUS[3]]
    assert colbert.requests == [("POST", QUERY, 2)]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_no_server_is_an_error_naming_the_url():
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(ColBERTv2Error, match=rf"ColBERTv2 at {re.escape(url)}: cannot connect .*refused") as caught:
        ColBERTv2(url=url)(QUERY)
    assert isinstance(caught.value, DsrError) and isinstance(caught.value, ValueError)
    assert caught.value.url == url and caught.value.status_code is None
    with pytest.raises(ColBERTv2Error, match="not a usable http"):
        ColBERTv2(url="127.0.0.1:8893")(QUERY)  # no scheme


async def test_no_server_is_the_same_error_from_acall():
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(ColBERTv2Error, match=rf"ColBERTv2 at {re.escape(url)}: cannot connect"):
        await ColBERTv2(url=url, post_requests=True).acall(QUERY)


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (500, b"index not loaded", r"answered HTTP 500: 'index not loaded'"),
        (200, b"<html>busy</html>", r"the reply is not JSON: '<html>busy</html>'"),
        (200, b"[1, 2]", r"the reply is a JSON list, not an object"),
        (200, b'{"error": true, "message": "bad query"}', r"the server returned an error: bad query"),
        (200, b'{"passages": []}', r"the reply has no 'topk'; expected \{\"topk\""),
        (200, b'{"topk": "none"}', r"the reply has a 'topk' that is a str"),
        (200, b'{"topk": [{"pid": 1, "score": 2.0}]}', r"passage 0 of 'topk' has no string 'text'"),
        (200, b'{"topk": ["just text"]}', r"passage 0 of 'topk' is a str, not an object"),
    ],
)
@pytest.mark.parametrize("post", [False, True])
def test_an_unusable_answer_is_an_error_saying_what_was_wrong(colbert, status, body, message, post):
    colbert.reply = (status, body)
    client = ColBERTv2(url=colbert.url, post_requests=post)
    with pytest.raises(ColBERTv2Error, match=message) as caught:
        client(QUERY, k=2)
    method = "POST" if post else "GET"
    assert str(caught.value).startswith(f"ColBERTv2 at {colbert.url} ({method}, query {QUERY!r}, k=2): ")
    assert caught.value.status_code == status and caught.value.url == colbert.url
    colbert.reply = None
    assert client(QUERY, k=2, simplify=True) == [CORPUS[0], CORPUS[3]]  # the failure was not cached
    assert len(colbert.requests) == 2


def test_no_answer_in_time_is_an_error(colbert):
    colbert.release.clear()  # the server takes the request and does not answer
    with pytest.raises(ColBERTv2Error, match=r"no answer to GET within 0.2 s"):
        ColBERTv2(url=colbert.url, timeout=0.2)(QUERY)


def test_a_get_asks_for_at_most_100_passages_as_dspy_checks(colbert):
    with pytest.raises(ColBERTv2Error, match=r"k=101, but only k <= 100 is supported for GET"):
        ColBERTv2(url=colbert.url)(QUERY, k=101)
    assert colbert.requests == []
    assert len(ColBERTv2(url=colbert.url, post_requests=True)(QUERY, k=101)) == 5


def test_colbert_local_classes_say_what_to_use():
    import dsr_core.dsp.colbertv2 as module

    for name in ("ColBERTv2RetrieverLocal", "ColBERTv2RerankerLocal"):
        with pytest.raises(AttributeError, match=rf"dsr does not have DSPy's '{name}': .*colbert package"):
            getattr(module, name)


def test_dspys_module_paths():
    import dsr_core.dsp
    import dsr_core.retrievers
    import dsr_core.retrievers.retrieve

    assert dsr_core.dsp.colbertv2.ColBERTv2 is ColBERTv2
    assert dsr_core.dsp.utils.dotdict is dotdict
    assert dsr_core.retrievers.Retrieve is dsr_core.retrievers.retrieve.Retrieve is Retrieve
    assert "Retrieve" in dsr_core.retrievers.__all__


def test_retrieve_asks_the_configured_retriever(colbert):
    dsr.configure(rm=ColBERTv2(url=colbert.url))
    retrieve = Retrieve()
    assert (retrieve.name, retrieve.input_variable, retrieve.k) == ("Search", "query", 3)  # DSPy's
    prediction = retrieve(QUERY)
    assert isinstance(prediction, dsr.Prediction)
    assert prediction.passages == [CORPUS[0], CORPUS[3], CORPUS[1]]
    assert Retrieve(k=1)(QUERY).passages == [CORPUS[0]]
    assert retrieve(QUERY, k=2).passages == [CORPUS[0], CORPUS[3]]  # the call's k wins
    assert retrieve(QUERY, k=2, simplify=True).passages == [CORPUS[0], CORPUS[3]]  # keywords go to the retriever
    assert colbert.requests == [("GET", QUERY, 3), ("GET", QUERY, 1), ("GET", QUERY, 2)]
    with ColBERTServer() as other, dsr.context(rm=ColBERTv2(url=other.url, post_requests=True)):
        assert retrieve("Nobel prize", k=1).passages == [CORPUS[4]]
        assert other.requests == [("POST", "Nobel prize", 1)]
    assert dsr.settings.rm.url == colbert.url  # the context's retriever was the context's only


def test_retrieve_without_a_retriever_says_how_to_set_one():
    with pytest.raises(RetrieverNotConfiguredError, match=r"No RM is loaded.*configure\(rm=") as caught:
        Retrieve()(QUERY)
    assert isinstance(caught.value, AssertionError) and isinstance(caught.value, DsrError)  # DSPy's is an assert


async def test_retrieve_acall_uses_the_retrievers_acall(colbert):
    with dsr.context(rm=ColBERTv2(url=colbert.url)):
        prediction = await Retrieve(k=2).acall(QUERY)
    assert prediction.passages == [CORPUS[0], CORPUS[3]] and colbert.requests == [("GET", QUERY, 2)]


def keyword_search(query: str, k: int) -> list[str]:
    """A retriever that is a plain function returning texts."""
    return [p["text"] for p in ranked(query, k)]


async def test_any_callable_returning_texts_is_a_retriever():
    with dsr.context(rm=keyword_search):
        assert Retrieve(k=1)("Nobel prize").passages == [CORPUS[4]]
        assert (await Retrieve(k=2).acall(QUERY)).passages == [CORPUS[0], CORPUS[3]]  # run in a worker thread
    with dsr.context(rm=lambda query, k: dotdict(long_text="one passage")):
        assert Retrieve()(QUERY).passages == ["one passage"]  # one passage, not a list: a list of one
    with dsr.context(rm=lambda query, k: [object()]), pytest.raises(TypeError, match="without 'long_text'"):
        Retrieve()(QUERY)


def test_callbacks_see_retrieve_calls_as_module_calls(colbert):
    class Recorder(dsr.BaseCallback):
        def __init__(self):
            self.events = []

        def on_module_start(self, call_id, instance, inputs):
            self.events.append(("start", type(instance).__name__, inputs))

        def on_module_end(self, call_id, outputs, exception=None):
            self.events.append(("end", outputs.passages if outputs is not None else exception))

    recorder = Recorder()
    with dsr.context(rm=ColBERTv2(url=colbert.url)):
        Retrieve(k=1, callbacks=[recorder])("Nobel prize")
    assert recorder.events == [
        ("start", "Retrieve", {"args": ("Nobel prize",), "kwargs": {}}),
        ("end", [CORPUS[4]]),
    ]


class RAG(dsr.Module):
    """DSPy's RAG example: retrieve passages, answer from them."""

    def __init__(self, k: int = 2):
        super().__init__()
        self.retrieve = Retrieve(k=k)
        self.generate_answer = dsr.ChainOfThought("context, question -> answer")

    def forward(self, question):
        context = self.retrieve(question).passages
        return self.generate_answer(context=context, question=question)


def answer_from_context(request):
    """The first passage's first two words, as an answer; what the program gave as context is in the prompt."""
    context = request.inputs.get("context", "")
    first = min((p for p in CORPUS if p in context), key=context.index)
    return request.reply(reasoning="from the first passage", answer=" ".join(first.split()[:2]))


async def test_a_rag_program_retrieves_then_answers(colbert, server, lm):
    server.responder = answer_from_context
    dsr.configure(lm=lm, rm=ColBERTv2(url=colbert.url))
    rag = RAG()
    assert rag(question="Who won the Nobel Prize?").answer == "Marie Curie"
    assert (await rag.acall(question="Who built the first compiler?")).answer == "Grace Hopper"
    prompt = server.requests[-1]["messages"][-1]["content"]
    assert CORPUS[2] in prompt and "[[ ## context ## ]]" in prompt
    assert colbert.requests == [("GET", "Who won the Nobel Prize?", 2), ("GET", "Who built the first compiler?", 2)]
    assert [name for name, _ in rag.named_parameters()] == ["retrieve", "generate_answer.predict"]
    assert [name for name, _ in rag.named_predictors()] == ["generate_answer.predict"]


def test_retrieve_state_is_dspys_k():
    retrieve = Retrieve(k=5)
    assert retrieve.dump_state() == {"k": 5} == retrieve.dump_state(json_mode=True)
    assert Retrieve().load_state({"k": 2}).k == 2
    for bad in ({"k": 0}, {"k": "3"}, {"k": True}, ["k"]):
        with pytest.raises(ProgramStateError, match="Retrieve"):
            Retrieve().load_state(bad)
    copy = RAG(k=4).reset_copy()  # what optimizers start from: the Retrieve is kept, with its k
    assert copy.retrieve.k == 4


def test_a_program_holding_a_retrieve_saves_and_loads(tmp_path):
    rag = RAG(k=4)
    rag.generate_answer.predict.signature = rag.generate_answer.predict.signature.with_instructions("Answer briefly.")
    rag.save(tmp_path / "rag.json")
    loaded = RAG(k=4).load(tmp_path / "rag.json")
    assert loaded.generate_answer.predict.signature.instructions == "Answer briefly."
    assert loaded.retrieve.k == 4
    assert dsr.load_program(str(tmp_path / "rag.json"), RAG(k=4)).retrieve.k == 4


def test_a_saved_program_has_dspys_entry_for_its_retrieve(tmp_path):
    rag = RAG(k=4)
    rag.save(tmp_path / "rag.json")
    saved = json.loads((tmp_path / "rag.json").read_text())
    assert saved["retrieve"] == {"k": 4}
    assert list(saved) == ["retrieve", "generate_answer.predict", "metadata"]  # DSPy's order: the program's
    assert RAG(k=1).load(tmp_path / "rag.json").retrieve.k == 4
    saved["retrieve"] = {"k": 0}
    saved["generate_answer.predict"]["signature"]["instructions"] = "Changed."
    (tmp_path / "bad.json").write_text(json.dumps(saved))
    program = RAG(k=2)
    with pytest.raises(dsr.ProgramStateError):
        program.load(tmp_path / "bad.json")
    assert program.retrieve.k == 2  # nothing changed, the predictors neither
    assert program.generate_answer.predict.signature.instructions != "Changed."


DSPY_COLBERT = r"""
import json, sys
import dspy

dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
url, query, saved_by_dsr = sys.argv[1], sys.argv[2], sys.argv[3]


class RAG(dspy.Module):
    def __init__(self):
        super().__init__()
        self.retrieve = dspy.Retrieve(k=1)
        self.generate_answer = dspy.ChainOfThought("context, question -> answer")


rag = RAG()
rag.load(saved_by_dsr)
get, post = dspy.ColBERTv2(url=url), dspy.ColBERTv2(url=url, post_requests=True)
dspy.configure(rm=get)
print(json.dumps({
    "get": [dict(p) for p in get(query, k=3)],
    "get_simplified": get(query, k=2, simplify=True),
    "post": [dict(p) for p in post(query, k=2)],
    "retrieve": dspy.Retrieve(k=3)(query).passages,
    "types": sorted({type(p).__name__ for p in get(query, k=3)}),
    "loaded_k": rag.retrieve.k,
    "loaded_instructions": rag.generate_answer.predict.signature.instructions,
}))
"""


def test_dsr_and_dspy_get_the_same_passages_from_the_same_server(colbert, dspy_python, tmp_path):  # noqa: F811
    """And DSPy loads the file dsr saves for a program holding a Retrieve (its k included)."""
    rag = RAG(k=4)
    rag.generate_answer.predict.signature = rag.generate_answer.predict.signature.with_instructions("Cite.")
    rag.save(tmp_path / "rag.json")
    run = subprocess.run(
        [str(dspy_python), "-c", DSPY_COLBERT, colbert.url, QUERY, str(tmp_path / "rag.json")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    dspy_side = json.loads(run.stdout.splitlines()[-1])
    assert dspy_side["types"] == ["dotdict"]
    assert (dspy_side["loaded_k"], dspy_side["loaded_instructions"]) == (4, "Cite.")
    get, post = ColBERTv2(url=colbert.url), ColBERTv2(url=colbert.url, post_requests=True)
    assert dspy_side["get"] == get(QUERY, k=3)
    assert dspy_side["get_simplified"] == get(QUERY, k=2, simplify=True)
    assert dspy_side["post"] == [{k: v for k, v in p.items() if k != "long_text"} for p in post(QUERY, k=2)]
    with dsr.context(rm=get):
        assert dspy_side["retrieve"] == Retrieve(k=3)(QUERY).passages
    dspy_requests = colbert.requests[:4]  # DSPy's cache was off: each of its calls asked
    assert dspy_requests == [("GET", QUERY, 3), ("GET", QUERY, 2), ("POST", QUERY, 2), ("GET", QUERY, 3)]


def test_an_optimizer_compiles_a_program_holding_a_retrieve(colbert, server, lm):
    server.responder = answer_from_context
    dsr.configure(lm=lm, rm=ColBERTv2(url=colbert.url))
    train = [
        dsr.Example(question="Who won the Nobel Prize?", answer="Marie Curie").with_inputs("question"),
        dsr.Example(question="Who built the first compiler?", answer="Grace Hopper").with_inputs("question"),
    ]
    optimizer = dsr.BootstrapFewShot(metric=lambda example, pred, trace=None: example.answer == pred.answer)
    compiled = optimizer.compile(RAG(k=3), trainset=train)
    assert compiled.retrieve.k == 3 and compiled.retrieve is not None
    assert len(compiled.generate_answer.predict.demos) == 2
    assert compiled.generate_answer.predict.demos[0]["context"] == [CORPUS[4], CORPUS[0], CORPUS[1]]
