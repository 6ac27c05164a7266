"""Audio, File, Document and Citations: DSPy 3.4.1's custom types, their content parts and their parsing.

The cross-checks run DSPy itself (``dspy_python``) on the same signatures, inputs and replies.
"""

from __future__ import annotations

import base64
import http.server
import json
import subprocess
import sys
import threading
import warnings

import pytest

import dsr_core as dsr
from dsr_core.adapters import Audio, Citations, Document, File
from tests.test_dspy_compat import dspy_python  # noqa: F401

WAV = b"RIFF\x24\x00\x00\x00WAVEfmt "  # the start of a WAV file: only its bytes matter here
WAV_B64 = base64.b64encode(WAV).decode()
PDF = b"%PDF-1.4 tiny"
PDF_URI = "data:application/pdf;base64," + base64.b64encode(PDF).decode()
CITED = [
    {"cited_text": "Water boils at 100C.", "document_index": 0, "start_char_index": 0, "end_char_index": 20},
    {
        "cited_text": "Earth",
        "document_index": 1,
        "document_title": "Astro",
        "start_char_index": 0,
        "end_char_index": 5,
        "supported_text": "the planet",
    },
]


def audio_part(data: str = WAV_B64, fmt: str = "wav") -> dict:
    return {"type": "input_audio", "input_audio": {"data": data, "format": fmt}}


# ---------------------------------------------------------------------------------------------------------
# the values


def test_audio_is_built_from_in_memory_values_and_files(tmp_path):
    assert Audio(data=WAV_B64, audio_format="wav").format() == [audio_part()]
    assert Audio(WAV).format() == [audio_part()]  # bytes: wav unless told
    assert Audio(WAV, audio_format="mp3").audio_format == "mp3"
    assert Audio(f"data:audio/x-wav;base64,{WAV_B64}").audio_format == "wav"  # the x- prefix goes
    assert Audio({"data": WAV_B64, "audio_format": "flac"}).audio_format == "flac"
    assert Audio(Audio(WAV)) == Audio(WAV)
    path = tmp_path / "clip.wav"
    path.write_bytes(WAV)
    assert Audio.from_path(str(path)) == Audio(WAV)
    with pytest.warns(DeprecationWarning, match="from_path"):
        assert Audio.from_file(str(path)) == Audio(WAV)
    assert repr(Audio(WAV)) == f"Audio(data=<AUDIO_BASE_64_ENCODED({len(WAV_B64)})>, audio_format='wav')"
    assert str(Audio(WAV)).startswith("<<CUSTOM-TYPE-START-IDENTIFIER>>[{")

    with pytest.raises(ValueError, match="must be data URIs"):
        Audio("clip.wav")  # a path is never read by the constructor
    with pytest.raises(ValueError, match="Malformed audio data URI"):
        Audio("data:audio/wav;base64")
    with pytest.raises(TypeError, match="already carries its format"):
        Audio(f"data:audio/wav;base64,{WAV_B64}", audio_format="mp3")
    with pytest.raises(TypeError, match="only applies to array data"):
        Audio(WAV, sampling_rate=8000)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="Unsupported MIME type"):
        Audio.from_path(str(tmp_path / "notes.txt"))
    with pytest.raises(ValueError):  # frozen, and every field is required
        Audio(data=WAV_B64)


def test_audio_from_array_needs_soundfile_only_when_used():
    assert "soundfile" not in sys.modules
    try:
        import soundfile  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="soundfile is required"):
            Audio.from_array([0.0, 0.1], sampling_rate=16000)
    else:
        numpy = pytest.importorskip("numpy")
        clip = Audio.from_array(numpy.zeros(160, dtype="float32"), sampling_rate=16000)
        assert clip.audio_format == "wav" and base64.b64decode(clip.data).startswith(b"RIFF")


def test_audio_from_url_takes_the_format_from_the_content_type():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            kind = "text/html" if self.path == "/page" else "audio/x-wav"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(WAV)))
            self.end_headers()
            self.wfile.write(WAV)

        def log_message(self, *args):
            pass

    local = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=local.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{local.server_address[1]}"
        assert Audio.from_url(f"{base}/clip.wav") == Audio(WAV)
        with pytest.raises(ValueError, match="Unsupported MIME type for audio: text/html"):
            Audio.from_url(f"{base}/page")
    finally:
        local.shutdown()
        local.server_close()
    with pytest.raises(ValueError, match="requires an HTTP"):
        Audio.from_url("file:///etc/passwd")


def test_file_constructors_and_content_part(tmp_path):
    path = tmp_path / "report.pdf"
    path.write_bytes(PDF)
    from_path = File.from_path(str(path))
    assert from_path.format() == [{"type": "file", "file": {"file_data": PDF_URI, "filename": "report.pdf"}}]
    assert File.from_path(str(path), filename="r.bin", mime_type="application/x-custom").file_data.startswith(
        "data:application/x-custom;base64,"
    )
    assert File.from_bytes(PDF, filename="report.pdf", mime_type="application/pdf") == from_path
    assert File(PDF).file_data.startswith("data:application/octet-stream;base64,")
    assert File(PDF_URI, filename="a.pdf").format() == [
        {"type": "file", "file": {"file_data": PDF_URI, "filename": "a.pdf"}}
    ]
    assert File.from_file_id("file-abc123").format() == [{"type": "file", "file": {"file_id": "file-abc123"}}]
    assert File({"file_id": "file-1", "filename": "x.pdf"}) == File.from_file_id("file-1", filename="x.pdf")
    assert File(from_path) == from_path
    assert (
        repr(from_path)
        == f"File(file_data=<DATA_URI(application/pdf, {len(PDF_URI) - 28} chars)>, filename='report.pdf')"
    )
    with pytest.raises(ValueError, match="must be data URIs"):
        File(str(path))
    with pytest.raises(TypeError, match="file_data from both"):
        File(PDF_URI, file_data=PDF_URI)
    with pytest.raises(ValueError, match="at least one of"):
        File({"name": "x"})
    with pytest.raises(ValueError, match="File not found"):
        File.from_path(str(tmp_path / "missing.pdf"))


def test_document_and_citations_values():
    doc = Document(data="Water boils at 100C.", title="Physics", context="a textbook")
    assert doc.format() == [
        {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": "Water boils at 100C."},
            "citations": {"enabled": True},
            "title": "Physics",
            "context": "a textbook",
        }
    ]
    pdf = Document(data=base64.b64encode(PDF).decode(), media_type="application/pdf")
    assert pdf.format()[0]["source"]["type"] == "base64" and "title" not in pdf.format()[0]
    assert Document.model_validate("plain text") == Document(data="plain text")
    assert str(doc) == "Document('Physics': 20 chars)"
    with pytest.raises(ValueError):
        Document(data="x", media_type="text/html")

    citations = Citations.model_validate(CITED)
    assert len(citations) == 2 and citations[1].document_title == "Astro"
    assert [c.cited_text for c in citations] == ["Water boils at 100C.", "Earth"]
    assert citations.format() == [
        {"type": "char_location", **CITED[0]},
        {
            "type": "char_location",
            "cited_text": "Earth",
            "document_index": 1,
            "start_char_index": 0,
            "end_char_index": 5,
            "document_title": "Astro",
            "supported_text": "the planet",
        },
    ]
    assert Citations.model_validate({"citations": CITED}) == citations == Citations.from_dict_list(CITED)
    assert len(Citations.model_validate(CITED[0])) == 1
    assert Citations.parse_lm_response({"text": "...", "citations": CITED}) == citations
    assert Citations.parse_lm_response("no citation data") is None
    with pytest.raises(ValueError):
        Citations.model_validate("not citations")


# ---------------------------------------------------------------------------------------------------------
# the prompts the server receives


class Listen(dsr.Signature):
    """Answer from the recording, the file and the documents."""

    clip: Audio = dsr.InputField()
    report: File = dsr.InputField()
    docs: list[Document] = dsr.InputField()
    question: str = dsr.InputField()
    answer: str = dsr.OutputField()


DOCS = [Document(data="Water boils at 100C.", title="Physics"), Document(data="Earth", context="c")]


def inputs():
    return {
        "clip": Audio(WAV),
        "report": File.from_bytes(PDF, filename="report.pdf", mime_type="application/pdf"),
        "docs": DOCS,
        "question": "At what temperature?",
    }


def assert_media_parts(content):
    """The user message: text, then each value's content part where the value was, then text again."""
    assert isinstance(content, list)
    assert content[0] == {"type": "text", "text": "[[ ## clip ## ]]\n"}
    assert content[1] == audio_part()
    assert content[2] == {"type": "text", "text": "\n\n[[ ## report ## ]]\n"}
    assert content[3] == {"type": "file", "file": {"file_data": PDF_URI, "filename": "report.pdf"}}
    assert content[4] == {"type": "text", "text": '\n\n[[ ## docs ## ]]\n["'}  # a list's items are cut out too
    assert content[5] == DOCS[0].format()[0]
    assert content[6] == {"type": "text", "text": '", "'}
    assert content[7] == DOCS[1].format()[0]
    assert content[8]["type"] == "text" and content[8]["text"].startswith('"]\n\n[[ ## question ## ]]\nAt what')
    assert len(content) == 9


@pytest.mark.parametrize("adapter", [dsr.ChatAdapter, dsr.JSONAdapter])
async def test_adapters_send_audio_file_and_document_parts(server, lm, adapter):
    server.responder = lambda r: r.reply(answer="100C")
    pred = await dsr.Predict(Listen, lm=lm, adapter=adapter()).acall(**inputs())
    assert pred.answer == "100C"
    messages = server.requests[-1]["messages"]
    assert [m["role"] for m in messages] == ["system", "user"]
    assert isinstance(messages[0]["content"], str)
    assert "Type description of Document: A document containing text content" in messages[0]["content"]
    assert_media_parts(messages[1]["content"])


@pytest.mark.parametrize("adapter", [dsr.ChatAdapter, dsr.JSONAdapter])
async def test_a_citations_output_is_read_from_the_reply(server, lm, adapter):
    class Cite(dsr.Signature):
        documents: list[Document] = dsr.InputField()
        question: str = dsr.InputField()
        answer: str = dsr.OutputField()
        citations: Citations = dsr.OutputField()

    server.responder = lambda r: r.reply(answer="100C", citations=CITED)
    pred = await dsr.Predict(Cite, lm=lm, adapter=adapter()).acall(documents=DOCS, question="q")
    assert isinstance(pred.citations, Citations)
    assert pred.citations == Citations.from_dict_list(CITED)
    system = server.requests[-1]["messages"][0]["content"]
    assert "Type description of Citations: Citations with quoted text and source references." in system


# ---------------------------------------------------------------------------------------------------------
# DSPy itself on the same signatures, inputs and replies

DSPY_SCRIPT = r"""
import base64, json, sys, warnings
warnings.simplefilter("ignore")
import dspy
from dspy.experimental import Citations, Document

job = json.load(sys.stdin)
wav, pdf = base64.b64decode(job["wav"]), base64.b64decode(job["pdf"])


class Listen(dspy.Signature):
    '''Answer from the recording, the file and the documents.'''

    clip: dspy.Audio = dspy.InputField()
    report: dspy.File = dspy.InputField()
    docs: list[Document] = dspy.InputField()
    doc: Document = dspy.InputField()
    question: str = dspy.InputField()
    answer: str = dspy.OutputField()


class Cite(dspy.Signature):
    documents: list[Document] = dspy.InputField()
    answer: str = dspy.OutputField()
    citations: Citations = dspy.OutputField()


def inputs(i):
    return {
        "clip": dspy.Audio(wav) if i == 0 else dspy.Audio(data="QUJD", audio_format="mp3"),
        "report": dspy.File.from_bytes(pdf, filename="report.pdf", mime_type="application/pdf")
        if i == 0 else dspy.File.from_file_id("file-abc", filename="notes.txt"),
        "docs": [Document(**d) for d in job["docs"]],
        "doc": Document(data="Earth orbits the Sun.", title="Astro"),
        "question": f"question {i}",
    }


demo = dspy.Example(**inputs(1), answer="demo answer")
out = {"formats": {}, "parses": {}}
for name, adapter in (("chat", dspy.ChatAdapter()), ("json", dspy.JSONAdapter())):
    out["formats"][name] = adapter.format(Listen, [demo], inputs(0))
    out["parses"][name] = [adapter.parse(Cite, reply)["citations"].format() for reply in job["replies"][name]]
print(json.dumps(out))
"""


def dsr_inputs(i):
    return {
        "clip": Audio(WAV) if i == 0 else Audio(data="QUJD", audio_format="mp3"),
        "report": File.from_bytes(PDF, filename="report.pdf", mime_type="application/pdf")
        if i == 0
        else File.from_file_id("file-abc", filename="notes.txt"),
        "docs": list(DOCS),
        "doc": Document(data="Earth orbits the Sun.", title="Astro"),
        "question": f"question {i}",
    }


class ListenAll(dsr.Signature):
    """Answer from the recording, the file and the documents."""

    clip: Audio = dsr.InputField()
    report: File = dsr.InputField()
    docs: list[Document] = dsr.InputField()
    doc: Document = dsr.InputField()
    question: str = dsr.InputField()
    answer: str = dsr.OutputField()


def replies():
    """Citations replies in each adapter's format, in the three shapes the type reads."""
    shapes = [CITED, {"citations": CITED}, CITED[1]]
    chat = [
        f"[[ ## answer ## ]]\n100C\n\n[[ ## citations ## ]]\n{json.dumps(s)}\n\n[[ ## completed ## ]]" for s in shapes
    ]
    return {"chat": chat, "json": [json.dumps({"answer": "100C", "citations": s}) for s in shapes]}


@pytest.fixture(scope="module")
def dspy_side(dspy_python):  # noqa: F811 - the imported fixture
    job = {
        "wav": base64.b64encode(WAV).decode(),
        "pdf": base64.b64encode(PDF).decode(),
        "docs": [{"data": "Water boils at 100C.", "title": "Physics"}, {"data": "Earth", "context": "c"}],
        "replies": replies(),
    }
    done = subprocess.run(
        [str(dspy_python), "-c", DSPY_SCRIPT], input=json.dumps(job), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", ["chat", "json"])
def test_the_messages_are_dspys(dspy_side, name):
    adapter = dsr.ChatAdapter() if name == "chat" else dsr.JSONAdapter()
    demo = dsr.Example(**dsr_inputs(1), answer="demo answer")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        messages = adapter.format(ListenAll, [demo], dsr_inputs(0))
    expected = dspy_side["formats"][name]
    assert [m["role"] for m in messages] == [m["role"] for m in expected]
    for ours, theirs in zip(messages, expected, strict=True):
        assert ours == theirs
    parts = [p["type"] for m in messages[1:] if isinstance(m["content"], list) for p in m["content"]]
    assert {"input_audio", "file", "document"} <= set(parts)  # the parts really are there


@pytest.mark.parametrize("name", ["chat", "json"])
def test_citations_are_parsed_as_dspy_parses_them(dspy_side, name):
    class Cite(dsr.Signature):
        documents: list[Document] = dsr.InputField()
        answer: str = dsr.OutputField()
        citations: Citations = dsr.OutputField()

    adapter = dsr.ChatAdapter() if name == "chat" else dsr.JSONAdapter()
    ours = [adapter.parse(Cite, reply)["citations"].format() for reply in replies()[name]]
    assert ours == dspy_side["parses"][name]
    assert ours[0] == ours[1] and len(ours[2]) == 1
