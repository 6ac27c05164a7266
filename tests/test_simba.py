"""SIMBA as an ask/tell machine, against the test server.

The server plays the task model and the prompt model. The task model turns a word into its uppercase code
when it knows how (from a correct demo, or from an instruction that says "uppercase", depending on the
task); otherwise it answers greedily with the word unchanged, and at temperature 1.0 (SIMBA's sampling
models) it gets a third of its answers right by chance: the k-th time it sees a request it decides by a
hash of the request and k, so a run sees the same answers whatever order its requests arrive in. As the
prompt model it reads the reward information in DSPy's OfferFeedback prompt and advises uppercase codes
when the metric's feedback asks for them.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from collections.abc import Callable

import pytest

import dsr_core as dsr
from dsr_core._async import run_sync
from dsr_core.optimizers import LocalRunner
from dsr_core.optimizers.simba import SIMBA, SimbaState, final_positions, percentile, top_programs
from dsr_core.optimizers.simba.state import Program
from dsr_core.testing.server import LMTestServer


def code(word: str) -> str:
    return word.upper()


def knows_from_demos(request) -> bool:
    return any(outputs.get("code") == code(inputs.get("word", "")) for inputs, outputs in request.demos)


def knows_from_instructions(request) -> bool:
    return "uppercase" in request.instructions


class Server:
    """The task model (which learns from ``knows``) and the prompt model, as one responder."""

    def __init__(self, knows: Callable[..., bool]) -> None:
        self.knows = knows
        self.seen: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.advice_requests: list[dict[str, str]] = []

    def __call__(self, request):
        if "module_advice" in request.output_fields:
            return self.advise(request)
        word = request.inputs["word"]
        right = self.knows(request)
        if not right and request.body.get("temperature") == 1.0:
            key = json.dumps(request.messages, sort_keys=True)
            with self.lock:
                count = self.seen[key]
                self.seen[key] += 1
            right = int(hashlib.sha256(f"{key}:{count}".encode()).hexdigest(), 16) % 3 == 0
        return request.reply(code=code(word) if right else word)

    def advise(self, request):
        self.advice_requests.append(request.inputs)
        info = request.inputs["worse_reward_info"] + request.inputs["better_reward_info"]
        advice = "Write the code in uppercase letters." if "uppercase" in info else "Answer carefully."
        names = json.loads(request.inputs["module_names"])
        return request.reply(
            discussion="The worse trajectory kept the case.", module_advice=dict.fromkeys(names, advice)
        )


def metric(gold, pred, trace=None):
    right = pred.code == gold.code
    feedback = "Correct." if right else "Wrong: the code must be the word in uppercase."
    return dsr.Prediction(score=float(right), feedback=feedback)


def plain_metric(example, prediction, trace=None):
    return prediction.code == example.code


def words(n: int, offset: int = 0) -> list[dsr.Example]:
    return [dsr.Example(word=f"w{offset + i}", code=code(f"w{offset + i}")).with_inputs("word") for i in range(n)]


class Encoder(dsr.Module):
    def __init__(self):
        self.encode = dsr.Predict("word -> code")

    async def aforward(self, word):
        return await self.encode.acall(word=word)


def encoder(lm) -> Encoder:
    program = Encoder()
    program.set_lm(lm)
    return program


def simba(**overrides) -> SIMBA:
    settings = {"bsize": 4, "num_candidates": 3, "max_steps": 3, "seed": 0}
    return SIMBA(metric, **{**settings, **overrides})


def run(optimizer, program, train, val=None, reload=True) -> list[SimbaState]:
    """Every state from init to done, each through a JSON checkpoint when ``reload``."""
    runner = LocalRunner(program, train, val, metric)
    states = [optimizer.init_state(program, train, val)]
    while not states[-1].done:
        state = optimizer.tell(states[-1], run_sync(runner.run(optimizer.ask(states[-1]))))
        states.append(SimbaState.model_validate_json(state.model_dump_json()) if reload else state)
    return states


# -- the search ------------------------------------------------------------------------------------------------


def test_simba_finds_a_demo_that_lifts_the_score(server, lm):
    server.responder = Server(knows_from_demos)
    program, train, dev = encoder(lm), words(8), words(6, offset=50)
    assert dsr.Evaluate(dev, plain_metric)(program).score == 0.0
    compiled = simba().compile(program, trainset=train)
    demos = compiled.encode.demos
    assert demos and all(d["code"] == code(d["word"]) and d["augmented"] for d in map(dict, demos))
    assert dsr.Evaluate(dev, plain_metric)(compiled).score == 100.0
    assert compiled.candidate_programs[0]["score"] == 1.0 and compiled.candidate_programs[-1]["score"] == 0.0
    assert set(compiled.trial_logs) == {0, 1, 2} and compiled.trial_logs[0]["baseline_score"] < 1.0


def test_simba_finds_a_rule_only_the_prompt_model_can_give(server, lm):
    model = Server(knows_from_instructions)
    server.responder = model
    program, train, dev = encoder(lm), words(8), words(6, offset=50)
    state = run(simba(), program, train)[-1]
    compiled = simba().finish(program, state)
    assert compiled.encode.signature.instructions.endswith("\n\nWrite the code in uppercase letters.")
    assert dsr.Evaluate(dev, plain_metric)(compiled).score == 100.0
    rules = [p for p in state.programs if p.strategy == "append_a_rule" and p.applied]
    assert rules and all(p.mean == 1.0 for p in rules)
    for p in state.programs:  # demos do not help here: only the programs with the rule score 1
        assert (p.mean == 1.0) == ("uppercase" in p.instructions["encode"])
    request = model.advice_requests[0]
    assert "class Encoder(dsr.Module)" in request["program_code"]
    assert "Module encode" in request["modules_defn"] and "1. `word` (str)" in request["modules_defn"]
    assert json.loads(request["oracle_metadata"]) == {"code": code(json.loads(request["program_inputs"])["word"])}
    assert json.loads(request["worse_reward_info"]) == {"feedback": "Wrong: the code must be the word in uppercase."}
    assert json.loads(request["better_program_trajectory"])[0]["module_name"] == "encode"
    assert request["worse_reward_value"] == "0.0" and request["better_reward_value"] == "1.0"


def test_without_demos_only_rules_are_drawn(server, lm):
    server.responder = Server(knows_from_instructions)
    state = run(simba(max_demos=0), encoder(lm), words(8))[-1]
    assert {p.strategy for p in state.programs[1:]} == {"append_a_rule"}


def test_with_a_valset_the_winners_are_scored_on_it(server, lm):
    server.responder = Server(knows_from_demos)
    state = run(simba(max_steps=2), encoder(lm), words(8), words(5, offset=50))[-1]
    final = [t for t in state.trials if t.kind == "final"]
    assert state.final_split == "val" and final and {t.n_examples for t in final} == {5}
    assert state.final[0] == 0 and state.final == [state.winners[p] for p in final_positions(3, 3)]
    assert state.best_score == max(t.score for t in final) == 100.0


def test_teacher_settings_make_the_teacher_the_first_sampling_model(server, lm):
    def knows(request):
        return request.model == "teacher-model" or knows_from_demos(request)

    server.responder = Server(knows)
    teacher = dsr.LM("teacher-model", api_base=server.url, retry_backoff=(0.01, 0.05), timeout=5.0)
    program = encoder(lm)
    optimizer = simba(max_steps=1, teacher_settings={"lm": teacher})
    runner = LocalRunner(program, words(8), None, metric, teacher_settings=optimizer.teacher_settings)
    state = optimizer.init_state(program, words(8), None)
    work = optimizer.ask(state)
    entries = [item.program["encode"] for item in work]
    assert {e["lm"]["model"] for e in entries if e["config"]["rollout_id"] == 0} == {"openai/teacher-model"}
    assert all(e["config"]["temperature"] == 1.0 for e in entries if e["config"]["rollout_id"] != 0)
    state = optimizer.tell(state, run_sync(runner.run(work)))
    assert all(bucket.max_score == 1.0 for bucket in state.step.buckets)  # the teacher is right on every example


# -- resumability and determinism ------------------------------------------------------------------------------


def test_resume_from_every_checkpoint_is_byte_identical(server, lm):
    server.responder = Server(knows_from_instructions)
    program, train = encoder(lm), words(8)
    straight = run(simba(), program, train, reload=False)
    checkpointed = run(simba(), program, train, reload=True)
    assert checkpointed[-1].model_dump_json() == straight[-1].model_dump_json()
    assert {s.current_phase for s in straight} >= {"sample", "rules", "evaluate", "final", "done"}
    optimizer, runner = simba(), LocalRunner(program, train, None, metric)
    for state in straight[1:-1]:  # resume from each checkpoint and finish from there
        resumed = SimbaState.model_validate_json(state.model_dump_json())
        while not resumed.done:
            resumed = optimizer.tell(resumed, run_sync(runner.run(optimizer.ask(resumed))))
        assert resumed.model_dump_json() == straight[-1].model_dump_json()


def fresh_run(server: LMTestServer, seed: int) -> SimbaState:
    """A run with nothing cached and a model that has seen nothing: every answer is asked for again."""
    server.responder = Server(knows_from_instructions)
    lm = dsr.LM("test-model", api_base=server.url, cache=False, retry_backoff=(0.01, 0.05), timeout=5.0)
    return run(simba(seed=seed), encoder(lm), words(8), reload=False)[-1]


def test_a_seed_gives_the_same_run(server):
    first, second, other = fresh_run(server, 0), fresh_run(server, 0), fresh_run(server, 1)
    assert first.model_dump_json() == second.model_dump_json()
    assert [r.batch for r in other.history] != [r.batch for r in first.history]


# -- the pool and its draws ------------------------------------------------------------------------------------


def test_top_programs_keep_the_baseline_and_the_final_winners_are_spread():
    pool = [
        Program(number=i, instructions={}, demos={}, scores=[s] if i else []) for i, s in enumerate([0, 1, 0.5, 0.9])
    ]
    assert top_programs(pool, 2) == [1, 0]  # the baseline (no scores: 0) takes the last place
    assert top_programs(pool, 5) == [1, 3, 2, 0]
    assert final_positions(9, 6) == [0, 1, 3, 4, 5, 7, 8]  # DSPy's round(i * M / (N - 1))
    assert final_positions(1, 6) == [0]
    assert percentile([0, 0, 1, 1], 10) == 0.0 and percentile([0.0, 1.0], 90) == pytest.approx(0.9)


def test_planned_trials_and_phases(server, lm):
    server.responder = Server(knows_from_demos)
    optimizer = simba()
    states = run(optimizer, encoder(lm), words(8))
    assert optimizer.planned_trials(states[0]) == 3 * 4 + 4
    assert len(states[-1].recorded_trials) <= optimizer.planned_trials(states[0])
    assert states[0].current_phase == "sample" and states[-1].current_phase == "done"
    assert states[-1].trial(states[-1].recorded_trials[0].number) is states[-1].recorded_trials[0]


# -- parameters ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bsize": 0}, "bsize"),
        ({"num_candidates": 0}, "num_candidates"),
        ({"max_steps": 0}, "max_steps"),
        ({"max_demos": -1}, "max_demos"),
        ({"demo_input_field_maxlen": -1}, "demo_input_field_maxlen"),
        ({"temperature_for_sampling": 0}, "temperature_for_sampling"),
        ({"temperature_for_candidates": -0.5}, "temperature_for_candidates"),
        ({"num_threads": 0}, "num_threads"),
        ({"metric": "accuracy"}, "metric: Input should be callable"),
    ],
)
def test_bad_parameters_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SIMBA(**{"metric": metric, **kwargs})


def test_bad_compile_arguments_are_refused(lm):
    program = encoder(lm)
    with pytest.raises(ValueError, match=r"at least bsize=32 examples \(got 8\)"):
        SIMBA(metric).compile(program, trainset=words(8))
    with pytest.raises(ValueError, match="teacher"):
        simba().compile(program, trainset=words(8), teacher=program)
    with pytest.raises(ValueError, match="non-empty valset"):
        simba().compile(program, trainset=words(8), valset=[])
    with pytest.raises(TypeError, match="unexpected keyword"):
        simba().compile(program, trainset=words(8), restrict=[1])
    assert simba().configured(seed=7).seed == 7
