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


LOCAL_PROJECTS = ["travel_destination", "context_qa", "react_agent", "refine_answers"]


def test_there_are_four_local_projects_and_the_hotpotqa_recipe():
    assert {p.parent.name for p in CONFIGS} == {*LOCAL_PROJECTS, "hotpotqa"}
    for name in LOCAL_PROJECTS:
        sizes = {f.stem: sum(1 for _ in f.open()) for f in (EXAMPLES / name / "data").glob("*.jsonl")}
        assert set(sizes) == {"train", "dev", "test"} and sum(sizes.values()) >= 300, sizes


@pytest.mark.parametrize("name", LOCAL_PROJECTS)
def test_example_data_is_what_its_script_writes(name, tmp_path):
    spec = importlib.util.spec_from_file_location(f"make_{name}", EXAMPLES / name / "make_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(p.name for p in (EXAMPLES / name / "data").iterdir())  # cities.json for react_agent
    for file in written:
        assert filecmp.cmp(tmp_path / file, EXAMPLES / name / "data" / file, shallow=False), file


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


def flow_config(name: str, server, workdir: Path, limit: int) -> dict:
    """The example's optimize.toml, pointed at the test server, a temporary workdir and the first rows."""
    data = load_config(EXAMPLES / name / "optimize.toml").model_dump()
    data["data"].update(
        train=str(EXAMPLES / name / "data/train.jsonl"), dev=str(EXAMPLES / name / "data/dev.jsonl"), limit=limit
    )
    data["lm"] = {"model": "test-model", "api_base": server.url, "max_concurrency": 8, "num_retries": 1}
    data["run"].update(name="flow", artifacts_url=str(workdir / "artifacts"), checkpoint_url=str(workdir / "ckpt"))
    data["mlflow"].update(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}", register_as=None)
    return data


def saved_program(workdir: Path) -> dict:
    import json

    from flows.checkpoint import CheckpointStore

    program = CheckpointStore(str(workdir / "ckpt"), "flow").read_latest()["report"]["program_url"]
    return json.loads(Path(program).read_text())


def test_react_agent_tools_read_the_city_table():
    from examples.react_agent.program import CityAgent, answer_match, country_of, population_of

    assert (country_of("Amberbridge"), population_of(" amberbridge. ")) == ("Bresnia", 363330)
    with pytest.raises(KeyError, match="no city named 'Atlantis'"):
        country_of("Atlantis")
    agent = CityAgent()
    assert [name for name, _ in agent.named_predictors()] == ["react", "extract.predict"]
    assert list(agent.tools) == ["country_of", "population_of", "finish"]
    assert agent.tools["finish"](city="Amberbridge") == "Completed."
    import dsr_core as dsr

    assert answer_match(dsr.Example(answer="363330"), dsr.Prediction(answer="363,330"))
    assert not answer_match(dsr.Example(answer="Bresnia"), dsr.Prediction(answer="Marisca"))


def test_react_agent_optimizes_both_react_predictors_through_the_flow(prefect_harness, server, workdir):
    """On the test server, whose agent calls country_of for every question until it has seen demos (then the
    tool the question needs) and whose extract step answers with the observation: bootstrapping on the
    questions it gets right gives both ``react`` and ``extract.predict`` demos, and the demos lift the score
    on the population questions. Every tool call went to the real table."""
    import json
    import re

    from flows.optimize import run_optimization

    table = json.loads((EXAMPLES / "react_agent/data/cities.json").read_text())
    calls: list[tuple[str, dict]] = []

    def responder(request):
        inputs = request.inputs  # the trajectory's [[ ## observation_0 ## ]] sections are parsed out too
        if "next_tool_name" in request.output_fields:
            if "observation_0" in inputs:
                return request.reply(next_thought="I have it.", next_tool_name="finish", next_tool_args={"city": ""})
            question = inputs["question"]
            city = next(w for w in re.findall(r"[A-Z][a-z]+", question) if w in table)
            asks_population = "people" in question or "population" in question
            tool = "population_of" if request.demos and asks_population else "country_of"
            calls.append((tool, {"city": city}))
            return request.reply(next_thought=f"Look up {city}.", next_tool_name=tool, next_tool_args={"city": city})
        return request.reply(reasoning="The observation has it.", answer=inputs.get("observation_0", "unknown"))

    server.responder = responder
    report = run_optimization(validate_config(flow_config("react_agent", server, workdir, limit=10)))

    dev = [json.loads(line) for line in (EXAMPLES / "react_agent/data/dev.jsonl").open()][:10]
    countries = sum(1 for row in dev if not row["answer"].isdigit())
    assert 0 < countries < 10  # both kinds of question are in the validation rows
    assert (report.baseline_score, report.optimized_score) == (100.0 * countries / 10, 100.0)

    state = saved_program(workdir)
    react_demos, extract_demos = state["react"]["demos"], state["extract.predict"]["demos"]
    assert react_demos and extract_demos
    assert all(d["next_tool_name"] in ("country_of", "population_of", "finish") for d in react_demos)
    assert any(d["next_tool_args"].get("city") in table for d in react_demos)
    assert all("[[ ## observation_0 ## ]]" in d["trajectory"] for d in extract_demos)
    assert {tool for tool, _ in calls} == {"country_of", "population_of"}
    assert all(args["city"] in table for _, args in calls)


def test_refine_answers_reward_checks_the_form_and_the_message():
    import dsr_core as dsr
    from examples.refine_answers.program import CheckedOrderCode, RefinedOrderCode, code_match, reward

    message = {"message": "Order KT-3057 came broken; call 555-123-4567."}
    assert reward(message, dsr.Prediction(order_code=" KT-3057 ")) == 1.0
    assert reward(message, dsr.Prediction(order_code="AB-1234")) == 0.5
    assert reward(message, dsr.Prediction(order_code="555-123-4567")) == 0.0
    assert code_match(dsr.Example(order_code="KT-3057"), dsr.Prediction(order_code="KT-3057 "))
    for program in (CheckedOrderCode(), RefinedOrderCode()):
        assert [name for name, _ in program.named_predictors()] == ["module.predict"]
        assert (program.N, program.threshold, program.reward_fn) == (3, 1.0, reward)


def test_refine_answers_optimizes_the_predictor_inside_best_of_n_through_the_flow(prefect_harness, server, workdir):
    """On the test server: without demos its attempts are "unknown", then a well-formed code that is not in
    the message (reward 0.5), so the best of three is wrong; with demos its first attempt is "order <code>"
    (reward 0) and the second the code itself (reward 1). Bootstrapping gives the inner predictor demos whose
    codes pass the reward, and the optimized program wins on its second attempt."""
    import json
    import threading
    from collections import Counter

    from examples.refine_answers.program import CODE, reward
    from flows.optimize import run_optimization

    seen: Counter[str] = Counter()  # the cache keeps attempts apart: a repeated prompt is the next attempt
    lock = threading.Lock()
    attempts_with_demos: list[int] = []

    def responder(request):
        assert request.body["temperature"] == 1.0
        with lock:
            key = json.dumps(request.messages)
            attempt = seen[key]
            seen[key] += 1
        code = CODE.search(request.inputs["message"]).group(0)
        if not request.demos:
            return request.reply(order_code="unknown" if attempt == 0 else "KT-3057")
        attempts_with_demos.append(attempt)
        return request.reply(order_code=f"order {code}" if attempt == 0 else code)

    server.responder = responder
    report = run_optimization(validate_config(flow_config("refine_answers", server, workdir, limit=8)))

    assert (report.baseline_score, report.optimized_score) == (0.0, 100.0)
    demos = saved_program(workdir)["module.predict"]["demos"]
    assert demos
    assert all(reward({"message": d["message"]}, _prediction(d)) == 1.0 for d in demos)
    assert 1 in attempts_with_demos  # the winning answers came from a second attempt


def _prediction(demo: dict):
    import dsr_core as dsr

    return dsr.Prediction(order_code=demo["order_code"])


async def test_refine_answers_refine_variant_hints_the_next_attempt(server):
    """RefinedOrderCode: the first answer fails the reward, the advice (keyed by the inner module's predictor
    name) reaches the next attempt as a hint, and the hinted attempt answers with the code from the message."""
    import dsr_core as dsr
    from examples.refine_answers.program import CODE, RefinedOrderCode

    def responder(request):
        if "advice" in request.output_fields:
            return request.reply(discussion="It gave a phone number.", advice={"predict": "Copy AB-1234."})
        if request.inputs.get("hint_") == "Copy AB-1234.":
            return request.reply(order_code=CODE.search(request.inputs["message"]).group(0))
        return request.reply(order_code="555-123-4567")

    server.responder = responder
    dsr.configure(lm=dsr.LM("test-model", api_base=server.url, num_retries=1))
    prediction = await RefinedOrderCode().acall(message="Order QK-3402 is late. Call 555-123-4567.")
    assert prediction.order_code == "QK-3402"
    assert server.stats.requests == 3  # the first attempt, the advice, the hinted attempt
