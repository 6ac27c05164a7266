"""MIPROv2 as an ask/tell machine, against the test server.

The server plays both models. As the task model it answers by a hidden rule that needs both a good
instruction (one containing "Reverse the word") and at least two demos; with only one of them it gets the
even-numbered words right, with neither it echoes the word. As the prompt model it answers the proposal
signatures (dispatching on the output fields the prompt asks for), and proposes the good instruction.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys

import pytest

import dsr_core as dsr
from dsr_core._async import run_sync
from dsr_core.optimizers import (
    BootstrapWork,
    EvaluateWork,
    GenerateWork,
    LocalRunner,
    MiproState,
    MIPROv2,
    WorkKey,
)
from dsr_core.optimizers.mipro import AUTO_RUN_SETTINGS, num_trials_for
from dsr_core.testing.server import ChatRequest

GOOD_INSTRUCTION = "Reverse the word, then uppercase it."
PROMPT_MODEL_ANSWERS = {
    "observations": "Every example is a short token such as w3x.",
    "summary": "Summary: Short tokens, each paired with a code.",
    "program_description": "Program Summary: It turns a word into a code.",
    "module_description": "It produces the code.",
    "proposed_instruction": f"Proposed Instruction: {GOOD_INSTRUCTION}",
}


def code(word: str) -> str:
    return word[::-1].upper()


def encode(request):
    word = request.inputs.get("word", "")
    told = "Reverse the word" in request.instructions
    shown = len(request.demos) >= 2
    even = int(word[1:-1]) % 2 == 0
    return request.reply(code=code(word) if (told and shown) or ((told or shown) and even) else word)


def responder(request):
    fields = request.output_fields
    if fields == ["code"]:
        return encode(request)
    return request.reply(**{name: PROMPT_MODEL_ANSWERS[name] for name in fields})


def dataset(n, offset=0):
    return [dsr.Example(word=f"w{offset + i}x", code=code(f"w{offset + i}x")).with_inputs("word") for i in range(n)]


def metric(example, prediction, trace=None):
    return prediction.code == example.code


class Encoder(dsr.Module):
    """A one-step program; the proposer is shown this class's source."""

    def __init__(self):
        self.encode = dsr.Predict("word -> code")

    async def aforward(self, word):
        return await self.encode.acall(word=word)


@pytest.fixture
def program(server, lm):
    server.responder = responder
    encoder = Encoder()
    encoder.set_lm(lm)
    return encoder


def small(**overrides) -> MIPROv2:
    settings = {"auto": None, "num_candidates": 3, "num_trials": 6, "minibatch_size": 5, "seed": 0}
    return MIPROv2(metric, **{**settings, **overrides})


def run(optimizer, program, train, val, runner=None) -> list[MiproState]:
    """Every state from init to done, each through a JSON checkpoint."""
    runner = runner or LocalRunner(program, train, val, metric)
    states = [optimizer.init_state(program, train, val)]
    while not states[-1].done:
        state = optimizer.tell(states[-1], run_sync(runner.run(optimizer.ask(states[-1]))))
        states.append(MiproState.model_validate_json(state.model_dump_json()))
    return states


def compiled(program, state: MiproState):
    result = program.deepcopy()
    result.load_state(state.result)
    return result


def score(program, devset):
    return dsr.Evaluate(devset, metric)(program).score


def test_mipro_improves_the_program(program):
    train, val, dev = dataset(12), dataset(10, offset=50), dataset(10, offset=100)
    assert score(program, dev) == 0.0
    state = run(small(), program, train, val)[-1]
    assert state.phase == "done" and state.trials[0].kind == "baseline" and state.trials[0].score == 0.0
    assert state.best_score == 100.0
    improved = compiled(program, state)
    assert GOOD_INSTRUCTION in improved.encode.signature.instructions and len(improved.encode.demos) >= 2
    assert score(improved, dev) == 100.0
    assert score(small().compile(program, train, val), dev) == 100.0  # compile drives the same machine


def test_auto_settings_follow_dspy():
    class TwoSteps(dsr.Module):
        def __init__(self):
            self.first = dsr.Predict("word -> hint")
            self.second = dsr.Predict("word, hint -> code")

    one, two = Encoder(), TwoSteps()
    train, val = dataset(40), dataset(150, offset=100)
    for auto, n, val_size in [("light", 6, 100), ("medium", 12, 300), ("heavy", 18, 1000)]:
        assert AUTO_RUN_SETTINGS[auto] == {"n": n, "val_size": val_size}
        state = MIPROv2(metric, auto=auto).init_state(one, train, val)
        assert len(state.demo_sets) == n and len(state.val_indices) == min(val_size, 150) and state.minibatch
        assert state.num_trials == num_trials_for(1, n, zeroshot=False) == int(max(4 * math.log2(n), 1.5 * n))
        assert len(state.proposals) == n // 2 - 1  # n/2 instruction candidates; the first is the original
    light = MIPROv2(metric).init_state(one, train, val)  # defaults: auto="light", seed=9
    assert light.num_trials == 10 and MIPROv2(metric).init_state(two, train, val).num_trials == 20
    assert MIPROv2(metric, max_bootstrapped_demos=0, max_labeled_demos=0).init_state(one, train, val).num_trials == 9
    # DSPy's draws from random.Random(seed): the validation subsample, then the shuffled sets' orders and sizes
    rng = random.Random(9)
    assert light.val_indices == rng.sample(range(150), 100)
    for demo_set in light.demo_sets[3:]:
        order = list(range(40))
        rng.shuffle(order)
        assert demo_set.bootstrap.order == order and demo_set.max_bootstrapped_demos == rng.randint(1, 4)
    assert [s.kind for s in light.demo_sets[:3]] == ["zero-shot", "labeled", "bootstrap"]
    # no valset: DSPy validates on the last 80% of the trainset and bootstraps from the rest
    split = MIPROv2(metric).init_state(one, dataset(200), None)
    assert split.val_split == "train" and len(split.val_indices) == 100 and min(split.val_indices) >= 40
    assert all(max(s.bootstrap.order) < 40 for s in split.demo_sets if s.bootstrap)
    small_val = MIPROv2(metric).init_state(one, train, dataset(30))
    assert not small_val.minibatch and len(small_val.val_indices) == 30  # DSPy: minibatches only above 50
    with pytest.raises(ValueError, match="auto"):
        MIPROv2(metric, num_candidates=3)
    with pytest.raises(ValueError, match="num_candidates"):
        MIPROv2(metric, auto=None)
    # as in DSPy, num_trials may come with compile: without it, the run says what to set it to
    with pytest.raises(ValueError, match=r"num_trials must also be provided.*recommend setting num_trials to ~"):
        MIPROv2(metric, auto=None, num_candidates=3).init_state(one, train, val)


def test_full_evaluations_every_five_trials_and_at_the_end(program):
    train, val = dataset(12), dataset(10, offset=50)
    optimizer = small(num_trials=7)
    state = run(optimizer, program, train, val)[-1]
    kinds = [t.kind for t in state.trials]
    assert optimizer.planned_trials(state) == len(kinds) == 10
    assert kinds == ["baseline"] + ["minibatch"] * 5 + ["full"] + ["minibatch"] * 2 + ["full"]
    assert [t.n_examples for t in state.trials] == [10] + [5] * 5 + [10] + [5] * 2 + [10]
    fully_evaluated: list[dict] = []
    for position, trial in enumerate(state.trials):
        if trial.kind != "full":
            continue
        # the best-averaging choice on minibatches so far that was not fully evaluated yet
        means: dict[str, list[float]] = {}
        for earlier in state.trials[:position]:
            if earlier.kind == "minibatch":
                means.setdefault(json.dumps(earlier.params, sort_keys=True), []).append(earlier.score)
        candidates = [(sum(s) / len(s), p) for p, s in means.items() if json.loads(p) not in fully_evaluated]
        best_mean = max(mean for mean, _ in candidates)
        assert trial.params == json.loads(next(p for mean, p in candidates if mean == best_mean))
        fully_evaluated.append(trial.params)
    full = [t for t in state.trials if t.kind != "minibatch"]
    best = max(full, key=lambda t: t.score)  # max keeps the first of equal scores
    assert state.best_trial == best.number and state.best_score == best.score and best.kind == "full"
    chosen = state.result["encode"]  # the result is that trial's program
    assert chosen["signature"]["instructions"] == state.instructions[0][best.params["0_predictor_instruction"]]
    assert chosen["demos"] == state.demo_sets[best.params["0_predictor_demos"]].demos["encode"]


def test_track_stats_puts_dspys_trial_statistics_on_the_compiled_program(program):
    """DSPy's default: the compiled program carries its score, every trial's log and the candidates."""
    train, val, dev = dataset(12), dataset(10, offset=50), dataset(10, offset=100)
    optimizer = small(num_trials=7)
    best = optimizer.compile(program, train, val)
    state = run(optimizer, program, train, val)[-1]  # the same run, as the state it was compiled from
    assert best.score == state.best_score == 100.0
    assert sorted(best.trial_logs) == list(range(1, len(state.trials) + 1))
    baseline, first_minibatch = best.trial_logs[1], best.trial_logs[2]
    assert baseline["full_eval_score"] == 0.0 and baseline["total_eval_calls_so_far"] == 10
    assert score(baseline["full_eval_program"], dev) == 0.0  # the program as given
    assert "full_eval_score" not in first_minibatch and first_minibatch["total_eval_calls_so_far"] == 15
    assert first_minibatch["0_predictor_instruction"] == state.trials[1].params["0_predictor_instruction"]
    mb_program = first_minibatch["mb_program"]
    assert (
        mb_program.encode.signature.instructions
        == state.instructions[0][state.trials[1].params["0_predictor_instruction"]]
    )
    full_scores = [entry["score"] for entry in best.candidate_programs]
    assert full_scores == sorted(full_scores, reverse=True) and len(full_scores) == 3  # baseline and two full
    assert all(entry["full_eval"] for entry in best.candidate_programs)
    assert score(best.candidate_programs[0]["program"], dev) == 100.0
    assert len(best.mb_candidate_programs) == 7 and not any(e["full_eval"] for e in best.mb_candidate_programs)
    assert best.total_calls == sum(t.n_examples for t in state.trials) == 65
    assert best.prompt_model_total_calls == len(state.proposals) > 0
    plain = small(num_trials=7, track_stats=False).compile(program, train, val)
    assert not hasattr(plain, "trial_logs") and not hasattr(plain, "candidate_programs")
    # the statistics are no part of the program: the same predictors, the same saved state
    assert [name for name, _ in best.named_predictors()] == [name for name, _ in plain.named_predictors()]
    assert best.dump_state() == plain.dump_state()


def test_log_dir_saves_every_evaluated_program_as_dspy_names_them(program, tmp_path):
    train, val, dev = dataset(12), dataset(10, offset=50), dataset(10, offset=100)
    best = small(num_trials=7, log_dir=str(tmp_path)).compile(program, train, val)
    folder = tmp_path / "evaluated_programs"
    names = sorted(p.name for p in folder.iterdir())
    assert "program_-1.json" in names and "program_2.json" in names
    assert len([n for n in names if n.endswith("_full_eval.json")]) == 2  # the two full evaluations
    assert len(names) == len(best.trial_logs) == 10
    assert best.trial_logs[1]["full_eval_program_path"] == str(folder / "program_-1.json")
    assert best.trial_logs[2]["mb_program_path"] == str(folder / "program_2.json")
    best_path = next(e["full_eval_program_path"] for e in best.trial_logs.values() if e.get("full_eval_score") == 100.0)
    loaded = program.deepcopy()
    loaded.load(best_path)
    assert score(loaded, dev) == 100.0  # a saved file is the program that trial scored
    assert json.loads((folder / "program_-1.json").read_text())["encode"]["demos"] == []


def test_without_minibatches_every_trial_is_a_full_evaluation(program):
    train, val = dataset(12), dataset(6, offset=50)
    state = run(small(minibatch=False, num_trials=4), program, train, val)[-1]
    assert [t.kind for t in state.trials] == ["baseline"] + ["full"] * 4
    assert all(t.n_examples == 6 for t in state.trials)
    assert state.best_score == max(t.score for t in state.trials) == 100.0


def test_zero_shot_optimization_searches_instructions_only(program):
    train, val = dataset(12), dataset(10, offset=50)
    state = run(small(max_bootstrapped_demos=0, max_labeled_demos=0), program, train, val)[-1]
    # DSPy: without labeled demos the second set is a shuffled bootstrap too; the sets only inform the proposer
    assert [s.kind for s in state.demo_sets] == ["zero-shot", "bootstrap", "bootstrap"]
    assert all(list(t.params) == ["0_predictor_instruction"] for t in state.trials)
    assert (
        state.result["encode"]["demos"] == []
        and GOOD_INSTRUCTION in state.result["encode"]["signature"]["instructions"]
    )
    assert state.best_score == 50.0  # the instruction alone gets the even-numbered words


def test_proposer_without_grounding(server, program):
    optimizer = small(
        program_aware_proposer=False, data_aware_proposer=False, tip_aware_proposer=False, fewshot_aware_proposer=False
    )
    state = run(optimizer, program, dataset(12), dataset(10, offset=50))[-1]
    assert state.summary is None and state.program_code == "" and state.best_score == 100.0
    asked = [
        request.output_fields for request in map(ChatRequest, server.requests) if request.output_fields != ["code"]
    ]
    assert asked == [["proposed_instruction"]] * 2  # no dataset summary, no program or module description
    for body in server.requests:
        request = ChatRequest(body)
        if request.output_fields == ["proposed_instruction"]:
            assert list(request.inputs) == ["task_demos", "basic_instruction"]
            assert request.inputs["task_demos"] == "No task demos provided."


def test_state_is_json_and_resumes_identically_from_every_checkpoint(program):
    train, val = dataset(12), dataset(10, offset=50)
    optimizer = small()
    runner = LocalRunner(program, train, val, metric)
    states = run(optimizer, program, train, val, runner)
    phases = [s.phase for s in states]
    assert phases[0] == "bootstrap" and phases[-1] == "done" and {"propose", "trials"} <= set(phases)
    uninterrupted = states[-1].model_dump_json()
    for checkpoint in states[:-1]:
        text = checkpoint.model_dump_json()
        state = MiproState.model_validate_json(text)
        assert state.model_dump_json() == text
        work = optimizer.ask(state)
        assert work and json.dumps([w.model_dump() for w in work]) == json.dumps(
            [w.model_dump() for w in optimizer.ask(checkpoint)]
        )
        results = run_sync(runner.run(work))
        after = optimizer.tell(state, results)
        assert state.model_dump_json() == text  # tell never changes its input
        while not after.done:
            after = optimizer.tell(after, run_sync(runner.run(optimizer.ask(after))))
        assert after.model_dump_json() == uninterrupted


def test_same_seed_same_run_other_seed_other_run(program):
    train, val = dataset(12), dataset(10, offset=50)
    first = run(small(seed=3), program, train, val)[-1]
    again = run(small(seed=3), program, train, val)[-1]
    other = run(small(seed=4), program, train, val)[-1]
    assert first.model_dump_json() == again.model_dump_json()
    assert [t.minibatch for t in first.trials] != [t.minibatch for t in other.trials]
    assert [t.params for t in first.trials] != [t.params for t in other.trials]


def test_parallel_trials_ask_distinct_trials_together(program):
    train, val, dev = dataset(12), dataset(10, offset=50), dataset(10, offset=100)
    optimizer = small(parallel_trials=3, num_trials=9)
    states = run(optimizer, program, train, val)
    first_search = next(i for i, s in enumerate(states) if s.phase == "trials" and s.trials)
    asked = optimizer.ask(states[first_search])
    assert [w.candidate for w in asked] == [1, 2, 3]
    told = states[first_search + 1].trials[1:]
    assert [t.number for t in told] == [1, 2, 3] and len({json.dumps(t.params) for t in told}) == 3
    state = states[-1]
    # batches of 3 and 2 so the full evaluation comes after 5 trials, as without parallelism
    kinds = [t.kind for t in state.trials]
    assert kinds == ["baseline"] + ["minibatch"] * 5 + ["full"] + ["minibatch"] * 4 + ["full"]
    assert score(compiled(program, state), dev) == 100.0
    assert run(small(parallel_trials=3, num_trials=9), program, train, val)[-1].model_dump_json() == (
        state.model_dump_json()
    )


def test_tell_is_the_same_in_another_process(program, tmp_path):
    """TPE's choices depend on nothing but the state: not on the process, nor on its hash seed."""
    train, val = dataset(12), dataset(10, offset=50)
    settings = {
        "auto": None,
        "num_candidates": 3,
        "num_trials": 6,
        "minibatch_size": 5,
        "seed": 0,
        "parallel_trials": 2,
    }
    optimizer = MIPROv2(metric, **settings)
    runner = LocalRunner(program, train, val, metric)
    states = run(optimizer, program, train, val, runner)
    checkpoint = next(s for s in states if s.phase == "trials" and len(s.trials) > 4)
    results = run_sync(runner.run(optimizer.ask(checkpoint)))
    (tmp_path / "state.json").write_text(checkpoint.model_dump_json())
    (tmp_path / "results.json").write_text(json.dumps([r.model_dump() for r in results]))
    (tmp_path / "settings.json").write_text(json.dumps(settings))
    script = """
import json, pathlib, sys
from dsr_core.optimizers import EvaluateOutcome, MIPROv2, MiproState
folder = pathlib.Path(sys.argv[1])
state = MiproState.model_validate_json((folder / "state.json").read_text())
results = [EvaluateOutcome(**r) for r in json.loads((folder / "results.json").read_text())]
optimizer = MIPROv2(None, **json.loads((folder / "settings.json").read_text()))
print(optimizer.tell(state, results).model_dump_json())
"""
    env = {**os.environ, "PYTHONHASHSEED": "4242"}
    other = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, capture_output=True, text=True)
    assert other.returncode == 0, other.stderr
    told = optimizer.tell(checkpoint, results)
    assert len(told.trials) > len(checkpoint.trials)  # new trials were chosen
    assert other.stdout.strip() == told.model_dump_json()


class ShardingRunner(LocalRunner):
    """Splits every evaluation into shards of two examples and every bootstrap into single examples, and
    returns the results in reverse order, as a flow over shards might."""

    async def run(self, work):
        pieces = []
        for item in work:
            if isinstance(item, EvaluateWork):
                pieces += [
                    item.model_copy(update={"indices": item.indices[i : i + 2]}) for i in range(0, len(item.indices), 2)
                ]
            elif isinstance(item, BootstrapWork):
                pieces += [item.model_copy(update={"indices": [i]}) for i in item.indices]
            else:
                pieces.append(item)
        return list(reversed(await super().run(pieces)))


def test_sharded_results_give_the_same_run(program):
    train, val = dataset(12), dataset(10, offset=50)
    whole = run(small(), program, train, val)[-1]
    sharded = run(small(), program, train, val, ShardingRunner(program, train, val, metric))[-1]
    assert sharded.model_dump_json() == whole.model_dump_json()


def test_a_failing_example_does_not_sink_a_trial(server, program):
    def broken_on_w55x(request):
        if request.output_fields == ["code"] and request.inputs.get("word") == "w55x":
            return "no fields here"
        return responder(request)

    server.responder = broken_on_w55x
    train, val = dataset(12), dataset(10, offset=50)
    state = run(small(), program, train, val)[-1]
    full = [t for t in state.trials if t.kind != "minibatch"]
    assert all(t.errors == 1 and t.score is not None for t in full)
    assert state.best_score == 90.0  # every other example right


def test_grounded_proposals_see_summary_program_demos_and_tip(server, program):
    def answers(request):
        if request.output_fields == ["observations"] and "prior_observations" in request.inputs:
            first = request.inputs["examples"].startswith("[Example({'word': 'w10x'")
            return request.reply(observations="More tokens." if first else "COMPLETE")
        return responder(request)

    server.responder = answers
    train, val = dataset(25), dataset(10, offset=50)
    state = run(small(), program, train, val)[-1]
    summary = state.summary
    assert summary.text == "Short tokens, each paired with a code."  # DSPy strips the "Summary:" label
    assert summary.observations == PROMPT_MODEL_ANSWERS["observations"] + "More tokens."  # DSPy joins them as is
    assert summary.skips == 1 and summary.shown == 3
    assert state.instructions == [
        ["Given the fields `word`, produce the fields `code`.", GOOD_INSTRUCTION, GOOD_INSTRUCTION]
    ]

    prompts = [b["messages"] for b in server.requests]
    describer = [m for m in prompts if "[[ ## examples ## ]]" in m[-1]["content"]]
    assert "Example({'word': 'w0x', 'code': 'X0W'}) (input_keys={'word'})" in describer[0][-1]["content"]
    instruction_prompts = [m for m in prompts if "proposed_instruction" in m[0]["content"]]
    assert len(instruction_prompts) == 2  # demo sets 1 and 2; set 0's instruction is the original
    for messages in instruction_prompts:
        text = messages[-1]["content"]
        assert "Short tokens, each paired with a code." in text  # the dataset summary
        assert "class Encoder(dsr.Module):" in text  # the program's source
        assert "Encoder(word) -> code" not in text and "Predict(word) -> code" in text  # the module
        assert "It turns a word into a code." in text  # the program description, label stripped
        assert "Word: w0x\nCode: X0W" in text  # a bootstrapped demo (w0x is even: the teacher got it right)
    tips = [p.tip for p in state.proposals]
    assert sum("[[ ## tip ## ]]" in m[-1]["content"] for m in instruction_prompts) == sum(bool(t) for t in tips)


def test_describer_failures_fall_back_and_instruction_failures_raise(server, program):
    server.inject("unparseable", times=1000, match=lambda r: r.output_fields == ["program_description"])
    train, val = dataset(12), dataset(10, offset=50)
    state = run(small(), program, train, val)[-1]
    assert all(p.program_description == "Not available" and p.module == "Not provided" for p in state.proposals)
    assert state.best_score == 100.0

    server.clear_faults()
    server.inject("unparseable", times=1000, match=lambda r: r.output_fields == ["proposed_instruction"])
    optimizer = small(seed=1)
    runner = LocalRunner(program, train, val, metric)
    state = optimizer.init_state(program, train, val)
    with pytest.raises(RuntimeError, match="proposing an instruction for 'encode' failed"):
        while not state.done:
            work = optimizer.ask(state)
            state = optimizer.tell(state, run_sync(runner.run(work)))
    assert any(isinstance(w, GenerateWork) and w.key.step == "instruction" and w.key.number is not None for w in work)


def test_state_answers_what_a_flow_reads_and_keys_are_typed(program):
    train, val = dataset(12), dataset(10, offset=50)
    optimizer = small()
    states = run(optimizer, program, train, val)
    assert [s.current_phase for s in states] == [s.phase for s in states]
    final = states[-1]
    assert list(final.recorded_trials) == final.trials and final.trial(3) == final.trials[3]
    assert final.trial(len(final.trials)) is None
    proposing = next(s for s in states if s.phase == "propose")
    keys = [w.key for w in optimizer.ask(proposing) if isinstance(w, GenerateWork)]
    assert keys and all(isinstance(key, WorkKey) for key in keys)
    numbers = [key.number for key in keys if key.step != "describe_data"]
    assert numbers == sorted(numbers) and set(numbers) <= set(range(len(proposing.proposals)))


def test_optuna_logging_is_set_at_construction_and_ask_starts_no_thread(program):
    import threading

    import optuna

    small()
    assert optuna.logging.get_verbosity() == optuna.logging.WARNING
    optuna.logging.set_verbosity(optuna.logging.INFO)  # the caller's choice, after construction
    try:
        optimizer = small()
        train, val = dataset(12), dataset(10, offset=50)
        runner = LocalRunner(program, train, val, metric)
        state = optimizer.init_state(program, train, val)
        while not state.done:
            threads = set(threading.enumerate())
            work = optimizer.ask(state)
            assert set(threading.enumerate()) <= threads  # ask only says what to compute
            state = optimizer.tell(state, run_sync(runner.run(work)))
        assert optuna.logging.get_verbosity() == optuna.logging.INFO  # the search did not reset it
    finally:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
