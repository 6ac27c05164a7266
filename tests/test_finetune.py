"""Fine-tuning as DSPy's: ``LM.finetune`` (OpenAI's files and fine-tuning jobs API through the real openai
client, against the test server), ``bootstrap_trace_data`` and ``BootstrapFinetune``; the training records
are compared with what the program sent and what the model answered, and with DSPy's own
``ChatAdapter.format_finetune_data``."""

from __future__ import annotations

import concurrent.futures
import json
import logging
import subprocess
import time

import pytest

import dsr_core as dsr
from dsr_core.adapters import ChatAdapter
from dsr_core.lm.finetune import (
    FinetuneError,
    FinetuneJobError,
    OpenAIProvider,
    Provider,
    TrainingStatus,
    infer_provider,
)
from dsr_core.optimizers import BootstrapFinetune, bootstrap_trace_data
from dsr_core.optimizers.bootstrap_finetune import FailedPrediction
from dsr_core.testing.server import ChatRequest, LMTestServer
from tests.test_dspy_compat import dspy_python  # noqa: F401 - the fixture: DSPy 3.4.1's interpreter

FAST = 0.01  # seconds between job polls
KEY = "sk-test-secret-0123456789"


class RewriteThenAnswer(dsr.Module):
    def __init__(self):
        self.rewrite = dsr.Predict("question -> query")
        self.answer = dsr.Predict("question, query -> answer")

    async def aforward(self, question):
        query = (await self.rewrite.acall(question=question)).query
        return await self.answer.acall(question=question, query=query)


def responder(request):
    """The base model: a query is the question prefixed, an answer the question upper-cased."""
    question = request.inputs.get("question", "")
    if request.output_fields == ["query"]:
        return request.reply(query=f"search {question}")
    return request.reply(answer=question.upper())


def wrong(request):
    """A model that has learned nothing: every field gets the same useless text."""
    return request.reply(**{name: "no idea" for name in request.output_fields})


def exact(example, prediction, trace=None):
    return prediction.answer == example.answer


TRAINSET = [
    dsr.Example(question="q0", answer="Q0").with_inputs("question"),
    dsr.Example(question="q1", answer="wrong label").with_inputs("question"),
    dsr.Example(question="q2", answer="Q2").with_inputs("question"),
    dsr.Example(question="q3", answer="wrong label").with_inputs("question"),
]


def make_lm(server, **kwargs):
    lm = dsr.LM("test-model", api_base=server.url, retry_backoff=(0.01, 0.05), timeout=10.0, **kwargs)
    lm.training_provider = OpenAIProvider(poll_interval=FAST)
    return lm


def student_on(lm):
    program = RewriteThenAnswer()
    program.set_lm(lm)
    return program


def uploaded(server, job):
    """The records of a job's training file, as the server received them."""
    content = server.files[job.training_file].content
    return [json.loads(line) for line in content.decode().splitlines()]


@pytest.fixture
def ft_server():
    with LMTestServer(responder) as server:
        yield server


# -- the training data -------------------------------------------------------------------------------------------


def test_training_records_are_the_prompts_sent_and_the_replies_received(ft_server):
    """Every record is one predictor call the teacher made: its messages exactly as the program sent them,
    then the model's reply as the assistant message; and DSPy's record format (role/content messages)."""
    lm = make_lm(ft_server)
    BootstrapFinetune().compile(student_on(lm), trainset=TRAINSET)
    (job,) = ft_server.jobs.values()
    records = uploaded(ft_server, job)
    assert len(records) == 2 * len(TRAINSET)  # no metric: every call of every example
    assert all(set(record) == {"messages"} for record in records)
    sent = [body["messages"] for body in ft_server.requests]
    for record in records:
        *prompt, answer = record["messages"]
        assert prompt in sent  # exactly the messages of one request the program made
        assert answer["role"] == "assistant"
        assert answer["content"].strip() == responder(ChatRequest({"messages": prompt})).strip()  # its reply
        assert all(set(m) == {"role", "content"} for m in record["messages"])
    contents = {m["content"] for record in records for m in record["messages"] if m["role"] == "assistant"}
    assert "[[ ## query ## ]]\nsearch q1\n\n[[ ## completed ## ]]\n" in contents
    assert "[[ ## answer ## ]]\nQ2\n\n[[ ## completed ## ]]\n" in contents


def test_records_match_format_finetune_data_of_each_call(ft_server):
    """The records are ``format_finetune_data`` of the traced calls: signature, inputs and outputs of each."""
    lm = make_lm(ft_server)
    program = student_on(lm)
    traces = bootstrap_trace_data(program, TRAINSET, num_threads=2)
    expected = [
        ChatAdapter().format_finetune_data(pred.signature, [], inputs, outputs)
        for item in traces
        for pred, inputs, outputs in item["trace"]
    ]
    BootstrapFinetune().compile(program, trainset=TRAINSET)
    records = uploaded(ft_server, next(iter(ft_server.jobs.values())))
    key = lambda r: json.dumps(r, sort_keys=True)  # noqa: E731 - records are shuffled (random.Random(0), as DSPy)
    assert sorted(map(key, records)) == sorted(map(key, expected))


def test_the_metric_keeps_only_accepted_traces(ft_server):
    lm = make_lm(ft_server)
    BootstrapFinetune(metric=exact).compile(student_on(lm), trainset=TRAINSET)
    records = uploaded(ft_server, next(iter(ft_server.jobs.values())))
    assert len(records) == 4  # q0 and q2 pass the metric; two calls each
    text = json.dumps(records)
    assert "q0" in text and "q2" in text
    assert "q1" not in text and "q3" not in text


def test_multitask_is_one_job_per_lm_and_per_predictor_is_one_job_each(ft_server):
    lm = make_lm(ft_server)
    BootstrapFinetune(metric=exact, train_kwargs={"n_epochs": 3}).compile(student_on(lm), trainset=TRAINSET)
    assert ft_server.stats.fine_tuning_jobs == 1
    assert next(iter(ft_server.jobs.values())).hyperparameters == {"n_epochs": 3}

    ft_server.jobs.clear()
    program = BootstrapFinetune(metric=exact, multitask=False).compile(student_on(make_lm(ft_server)), TRAINSET)
    assert len(ft_server.jobs) == 2
    per_job = [uploaded(ft_server, job) for job in ft_server.jobs.values()]
    assert [len(records) for records in per_job] == [2, 2]
    systems = [{r["messages"][0]["content"] for r in records} for records in per_job]
    assert all(len(s) == 1 for s in systems)  # each job has one predictor's calls only
    outputs = {next(iter(system)).split("Your output fields are:\n1. ")[1].split(" ")[0] for system in systems}
    assert outputs == {"`query`", "`answer`"}  # the jobs start at once: in either order
    assert program.rewrite.lm.model != program.answer.lm.model  # each predictor its own fine-tuned model


def test_exclude_demos_trains_and_runs_without_them(ft_server):
    lm = make_lm(ft_server)
    program = student_on(lm)
    program.answer.demos = [{"question": "demo question", "query": "demo query", "answer": "DEMO"}]
    BootstrapFinetune(exclude_demos=True).compile(program, trainset=TRAINSET[:1])
    records = uploaded(ft_server, next(iter(ft_server.jobs.values())))
    assert "demo question" not in json.dumps(records)
    assert program.answer.demos == []

    ft_server.jobs.clear()
    program = student_on(make_lm(ft_server))
    program.answer.demos = [{"question": "demo question", "query": "demo query", "answer": "DEMO"}]
    BootstrapFinetune().compile(program, trainset=TRAINSET[:1])
    records = uploaded(ft_server, next(iter(ft_server.jobs.values())))
    assert "demo question" in json.dumps(records)  # kept: the prompts the program sends have them
    assert len(program.answer.demos) == 1


# -- the fine-tuned program --------------------------------------------------------------------------------------


def test_the_fine_tuned_program_answers_from_its_training_data(ft_server):
    lm = make_lm(ft_server)
    program = BootstrapFinetune(metric=exact).compile(student_on(lm), trainset=TRAINSET)
    (job,) = ft_server.jobs.values()
    assert job.status == "succeeded"
    assert {p.lm.model for p in program.predictors()} == {job.fine_tuned_model}
    assert program.rewrite.lm.api_base == lm.api_base
    assert program._compiled
    ft_server.responder = wrong  # the base model has forgotten everything: only the training data answers
    before = ft_server.stats.fine_tuned_answers
    assert program(question="q2").answer == "Q2"
    assert ft_server.stats.fine_tuned_answers == before + 2  # both calls answered from the uploaded records
    assert program(question="q1").answer == "no idea"  # rejected by the metric: never trained on


def test_save_and_load_keep_the_fine_tuned_model(ft_server, tmp_path):
    lm = make_lm(ft_server)
    program = BootstrapFinetune(metric=exact).compile(student_on(lm), trainset=TRAINSET)
    path = tmp_path / "program.json"
    program.save(path)
    loaded = RewriteThenAnswer()
    loaded.load(path)
    (job,) = ft_server.jobs.values()
    assert [p.lm.model for p in loaded.predictors()] == [job.fine_tuned_model] * 2
    assert json.loads(path.read_text())["rewrite"]["lm"]["model"] == f"openai/{job.fine_tuned_model}"
    ft_server.responder = wrong
    assert loaded(question="q0").answer == "Q0"


# -- LM.finetune and the job -------------------------------------------------------------------------------------


def record(question, answer):
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def test_job_lifecycle(ft_server):
    lm = make_lm(ft_server)
    job = lm.finetune([record("hello", "world")], train_kwargs={"n_epochs": 1})
    assert isinstance(job, concurrent.futures.Future)
    fine_tuned = job.result()
    assert job.done() and not job.cancelled()
    remote = ft_server.jobs[job.provider_job_id]
    assert remote.status == "succeeded" and remote.model == "test-model"
    assert remote.hyperparameters == {"n_epochs": 1}
    assert remote.polls >= 4  # queued, running, running, succeeded: one poll each
    assert ft_server.stats.fine_tuning_polls == remote.polls
    assert job.status() is TrainingStatus.succeeded
    assert fine_tuned.model == remote.fine_tuned_model
    assert fine_tuned.api_base == lm.api_base and fine_tuned.temperature == lm.temperature
    assert fine_tuned("hello") == ["world"]


def test_status_progresses_while_the_job_runs(ft_server):
    lm = make_lm(ft_server)
    lm.training_provider = OpenAIProvider(poll_interval=3600)  # the job's own thread polls once, then waits
    job = lm.finetune([record("a", "b")])
    while job.provider_job_id is None:
        time.sleep(FAST)
    seen = [job.status() for _ in range(4)]
    assert seen[0] in (TrainingStatus.pending, TrainingStatus.running)
    assert seen[-1] is TrainingStatus.succeeded
    assert TrainingStatus.running in seen
    job.cancel_requested.set()  # let the thread go (it reports the wait cut short)
    job.thread.join()


def test_cancel_stops_the_remote_job_and_deletes_its_file(ft_server):
    lm = make_lm(ft_server)
    lm.training_provider = OpenAIProvider(poll_interval=3600)
    job = lm.finetune([record("a", "b")])
    while job.provider_job_id is None:
        time.sleep(FAST)
    file_id = job.provider_file_id
    assert job.cancel()
    assert job.cancelled()
    assert ft_server.jobs[job.provider_job_id].status == "cancelled"
    assert file_id not in ft_server.files
    assert ft_server.stats.fine_tuning_cancels == 1
    with pytest.raises(concurrent.futures.CancelledError):
        job.result()
    job.thread.join()


def test_cancelling_a_finished_job_is_an_error_naming_it(ft_server):
    lm = make_lm(ft_server)
    job = lm.finetune([record("a", "b")])
    job.result()
    with pytest.raises(FinetuneError, match=f"Job with ID {job.provider_job_id} is done"):
        job.cancel()


def test_a_failed_job_raises_with_its_id_status_and_message(ft_server):
    lm = make_lm(ft_server)
    ft_server.fail_jobs("training data has too few examples")
    job = lm.finetune([record("a", "b")])
    with pytest.raises(FinetuneJobError) as caught:
        job.result()
    error = caught.value
    assert (error.job_id, error.status) == (job.provider_job_id, "failed")
    assert error.server_message == "training data has too few examples"
    assert job.provider_job_id in str(error) and "'failed'" in str(error) and "too few examples" in str(error)

    ft_server.fail_jobs("out of capacity")
    with pytest.raises(FinetuneJobError, match="out of capacity"):
        BootstrapFinetune().compile(student_on(lm), trainset=TRAINSET[:1])


def test_a_training_file_that_is_not_chat_data_fails_the_job(ft_server):
    lm = make_lm(ft_server)
    job = lm.finetune([{"messages": [{"role": "user", "content": "no answer"}]}])
    with pytest.raises(FinetuneJobError, match="does not end with an assistant message"):
        job.result()


def test_the_api_key_is_in_no_file_error_or_log(caplog):
    caplog.set_level(logging.DEBUG)
    with LMTestServer(responder, api_key=KEY) as server:
        lm = make_lm(server, api_key=KEY)
        program = BootstrapFinetune().compile(student_on(lm), trainset=TRAINSET[:2])
        assert program.rewrite.lm.model.startswith("ft:")
        (job,) = server.jobs.values()
        assert KEY.encode() not in server.files[job.training_file].content
        assert server.stats.last_headers["authorization"] == f"Bearer {KEY}"  # it was sent, as it must be

        wrong_key = "sk-wrong-secret-9876543210"
        rejected = make_lm(server, api_key=wrong_key)  # the server echoes the key it was sent in its 401
        with pytest.raises(FinetuneError) as caught:
            rejected.finetune([record("a", "b")]).result()
        assert "401" in str(caught.value)
        assert wrong_key not in str(caught.value) and wrong_key not in repr(caught.value)
        server.fail_jobs(f"the key {KEY} may not fine-tune")  # a server message quoting the key
        with pytest.raises(FinetuneJobError) as failed:
            lm.finetune([record("a", "b")]).result()
        assert KEY not in str(failed.value) and KEY not in (failed.value.server_message or "")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "401" in logged
    assert KEY not in logged and wrong_key not in logged


def test_a_provider_without_fine_tuning_is_refused_before_any_request(ft_server):
    lm = dsr.LM("anthropic/claude-sonnet-4-5", api_key="x")
    with pytest.raises(FinetuneError, match="does not support fine-tuning"):
        lm.finetune([record("a", "b")])
    assert ft_server.stats.file_uploads == 0
    assert type(infer_provider(lm)) is Provider
    # DSPy's rule on the prefixed name: any model on an OpenAI-compatible endpoint, and OpenAI's ft: models
    assert isinstance(infer_provider(dsr.LM("test-model", api_base=ft_server.url)), OpenAIProvider)
    assert isinstance(infer_provider(dsr.LM("ft:gpt-4o-mini:org::abc", api_key="x")), OpenAIProvider)
    with pytest.raises(FinetuneError, match="data format"):
        make_lm(ft_server).finetune([record("a", "b")], train_data_format="grpo_chat").result()


# -- BootstrapFinetune's checks and bootstrap_trace_data ----------------------------------------------------------


def test_a_predictor_without_an_lm_is_an_error_before_any_call(ft_server):
    program = RewriteThenAnswer()
    program.rewrite.lm = make_lm(ft_server)
    with pytest.raises(ValueError, match=r"Predictor 1 \('answer'\) does not have an LM assigned.*set_lm"):
        BootstrapFinetune().compile(program, trainset=TRAINSET)
    assert ft_server.stats.requests == 0


def test_a_teacher_must_match_the_student(ft_server):
    lm = make_lm(ft_server)
    student = student_on(lm)
    other = dsr.Predict("question -> answer", lm=lm)
    with pytest.raises(ValueError, match="same number of predictors"):
        BootstrapFinetune().compile(student, trainset=TRAINSET, teacher=other)
    with pytest.raises(ValueError, match="share the following predictor"):
        BootstrapFinetune().compile(student, trainset=TRAINSET, teacher=student)
    assert ft_server.stats.requests == 0


def test_too_few_threads_for_the_jobs_is_an_error(ft_server):
    with pytest.raises(ValueError, match="There are 2 fine-tuning jobs to start, but the number of threads is: 1"):
        BootstrapFinetune(multitask=False, num_threads=1).compile(student_on(make_lm(ft_server)), TRAINSET[:1])
    assert ft_server.stats.fine_tuning_jobs == 0


def test_a_teacher_s_traces_train_the_student(ft_server):
    lm = make_lm(ft_server)
    teacher = student_on(lm)
    teacher.answer.signature = teacher.answer.signature.with_instructions("Answer as the teacher does.")
    student = BootstrapFinetune().compile(student_on(lm), trainset=TRAINSET[:1], teacher=teacher)
    records = uploaded(ft_server, next(iter(ft_server.jobs.values())))
    assert "Answer as the teacher does." in json.dumps(records)
    assert student.answer.lm.model.startswith("ft:")


def test_bootstrap_trace_data_records(ft_server):
    program = student_on(make_lm(ft_server))
    data = bootstrap_trace_data(program, TRAINSET, metric=exact, num_threads=2)
    assert [d["example_ind"] for d in data] == [0, 1, 2, 3]
    assert [d["score"] for d in data] == [True, False, True, False]
    first = data[0]
    assert first["example"] is TRAINSET[0]
    assert first["prediction"].answer == "Q0"
    assert [(pred, inputs) for pred, inputs, _ in first["trace"]] == [
        (program.rewrite, {"question": "q0"}),
        (program.answer, {"question": "q0", "query": "search q0"}),
    ]
    assert "score" not in bootstrap_trace_data(program, TRAINSET[:1])[0]  # no metric, no score (DSPy's)


def test_bootstrap_trace_data_failures(ft_server):
    program = student_on(make_lm(ft_server, num_retries=0))
    only_q1 = lambda request: request.inputs.get("question") == "q1"  # noqa: E731
    ft_server.inject("400", match=only_q1)
    with pytest.raises(RuntimeError, match="example 1 failed"):
        bootstrap_trace_data(program, TRAINSET[:2], metric=exact)
    ft_server.inject("400", match=only_q1)
    data = bootstrap_trace_data(program, TRAINSET[:2], metric=exact, raise_on_error=False)
    assert [d["example_ind"] for d in data] == [0]

    ft_server.inject("unparseable", times=2, match=only_q1)  # the reply and ChatAdapter's JSON retry
    data = bootstrap_trace_data(program, TRAINSET[:2], metric=exact, format_failure_score=-1)
    failed = data[1]
    assert isinstance(failed["prediction"], FailedPrediction)
    assert failed["score"] == -1
    assert failed["trace"][-1][0] is program.rewrite
    assert failed["prediction"].completion_text == "I'd rather not follow any format."


class Bug(dsr.Module):
    async def aforward(self, question):
        raise RuntimeError("a real code failure")


def test_capture_crashes_captures_program_bugs_but_not_lm_errors(ft_server):
    example = TRAINSET[:1]
    (data,) = bootstrap_trace_data(Bug(), example, capture_crashes=True)
    assert isinstance(data["prediction"], FailedPrediction)
    assert "RuntimeError: a real code failure" in data["prediction"].completion_text
    with pytest.raises(RuntimeError, match="example 0 failed"):
        bootstrap_trace_data(Bug(), example)

    ft_server.inject("400")  # an LM error is the endpoint's, not the program's: never a FailedPrediction
    flaky = student_on(make_lm(ft_server, num_retries=0))
    assert bootstrap_trace_data(flaky, example, capture_crashes=True, raise_on_error=False) == []


# -- DSPy's module paths and its own formatting ------------------------------------------------------------------


def test_dspy_module_paths():
    from concurrent.futures import Future

    from dsr_core.clients import Provider, TrainingJob
    from dsr_core.clients.openai import OpenAIProvider as FromOpenAI
    from dsr_core.clients.provider import TrainingJob as FromProvider
    from dsr_core.clients.utils_finetune import TrainDataFormat, infer_data_format
    from dsr_core.teleprompt import BootstrapFinetune as FromTeleprompt
    from dsr_core.teleprompt.bootstrap_finetune import BootstrapFinetune as FromModule
    from dsr_core.teleprompt.bootstrap_trace import bootstrap_trace_data as trace_data

    assert FromTeleprompt is FromModule is BootstrapFinetune
    assert trace_data is bootstrap_trace_data
    assert FromProvider is TrainingJob and issubclass(TrainingJob, Future)
    assert issubclass(FromOpenAI, Provider) and FromOpenAI is OpenAIProvider
    assert infer_data_format(ChatAdapter()) is TrainDataFormat.CHAT
    assert infer_data_format(dsr.JSONAdapter()) is TrainDataFormat.CHAT
    with pytest.raises(ValueError, match="Could not infer the data format"):
        infer_data_format(dsr.TwoStepAdapter(dsr.LM("test-model", api_base="http://127.0.0.1:1/v1")))


PARITY_CASE = {
    "signature": "question, context: list[str] -> reasoning, answer: int",
    "instructions": "Answer the question from the context.",
    "demos": [
        {"question": "1+1?", "context": ["arithmetic"], "reasoning": "one and one", "answer": 2},
        {"question": "2+3?", "answer": 5},  # a partial demo: some fields missing
    ],
    "inputs": {"question": "3+4?", "context": ["sums", "small numbers"]},
    "outputs": {"reasoning": "three and four", "answer": 7},
}

DSPY_FORMAT = r"""
import json, sys
import dspy
case = json.load(sys.stdin)
signature = dspy.Signature(case["signature"], case["instructions"])
for adapter in (dspy.ChatAdapter(), dspy.XMLAdapter()):
    print(json.dumps(adapter.format_finetune_data(signature, case["demos"], case["inputs"], case["outputs"])))
"""


def test_format_finetune_data_is_dspys(dspy_python):  # noqa: F811 - the imported fixture
    """ChatAdapter's records (and XMLAdapter's, which inherits them) are DSPy's, demos and all. (DSPy's
    JSONAdapter raises NotImplementedError here; dsr's formats its own messages the same way.)"""
    run = subprocess.run(
        [str(dspy_python), "-c", DSPY_FORMAT], input=json.dumps(PARITY_CASE), capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    theirs = [json.loads(line) for line in run.stdout.splitlines()]
    signature = dsr.Signature(PARITY_CASE["signature"], PARITY_CASE["instructions"])
    ours = [
        adapter.format_finetune_data(signature, PARITY_CASE["demos"], PARITY_CASE["inputs"], PARITY_CASE["outputs"])
        for adapter in (ChatAdapter(), dsr.XMLAdapter())
    ]
    assert ours == theirs


# -- BetterTogether -----------------------------------------------------------------------------------------------


def teacher_knows(request):
    """Only the teacher's model answers right; the student's base model knows nothing."""
    return responder(request) if request.model == "teacher-model" else wrong(request)


def test_better_together_keeps_the_best_candidate():
    from dsr_core.teleprompt import BetterTogether
    from dsr_core.teleprompt.bettertogether import BetterTogether as FromModule

    assert FromModule is BetterTogether
    good = [example for example in TRAINSET if exact(example, dsr.Prediction(answer=example.question.upper()))]
    with LMTestServer(teacher_knows) as server:
        teacher = student_on(make_lm(server).copy(model="teacher-model"))
        optimizer = BetterTogether(metric=exact, w=BootstrapFinetune(metric=exact))
        program = optimizer.compile(
            student_on(make_lm(server)), trainset=good, valset=good, teacher=teacher, strategy="w", seed=0
        )
        assert [(c["strategy"], c["score"]) for c in program.candidate_programs] == [("w", 100.0), ("", 0.0)]
        assert program.flag_compilation_error_occurred is False
        assert program._compiled
        (job,) = server.jobs.values()
        assert program.answer.lm.model == job.fine_tuned_model
        assert program(question="q2").answer == "Q2"  # from the teacher's traces, through the fine-tuned model


def test_better_together_chains_steps_and_stops_at_a_failed_one(ft_server):
    from dsr_core.optimizers import BetterTogether, LabeledFewShot

    good = [example for example in TRAINSET if exact(example, dsr.Prediction(answer=example.question.upper()))]
    lm = make_lm(ft_server)
    optimizer = BetterTogether(metric=exact, p=LabeledFewShot(k=1), w=BootstrapFinetune(metric=exact))
    program = optimizer.compile(student_on(lm), trainset=good, valset=good, strategy="p -> w")
    assert [c["strategy"] for c in program.candidate_programs] == ["", "p", "p -> w"]  # a tie: the earliest first
    assert program.rewrite.lm is lm  # the best (the baseline) keeps the live LM
    chained = program.candidate_programs[2]["program"]
    assert len(chained.answer.demos) == 1 and chained.answer.lm.model.startswith("ft:")  # p's demos, then w

    ft_server.fail_jobs("no capacity")
    program = optimizer.compile(student_on(lm), trainset=good, valset_ratio=0, strategy="p -> w")
    assert program.flag_compilation_error_occurred is True
    assert [c["strategy"] for c in program.candidate_programs] == ["", "p"]  # no valset: the scores are None
    assert len(program.answer.demos) == 1  # without a valset the latest program is returned


def test_better_together_checks_its_arguments(ft_server):
    from dsr_core.optimizers import BetterTogether, LabeledFewShot

    lm = make_lm(ft_server)
    optimizer = BetterTogether(metric=exact, p=LabeledFewShot(k=1))
    with pytest.raises(TypeError, match="Optimizer 'x' must be a Teleprompter"):
        BetterTogether(metric=exact, x=object())
    with pytest.raises(ValueError, match=r"invalid optimizer keys: \['w'\]"):
        optimizer.compile(student_on(lm), trainset=TRAINSET, strategy="p -> w")
    with pytest.raises(ValueError, match="'student' is not allowed"):
        optimizer.compile(student_on(lm), trainset=TRAINSET, strategy="p", optimizer_compile_args={"p": {"student": 1}})
    with pytest.raises(ValueError, match="valset_ratio must be in range"):
        optimizer.compile(student_on(lm), trainset=TRAINSET, strategy="p", valset_ratio=1)
    with pytest.raises(ValueError, match=r"these have none: \['rewrite', 'answer'\]"):
        optimizer.compile(RewriteThenAnswer(), trainset=TRAINSET, strategy="p")
    assert ft_server.stats.requests == 0
