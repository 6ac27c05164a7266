"""The example projects: their configs, their data, and their programs run through the real flows."""

from __future__ import annotations

import filecmp
import importlib.util
from pathlib import Path

import pytest

from flows.config import load_config, validate_config

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
CONFIGS = sorted(EXAMPLES.glob("*/*.toml"))


@pytest.fixture
def hf_offline(monkeypatch, tmp_path):
    """The datasets library offline, with its cache inside tmp_path."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    datasets.disable_progress_bars()


def mlflow_and_artifacts(workdir: Path) -> list[str]:
    return [
        f'run.artifacts_url="{workdir / "artifacts"}"',
        f'run.checkpoint_url="{workdir / "checkpoints"}"',
        f'mlflow.tracking_uri="sqlite:///{workdir / "mlflow.db"}"',
    ]


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(EXAMPLES)) for p in CONFIGS])
def test_every_example_config_is_valid_and_its_local_data_exists(path, monkeypatch):
    monkeypatch.chdir(REPO)  # example configs name their data relative to the repository root
    config = load_config(path)  # keys, types, program and metric imports, optimizer parameters
    for source in (config.data.train, config.data.dev):
        if source and not source.startswith("hf:"):
            assert (REPO / source).is_file(), source


def test_there_are_two_local_projects_and_the_hotpotqa_recipe():
    assert {p.parent.name for p in CONFIGS} == {"travel_destination", "context_qa", "hotpotqa"}
    for name in ("travel_destination", "context_qa"):
        sizes = {f.stem: sum(1 for _ in f.open()) for f in (EXAMPLES / name / "data").glob("*.jsonl")}
        assert set(sizes) == {"train", "dev", "test"} and sum(sizes.values()) >= 300, sizes


@pytest.mark.parametrize("name", ["travel_destination", "context_qa"])
def test_example_data_is_what_its_script_writes(name, tmp_path):
    spec = importlib.util.spec_from_file_location(f"make_{name}", EXAMPLES / name / "make_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path)
    for split in ("train", "dev", "test"):
        assert filecmp.cmp(tmp_path / f"{split}.jsonl", EXAMPLES / name / "data" / f"{split}.jsonl", shallow=False)


def test_context_qa_retrieves_from_both_context_shapes():
    from examples.context_qa.program import passages, top_passages

    hotpot = {"title": ["Danube", "Rhine"], "sentences": [["The Danube is long.", " It is 2,850 km."], ["The Rhine."]]}
    assert passages(hotpot) == ["Danube | The Danube is long. It is 2,850 km.", "Rhine | The Rhine."]
    found = top_passages("rhine length", ["a danube text", "the rhine text", "other"], k=1)
    assert found == ["the rhine text"]


def answer_key(rows: list[dict]) -> dict[str, str]:
    return {row["question"]: row["answer"] for row in rows}


def test_context_qa_optimizes_both_predictors_through_the_flow(prefect_harness, server, workdir):
    """On the test server, which answers right only when shown demos: bootstrapping gives both predictors
    demos, and every answer step saw the two passages that retrieval kept, the answering one among them."""
    import json

    from flows.checkpoint import CheckpointStore
    from flows.optimize import run_optimization

    rows = [
        json.loads(line)
        for part in ("train", "dev")
        for line in (EXAMPLES / "context_qa/data" / f"{part}.jsonl").open()
    ]
    answers = answer_key(rows)
    answer_contexts: list[tuple[str, str]] = []

    def responder(request):
        question = request.inputs["question"]
        if "query" in request.output_fields:
            return request.reply(query=question)
        answer_contexts.append((question, request.inputs["context"]))
        return request.reply(answer=answers[question] if request.demos else "I do not know")

    server.responder = responder
    data = load_config(EXAMPLES / "context_qa/optimize.toml").model_dump()
    data["data"].update(
        train=str(EXAMPLES / "context_qa/data/train.jsonl"), dev=str(EXAMPLES / "context_qa/data/dev.jsonl"), limit=12
    )
    data["lm"] = {"model": "test-model", "api_base": server.url, "max_concurrency": 8, "num_retries": 1}
    data["run"].update(name="cqa", artifacts_url=str(workdir / "artifacts"), checkpoint_url=str(workdir / "ckpt"))
    data["mlflow"].update(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}", register_as=None)
    report = run_optimization(validate_config(data))

    assert (report.baseline_score, report.optimized_score) == (0.0, 100.0)
    program = CheckpointStore(str(workdir / "ckpt"), "cqa").read_latest()["report"]["program_url"]
    state = json.loads(Path(program).read_text())
    assert len(state["rewrite"]["demos"]) >= 1 and len(state["answer"]["demos"]) >= 1
    for question, context in answer_contexts:
        kept = json.loads(context)
        assert len(kept) == 2  # k = 2 of the 4 passages
        assert any(answers[question].lower() in p.lower() for p in kept)  # the one that answers it among them


def test_hotpotqa_recipe_loads_the_fixture_through_the_hf_path_and_evaluates(
    prefect_harness, server, workdir, hf_offline
):
    """The recipe's own config, pointed at the local fixture (the hub dataset's layout): train and validation
    come from their splits of the fullwiki config, and the program answers from title/sentences contexts."""
    import json

    from flows.evaluate import run_evaluation
    from flows.shards import load_split

    fixture = f"hf:{EXAMPLES / 'hotpotqa/fixture'}"
    overrides = [f"data.train={fixture}", f"data.dev={fixture}", "data.limit=10", *mlflow_and_artifacts(workdir)]
    overrides += ['lm.model="test-model"', f'lm.api_base="{server.url}"', "lm.num_retries=1"]
    config = load_config(EXAMPLES / "hotpotqa/optimize.toml", overrides)
    assert (config.data.config, config.data.train_split, config.data.dev_split) == ("fullwiki", "train", "validation")
    train, dev = load_split(config, "train"), load_split(config, "dev")
    assert [e.id for e in train] == ["fx-train-1", "fx-train-2", "fx-train-3"]
    assert [e.id for e in dev] == ["fx-validation-1", "fx-validation-2"]
    assert set(dev[0].inputs().keys()) == {"question", "context"} and set(dev[0].context) == {"title", "sentences"}
    assert dev[0].supporting_facts == {"title": ["Blade Runner", "Philip K. Dick"], "sent_id": [1, 0]}

    rows = [json.loads(line) for line in (EXAMPLES / "hotpotqa/fixture/fullwiki/validation.jsonl").open()]
    answers = answer_key(rows)
    contexts = []

    def responder(request):
        if "query" in request.output_fields:
            return request.reply(query=request.inputs["question"])
        contexts.append(request.inputs["context"])
        return request.reply(answer=answers[request.inputs["question"]])

    server.responder = responder
    report = run_evaluation(config)
    assert (report.n, report.score, report.errors) == (2, 100.0, 0)
    assert any(
        "Blade Runner | Blade Runner is a 1982 science fiction film" in p for c in contexts for p in json.loads(c)
    )
