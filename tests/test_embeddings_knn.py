"""Embedder, KNN, KNNFewShot and retrievers.Embeddings against the real test server (its /embeddings endpoint
answers a normalized bag of words, so texts that share words are near)."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest

import dsr_core as dsr
from dsr_core.runtime import runtime
from dsr_core.testing.server import ChatRequest, LMTestServer, embedding_vector

TRAINSET = [
    dsr.Example(question=q, answer=a).with_inputs("question")
    for q, a in [
        ("What is the capital of France?", "Paris"),
        ("How tall is Mount Everest?", "8849 m"),
        ("What is the capital city of Peru?", "Lima"),
        ("Who wrote the play Hamlet?", "Shakespeare"),
        ("Which river flows through Paris, France?", "Seine"),
    ]
]


@pytest.fixture
def embedder(server):
    return dsr.Embedder("openai/text-embedding-3-small", api_base=server.url)


def cache_files(directory):
    return [path.read_text() for path in directory.glob("*/*.json")]


def test_embedder_sends_batches_concurrently_caches_them_and_never_caches_the_key(server, isolated_cache):
    server.latency = 0.2  # batches that overlap in time are in flight together
    embedder = dsr.Embedder(
        "openai/text-embedding-3-small", batch_size=2, api_base=server.url, api_key="sk-embed-secret"
    )
    texts = ["red apple", "green apple", "blue sky", "grey sky", "apple pie"]
    vectors = embedder(texts)
    assert vectors.shape == (5, 64) and vectors.dtype == np.float32
    assert np.allclose(vectors, np.array([embedding_vector(t) for t in texts], dtype=np.float32))
    assert server.stats.embedding_requests == 3  # 2 + 2 + 1
    assert server.stats.max_in_flight >= 2  # sent concurrently, not one after another
    sent = sorted(tuple(body["input"]) for body in server.stats.embedding_bodies)
    assert sent == sorted([tuple(texts[0:2]), tuple(texts[2:4]), tuple(texts[4:])])
    assert server.stats.embedding_bodies[0]["model"] == "text-embedding-3-small"  # the provider prefix is not sent

    again = embedder(texts)
    assert server.stats.embedding_requests == 3  # every batch from the cache
    assert np.array_equal(again, vectors)
    runtime().default_cache().flush()
    files = cache_files(isolated_cache)
    assert len(files) == 3 and all("embeddings" in json.loads(text) for text in files)
    assert not any("sk-embed-secret" in text or "127.0.0.1" in text for text in files)

    one = embedder("red apple")
    assert one.shape == (64,) and one.dtype == np.float32  # one string: one vector
    assert embedder(texts, caching=False).shape == (5, 64)
    assert server.stats.embedding_requests == 3 + 1 + 3  # "red apple" alone is a new batch; caching=False sends 3


async def test_embedder_acall_and_the_same_cache_entries(server):
    embedder = dsr.Embedder("openai/text-embedding-3-small", batch_size=2, api_base=server.url)
    vectors = await embedder.acall(["a b", "c d", "e f"])
    assert vectors.shape == (3, 64)
    assert server.stats.embedding_requests == 2
    assert np.array_equal(embedder(["a b", "c d", "e f"]), vectors)  # the sync call hits what acall cached
    assert server.stats.embedding_requests == 2
    with pytest.raises(ValueError, match="All inputs must be strings."):
        await embedder.acall(["ok", 3])


def test_embedder_uses_the_providers_key_variable(monkeypatch):
    with LMTestServer(api_key="sk-from-env") as keyed:
        monkeypatch.setenv("MY_EMBED_KEY", "sk-from-env")
        embedder = dsr.Embedder("text-embedding-3-small", api_base=keyed.url, api_key_env="MY_EMBED_KEY")
        assert embedder(["x"]).shape == (1, 64)
        wrong = dsr.Embedder("text-embedding-3-small", api_base=keyed.url, api_key="sk-wrong", caching=False)
        with pytest.raises(dsr.LMAuthenticationError, match="rejected the API key") as failure:
            wrong(["x"])
        assert "sk-wrong" not in str(failure.value)
    assert dsr.Embedder("groq/some-embedder").api_key_env == "GROQ_API_KEY"
    with pytest.raises(dsr.LMAuthenticationError, match="OPENAI_API_KEY"):  # OpenAI's endpoint, no key: no request
        dsr.Embedder("openai/text-embedding-3-small", caching=False)(["x"])
    with pytest.raises(dsr.LMConfigError, match="not a provider dsr knows"):
        dsr.Embedder("nosuch/model")


def test_embedder_with_a_callable_calls_it_per_batch():
    batches = []

    def encode(texts):
        batches.append(list(texts))
        return [[float(len(t)), 1.0] for t in texts]

    embedder = dsr.Embedder(encode, batch_size=2)
    vectors = embedder(["a", "bb", "ccc"])
    assert batches == [["a", "bb"], ["ccc"]]
    assert vectors.dtype == np.float32 and vectors.tolist() == [[1.0, 1.0], [2.0, 1.0], [3.0, 1.0]]
    assert embedder("dddd", batch_size=5).tolist() == [4.0, 1.0]
    assert embedder(["x"]) is not None and len(batches) == 4  # a callable's vectors are never cached
    with pytest.raises(ValueError, match="All inputs must be strings."):
        embedder(["a", None])
    with pytest.raises(ValueError, match="must be a string or a callable"):
        dsr.Embedder(42)


def test_knn_returns_the_neighbours_that_share_words_nearest_first(embedder):
    knn = dsr.KNN(k=2, trainset=TRAINSET, vectorizer=embedder)
    assert knn.trainset_vectors.shape == (5, 64)
    assert [e.answer for e in knn(question="What is the capital of Spain?")] == ["Paris", "Lima"]
    assert [e.answer for e in knn(question="Who wrote Macbeth, the play?")] == ["Shakespeare", "Paris"]
    with pytest.raises(ValueError, match="training example 0 has no input keys"):
        dsr.KNN(k=1, trainset=[dsr.Example(question="q")], vectorizer=embedder)


async def test_knn_acall(embedder):
    knn = dsr.KNN(k=3, trainset=TRAINSET, vectorizer=embedder)
    assert [e.answer for e in await knn.acall(question="What is the capital of Spain?")] == [
        "Paris",
        "Lima",
        "Shakespeare",
    ]


def demo_questions(body):
    return [inputs["question"] for inputs, _ in ChatRequest(body).demos]


def test_knn_fewshot_sends_the_nearest_examples_as_demos(server, lm, embedder):
    student = dsr.Predict("question -> answer", lm=lm)
    compiled = dsr.KNNFewShot(k=2, trainset=TRAINSET, vectorizer=embedder).compile(student)
    assert [name for name, _ in compiled.named_predictors()] == ["self"]
    assert compiled.demos == [] and student.demos == []

    prediction = compiled(question="What is the capital of Spain?")
    assert prediction.answer == "What is the capital of Spain?"  # the echo server's answer
    final = server.requests[-1]
    assert ChatRequest(final).inputs["question"] == "What is the capital of Spain?"
    assert demo_questions(final) == ["What is the capital of France?", "What is the capital city of Peru?"]
    # the bootstrap ran the teacher on each neighbour (with the other as its labeled demo) before the final call
    assert len(server.requests) == 3

    compiled(question="Who wrote Macbeth, the play?")
    assert demo_questions(server.requests[-1]) == ["Who wrote the play Hamlet?", "What is the capital of France?"]


async def test_knn_fewshot_async_with_a_metric(server, lm, embedder):
    seen = []

    def metric(example, prediction, trace=None):
        seen.append(example.question)
        return True

    student = dsr.Predict("question -> answer", lm=lm)
    optimizer = dsr.KNNFewShot(k=3, trainset=TRAINSET, vectorizer=embedder, metric=metric, max_labeled_demos=0)
    compiled = optimizer.compile(student)
    prediction = await compiled.acall(question="Who wrote Macbeth, the play?")
    assert prediction.answer == "Who wrote Macbeth, the play?"
    expected = ["Who wrote the play Hamlet?", "What is the capital of France?", "What is the capital city of Peru?"]
    assert demo_questions(server.requests[-1]) == expected
    assert sorted(seen) == sorted(expected)  # the metric judged the neighbours' traces, no other example
    with pytest.raises(TypeError, match="max_bootstrapped_demo"):
        dsr.KNNFewShot(k=1, trainset=TRAINSET, vectorizer=embedder, max_bootstrapped_demo=2)


def test_knn_fewshot_program_saves_and_loads(server, lm, embedder, tmp_path):
    student = dsr.Predict("question -> answer", lm=lm)
    optimizer = dsr.KNNFewShot(k=2, trainset=TRAINSET, vectorizer=embedder)
    compiled = optimizer.compile(student)
    compiled.signature = compiled.signature.with_instructions("Answer briefly.")
    path = tmp_path / "knn.json"
    compiled.save(path)
    assert json.loads(path.read_text())["demos"] == []  # a bare Predict saves flat, as in DSPy; demos come per call

    plain = dsr.Predict("question -> answer", lm=lm).load(path)  # the student's names: a plain Predict loads it
    assert plain.signature.instructions == "Answer briefly."
    again = optimizer.compile(dsr.Predict("question -> answer", lm=lm))
    again.load(path)
    assert again.signature.instructions == "Answer briefly."
    again(question="What is the capital of Spain?")  # still picks its demos per call after a load
    assert demo_questions(server.requests[-1]) == [
        "What is the capital of France?",
        "What is the capital city of Peru?",
    ]
    assert again.deepcopy()(question="What is the capital of Spain?").answer == "What is the capital of Spain?"


CORPUS = [
    "The Eiffel Tower is in Paris.",
    "Mount Everest is the tallest mountain.",
    "Paris is the capital of France.",
    "Lima is the capital of Peru.",
]


def test_embeddings_retriever_searches_and_round_trips(server, embedder, tmp_path):
    retriever = dsr.retrievers.Embeddings(CORPUS, embedder, k=2)
    result = retriever("What is the capital of France?")
    assert result.indices == [2, 3] and result.passages == [CORPUS[2], CORPUS[3]]
    scored = dsr.EmbeddingsWithScores(CORPUS, embedder, k=3)("What is the capital of France?")
    assert scored.indices == [2, 3, 0] and scored.scores == sorted(scored.scores, reverse=True)

    retriever.save(tmp_path / "index")
    assert sorted(p.name for p in (tmp_path / "index").iterdir()) == ["config.json", "corpus_embeddings.npy"]
    config = json.loads((tmp_path / "index" / "config.json").read_text())
    assert config == {"k": 2, "normalize": True, "corpus": CORPUS, "has_faiss_index": False}

    before = server.stats.embedding_requests
    loaded = dsr.Embeddings.from_saved(tmp_path / "index", embedder)
    assert server.stats.embedding_requests == before  # the corpus is not embedded again
    assert np.array_equal(loaded.corpus_embeddings, retriever.corpus_embeddings)
    assert loaded("Which mountain is the tallest?").indices[0] == 1
    reused = dsr.Embeddings(["x"], embedder).load(tmp_path / "index", embedder)
    assert reused("capital of Peru").passages[0] == CORPUS[3]
    with pytest.raises(FileNotFoundError, match="Save directory not found"):
        dsr.Embeddings.from_saved(tmp_path / "missing", embedder)


async def test_embeddings_retriever_acall_and_its_limits(embedder):
    retriever = dsr.retrievers.Embeddings(CORPUS, embedder, k=1)
    assert (await retriever.acall("Everest mountain")).passages == [CORPUS[1]]
    with pytest.raises(ValueError, match="Caching is not supported|caching is not supported"):
        dsr.Embeddings(CORPUS, embedder, cache=True)
    try:
        import faiss  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install faiss-cpu"):
            dsr.Embeddings(CORPUS, embedder, brute_force_threshold=2)


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("dsr_core.clients", "Embedder"),
        ("dsr_core.clients.embedding", "Embedder"),
        ("dsr_core.predict", "KNN"),
        ("dsr_core.predict.knn", "KNN"),
        ("dsr_core.teleprompt", "KNNFewShot"),
        ("dsr_core.teleprompt.knn_fewshot", "KNNFewShot"),
        ("dsr_core.optimizers", "KNNFewShot"),
        ("dsr_core.retrievers", "Embeddings"),
        ("dsr_core.retrievers", "EmbeddingsWithScores"),
        ("dsr_core.retrievers", "Retrieve"),
        ("dsr_core.retrievers.retrieve", "Retrieve"),
        ("dsr_core.dsp.colbertv2", "ColBERTv2"),
    ],
)
def test_dspy_paths_give_the_top_level_objects(path, name):
    assert getattr(importlib.import_module(path), name) is getattr(dsr, name)
    assert name in dsr.__all__


def test_dspys_legacy_dsp_package_is_an_attribute():
    assert dsr.dsp.colbertv2.ColBERTv2 is dsr.ColBERTv2
