"""Callbacks (DSPy's BaseCallback): from settings and per instance, on modules and LMs, with call ids."""

import pytest

import dsr_core as dsr
from dsr_core.callback import ACTIVE_CALL_ID, BaseCallback, with_callbacks
from tests.programs import RewriteThenAnswer


class Recorder(BaseCallback):
    def __init__(self):
        self.calls = []

    def on_module_start(self, call_id, instance, inputs):
        self.calls.append(("module_start", type(instance).__name__, inputs, ACTIVE_CALL_ID.get()))

    def on_module_end(self, call_id, outputs, exception):
        self.calls.append(("module_end", outputs, exception))

    def on_lm_start(self, call_id, instance, inputs):
        self.calls.append(("lm_start", instance, inputs))

    def on_lm_end(self, call_id, outputs, exception):
        self.calls.append(("lm_end", outputs, exception))


def kinds(recorder):
    return [c[0] for c in recorder.calls]


def test_with_callbacks_sees_arguments_results_and_errors():
    class Target(dsr.Module):
        @with_callbacks
        def forward(self, x, y, z=3):
            if x < 0:
                raise ValueError("negative")
            return x + y + z

    recorder = Recorder()
    dsr.configure(callbacks=[recorder])
    assert Target().forward(1, y=2) == 6
    assert recorder.calls[0][2] == {"x": 1, "y": 2, "z": 3} and recorder.calls[1][1] == 6
    with pytest.raises(ValueError):
        Target().forward(-1, 2)
    assert isinstance(recorder.calls[-1][2], ValueError) and recorder.calls[-1][1] is None


def test_instance_callbacks_and_a_failing_handler_never_break_the_call(caplog):
    class Broken(BaseCallback):
        def on_module_start(self, call_id, instance, inputs):
            raise RuntimeError("handler bug")

    class Target(dsr.Module):
        def forward(self, x):
            return x * 2

    recorder = Recorder()
    assert Target(callbacks=[Broken(), recorder])(x=4) == 8
    assert kinds(recorder) == ["module_start", "module_end"]
    assert "handler bug" in caplog.text
    assert Target()(x=1) == 2 and len(recorder.calls) == 2  # another instance: not observed


def test_nested_modules_get_parent_call_ids():
    class Child(dsr.Module):
        def forward(self):
            return None

    class Parent(dsr.Module):
        def __init__(self):
            self.a, self.b = Child(), Child()

        def forward(self):
            self.a()
            self.b()

    ids = []

    class Ids(BaseCallback):
        def on_module_start(self, call_id, instance, inputs):
            ids.append((call_id, ACTIVE_CALL_ID.get()))

    dsr.configure(callbacks=[Ids()])
    Parent()()
    assert len({c for c, _ in ids}) == 3
    assert [parent for _, parent in ids] == [None, ids[0][0], ids[0][0]]
    assert ACTIVE_CALL_ID.get() is None


async def test_program_run_reports_modules_and_lm_calls(server, lm):
    server.responder = lambda r: r.reply(**{n: "x" for n in r.output_fields})
    recorder = Recorder()
    program = RewriteThenAnswer()
    program.set_lm(lm)
    with dsr.context(callbacks=[recorder]):
        await program.acall(question="q")
    assert kinds(recorder) == [
        "module_start",  # the program
        "module_start",  # rewrite
        "lm_start",
        "lm_end",
        "module_end",
        "module_start",  # answer (ChainOfThought)
        "module_start",  # answer.predict
        "lm_start",
        "lm_end",
        "module_end",
        "module_end",
        "module_end",
    ]
    assert recorder.calls[0][2] == {"args": (), "kwargs": {"question": "q"}}
    lm_start = recorder.calls[2]
    assert lm_start[1] is lm and lm_start[2]["messages"][0]["role"] == "system"
    assert recorder.calls[3][1] == lm.history[0]["outputs"]
    assert recorder.calls[3][1][0].startswith("[[ ## query ## ]]\nx") and recorder.calls[3][2] is None
    assert recorder.calls[-1][1].answer == "x"
    await program.acall(question="q")  # outside the context: nothing more recorded
    assert len(recorder.calls) == 12


def test_lm_callbacks_per_instance(server):
    server.responder = lambda r: r.reply(answer="ok")
    recorder = Recorder()
    lm = dsr.LM("m", api_base=server.url, callbacks=[recorder])
    assert len(lm("hello")) == 1
    assert kinds(recorder) == ["lm_start", "lm_end"]
    assert recorder.calls[0][2]["prompt"] == "hello" and recorder.calls[1][1] == lm.history[-1]["outputs"]


class AdapterRecorder(BaseCallback):
    def __init__(self):
        self.calls = []

    def on_adapter_format_start(self, call_id, instance, inputs):
        self.calls.append(("format_start", type(instance).__name__, inputs))

    def on_adapter_format_end(self, call_id, outputs, exception):
        self.calls.append(("format_end", outputs, exception))

    def on_adapter_parse_start(self, call_id, instance, inputs):
        self.calls.append(("parse_start", type(instance).__name__, inputs))

    def on_adapter_parse_end(self, call_id, outputs, exception):
        self.calls.append(("parse_end", outputs, exception))

    def on_tool_start(self, call_id, instance, inputs):
        self.calls.append(("tool_start", instance, inputs))

    def on_tool_end(self, call_id, outputs, exception):
        self.calls.append(("tool_end", outputs, exception))

    def on_evaluate_start(self, call_id, instance, inputs):
        self.calls.append(("evaluate_start", instance, inputs))

    def on_evaluate_end(self, call_id, outputs, exception):
        self.calls.append(("evaluate_end", outputs, exception))


@pytest.mark.parametrize("adapter_class", [dsr.ChatAdapter, dsr.JSONAdapter])
def test_adapter_format_and_parse_report_once_per_predict_call(server, lm, adapter_class):
    server.responder = lambda r: r.reply(answer="ok")
    recorder = AdapterRecorder()
    dsr.configure(lm=lm, adapter=adapter_class(), callbacks=[recorder])
    assert dsr.Predict("question -> answer")(question="q").answer == "ok"
    assert kinds(recorder) == ["format_start", "format_end", "parse_start", "parse_end"]
    format_start, format_end, parse_start, parse_end = recorder.calls
    assert format_start[1] == adapter_class.__name__
    assert set(format_start[2]) == {"signature", "demos", "inputs"} and format_start[2]["inputs"] == {"question": "q"}
    assert format_end[1][0]["role"] == "system" and format_end[2] is None
    assert set(parse_start[2]) == {"signature", "completion"} and parse_end[1] == {"answer": "ok"}


def test_an_override_calling_super_still_reports_once(server, lm):
    class Mine(dsr.ChatAdapter):
        def format(self, signature, demos, inputs):
            return super().format(signature, demos, inputs)

        def parse(self, signature, completion):
            return super().parse(signature, completion)

    server.responder = lambda r: r.reply(answer="ok")
    recorder = AdapterRecorder()
    dsr.configure(lm=lm, adapter=Mine(callbacks=[recorder]))
    dsr.Predict("question -> answer")(question="q")
    assert kinds(recorder) == ["format_start", "format_end", "parse_start", "parse_end"]


def test_tool_calls_report_to_tool_handlers():
    recorder = AdapterRecorder()
    dsr.configure(callbacks=[recorder])
    tool = dsr.Tool(lambda x: x * 2, name="double")
    assert tool(x=3) == 6
    assert recorder.calls == [("tool_start", tool, {"kwargs": {"x": 3}}), ("tool_end", 6, None)]


async def test_async_tool_calls_report_to_tool_handlers():
    recorder = AdapterRecorder()
    tool = dsr.Tool(lambda x: x + 1, name="inc")
    with dsr.context(callbacks=[recorder]):
        assert await tool.acall(x=1) == 2
    assert kinds(recorder) == ["tool_start", "tool_end"] and recorder.calls[1][1] == 2


def test_evaluate_reports_to_evaluate_handlers(server, lm):
    server.responder = lambda r: r.reply(answer="a")
    recorder = AdapterRecorder()
    dsr.configure(lm=lm, callbacks=[recorder])
    devset = [dsr.Example(question="q", answer="a").with_inputs("question")]
    evaluate = dsr.Evaluate(devset=devset, metric=lambda e, p, t=None: e.answer == p.answer, num_threads=1)
    result = evaluate(dsr.Predict("question -> answer"))
    assert kinds(recorder) == [
        "evaluate_start",
        "format_start",
        "format_end",
        "parse_start",
        "parse_end",
        "evaluate_end",
    ]
    start, end = recorder.calls[0], recorder.calls[-1]
    assert start[1] is evaluate and "program" in start[2] and "devset" in start[2]
    assert end[1] is result and end[2] is None and result.score == 100.0
