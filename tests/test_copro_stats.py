"""COPRO's ``track_stats``: DSPy's ``results_best``, ``results_latest`` and ``total_calls`` on the compiled
program, built from the finished state, against the test server (and against DSPy 3.4.1 itself)."""

from __future__ import annotations

import json
import statistics
import subprocess
import warnings

import dsr_core as dsr
from dsr_core._async import run_sync
from dsr_core.optimizers import COPRO, CoproState, EvaluateWork, LocalRunner
from dsr_core.optimizers.copro import Attempt, Repeat
from dsr_core.optimizers.copro_stats import results_best, results_latest, total_calls
from tests.test_dspy_compat import dspy_python  # noqa: F401 - the fixture: DSPy 3.4.1's interpreter
from tests.test_optimizers import COPRO_PROPOSALS, copro_responder, dataset, metric

BASIC = "Given the fields `word`, produce the fields `code`."


def summary(by_depth):
    """DSPy's per-depth summary, spelled out."""
    return {
        "depth": [d for d, _ in by_depth],
        "max": [max(s) for _, s in by_depth],
        "average": [sum(s) / len(s) for _, s in by_depth],
        "min": [min(s) for _, s in by_depth],
        "std": [statistics.pstdev(s) for _, s in by_depth],
    }


def compile_word_coder(server, lm, **options):
    server.responder = copro_responder
    prompt_lm = dsr.LM("prompt-model", api_base=server.url)
    optimizer = COPRO(prompt_lm, metric, breadth=3, depth=2, **options)
    return optimizer, optimizer.compile(dsr.Predict("word -> code", lm=lm), trainset=dataset(6))


def test_track_stats_gives_dspys_per_depth_summaries_keyed_by_predictor_name(server, lm):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # track_stats does something now: no "has no effect" warning
        _, compiled = compile_word_coder(server, lm, track_stats=True)
    assert compiled.signature.instructions == "Reverse the word, then uppercase it."
    # depth 0: "Echo", "Reverse" (the right one) and the basic instruction; depth 1: "Echo" and "Reverse" again
    # (repeats, scored again) and "Say something"
    assert compiled.results_latest == {"self": summary([(0, [0.0, 100.0, 0.0]), (1, [0.0, 100.0, 0.0])])}
    assert compiled.results_best == {"self": summary([(0, [100.0, 0.0, 0.0]), (1, [100.0, 0.0, 0.0, 0.0])])}
    assert compiled.total_calls == 6  # every candidate evaluated, repeats included, as DSPy counts
    for stats in (*compiled.results_latest.values(), *compiled.results_best.values()):
        assert list(stats) == ["depth", "max", "average", "min", "std"]


def test_the_stats_change_neither_the_predictors_nor_the_saved_state(server, lm, tmp_path):
    _, plain = compile_word_coder(server, lm)
    _, tracked = compile_word_coder(server, lm, track_stats=True)
    assert not hasattr(plain, "results_best") and not hasattr(plain, "results_latest")
    assert plain.total_calls == tracked.total_calls == 6  # DSPy sets total_calls with or without track_stats
    assert [name for name, _ in tracked.named_predictors()] == ["self"]
    assert tracked.named_parameters() == [("self", tracked)]
    assert json.dumps(tracked.dump_state(), sort_keys=True) == json.dumps(plain.dump_state(), sort_keys=True)
    plain.save(tmp_path / "plain.json")
    tracked.save(tmp_path / "tracked.json")
    assert (tmp_path / "tracked.json").read_text() == (tmp_path / "plain.json").read_text()
    loaded = dsr.Predict("word -> code").load(tmp_path / "tracked.json")
    assert loaded.signature.instructions == tracked.signature.instructions


class RewriteThenCode(dsr.Module):
    """Two predictors: the word is passed through ``rewrite`` before ``answer`` codes it."""

    def __init__(self, lm):
        super().__init__()
        self.rewrite = dsr.Predict("word -> cleaned", lm=lm)
        self.answer = dsr.Predict("cleaned -> code", lm=lm)

    def forward(self, word):
        return self.answer(cleaned=self.rewrite(word=word).cleaned)


def two_step_responder(request):
    """Proposals as ``copro_responder``'s; ``rewrite`` passes the word through, ``answer`` codes it only when told to
    reverse it."""
    if request.model == "prompt-model":
        return copro_responder(request)
    if "word" in request.inputs:
        return request.reply(cleaned=request.inputs["word"])
    cleaned = request.inputs.get("cleaned", "")
    return request.reply(code=cleaned[::-1].upper() if "Reverse the word" in request.instructions else cleaned)


def test_several_predictors_each_have_their_own_stats_and_survive_checkpoints(server, lm):
    server.responder = two_step_responder
    prompt_lm = dsr.LM("prompt-model", api_base=server.url)
    optimizer = COPRO(prompt_lm, metric, breadth=3, depth=2, track_stats=True)
    train = dataset(4)
    student = RewriteThenCode(lm)
    runner = LocalRunner(student, train, None, metric, prompt_lm=prompt_lm)
    state, evaluations = optimizer.init_state(student, train, None), 0
    while not state.done:  # every step through JSON, as a checkpointed flow runs it
        work = optimizer.ask(state)
        evaluations += sum(isinstance(w, EvaluateWork) for w in work)
        state = CoproState.model_validate_json(optimizer.tell(state, run_sync(runner.run(work))).model_dump_json())
    repeats = [a for a in state.evaluated["answer"] if a.repeats]
    assert repeats and all(r.depth == 1 for a in repeats for r in a.repeats)  # proposed again at depth 1
    compiled = optimizer.finish(student, state)
    assert set(compiled.results_best) == set(compiled.results_latest) == {"rewrite", "answer"}
    assert compiled.total_calls == evaluations == 12  # 2 predictors x 2 depths x breadth 3
    answer = compiled.results_latest["answer"]
    assert answer["depth"] == [0, 1] and answer["max"] == [100.0, 100.0]
    assert compiled.results_best["rewrite"]["depth"] == [0, 1]
    rerun = optimizer.compile(RewriteThenCode(lm), trainset=train)  # in process, no checkpoints
    assert (rerun.results_best, rerun.results_latest) == (compiled.results_best, compiled.results_latest)


def test_a_repeat_that_scores_higher_is_counted_at_its_depth():
    """With several predictors a repeated proposal can score higher (the other predictor improved meanwhile):
    its first score stays in the first depth's stats, the better one counts from its own depth."""
    attempts = [
        Attempt(
            instruction="a", prefix="p", score=80.0, depth=0, first_score=20.0, repeats=[Repeat(depth=1, score=80.0)]
        ),
        Attempt(instruction="b", prefix="p", score=50.0, depth=0),
        Attempt(instruction="c", prefix="p", score=10.0, depth=1),
    ]
    state = CoproState(
        optimizer="COPRO",
        seed=0,
        predictor_names=["self"],
        n_train=1,
        n_val=0,
        depth=1,
        done=True,
        program={},
        evaluated={"self": attempts},
    )
    assert results_latest(state) == {"self": summary([(0, [20.0, 50.0]), (1, [80.0, 10.0])])}
    assert results_best(state) == {"self": summary([(0, [50.0, 20.0]), (1, [80.0, 50.0, 10.0])])}
    assert total_calls(state) == 4
    dumped = json.loads(state.model_dump_json())["evaluated"]["self"]
    assert dumped[0]["first_score"] == 20.0 and dumped[0]["repeats"] == [{"depth": 1, "score": 80.0}]
    assert "first_score" not in dumped[1] and "repeats" not in dumped[1]  # left out while empty: the old shape
    assert CoproState.model_validate_json(state.model_dump_json()) == state


DSPY_COPRO = r"""
import json, logging, statistics, sys
import dspy

logging.disable(logging.WARNING)
url = sys.argv[1]
dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
lm = dspy.LM("openai/test-model", api_base=url, api_key="none", cache=False)
prompt_lm = dspy.LM("openai/prompt-model", api_base=url, api_key="none", cache=False)
dspy.configure(lm=lm)


def code(word):
    return word[::-1].upper()


train = [dspy.Example(word=f"w{i}x", code=code(f"w{i}x")).with_inputs("word") for i in range(6)]
metric = lambda example, prediction, trace=None: prediction.code == example.code
optimizer = dspy.COPRO(prompt_model=prompt_lm, metric=metric, breadth=3, depth=2, track_stats=True)
compiled = optimizer.compile(dspy.Predict("word -> code"), trainset=train, eval_kwargs={"num_threads": 1})
print(json.dumps({
    "instructions": compiled.signature.instructions,
    "results_best": list(compiled.results_best.values()),
    "results_latest": list(compiled.results_latest.values()),
    "total_calls": compiled.total_calls,
}))
"""


class InTurn:
    """``copro_responder``, but the proposals come in turn across requests: DSPy asks for n proposals as n requests,
    dsr as one request with ``n``, and both get the same proposals in the same order."""

    def __init__(self):
        self.proposed = 0

    def __call__(self, request):
        if request.model != "prompt-model":
            return copro_responder(request)
        replies = []
        for _ in range(request.body.get("n", 1)):
            instruction = COPRO_PROPOSALS[self.proposed % len(COPRO_PROPOSALS)]
            replies.append(request.reply(proposed_instruction=instruction, proposed_prefix_for_output_field="Code:"))
            self.proposed += 1
        return replies


def test_the_stats_are_dspys_for_the_same_run(server, lm, dspy_python):  # noqa: F811 - the imported fixture
    server.responder = InTurn()
    run = subprocess.run([str(dspy_python), "-c", DSPY_COPRO, server.url], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    dspy_side = json.loads(run.stdout.splitlines()[-1])  # DSPy prints the prompt model's history first
    server.responder = InTurn()
    prompt_lm = dsr.LM("prompt-model", api_base=server.url)
    optimizer = COPRO(prompt_lm, metric, breadth=3, depth=2, track_stats=True)
    compiled = optimizer.compile(dsr.Predict("word -> code", lm=lm), trainset=dataset(6))
    assert dspy_side["instructions"] == compiled.signature.instructions == "Reverse the word, then uppercase it."
    assert dspy_side["results_best"] == list(compiled.results_best.values())  # DSPy's keys are id()s: values only
    assert dspy_side["results_latest"] == list(compiled.results_latest.values())
    assert dspy_side["total_calls"] == compiled.total_calls
