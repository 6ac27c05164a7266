"""PythonInterpreter: model-written Python in Pyodide inside Deno, with DSPy's results and errors, and Deno's
permissions as the sandbox (each test here starts real Deno processes; one start costs about two seconds)."""

from __future__ import annotations

import asyncio
import http.server
import os
import random
import signal
import sys
import threading
from collections import namedtuple

import pytest

import dsr_core as dsr
from dsr_core.interpreter import CodeExecutionError, CodeInterpreterError, FinalOutput, PythonInterpreter
from dsr_core.interpreter.sandbox import SLOTS
from tests.test_dspy_compat import dspy_python  # noqa: F401 - the fixture: DSPy 3.4.1's interpreter


@pytest.fixture(scope="module")
def shared():
    """One sandbox for the checks that leave no state another test reads."""
    with PythonInterpreter() as interpreter:
        yield interpreter


def test_results_are_dspys_printed_text_or_the_last_value(shared):
    assert shared.execute("print('Hello, World!')") == "Hello, World!\n"
    assert shared.execute("import math\nresult = math.sqrt(4)\nresult") == 2
    assert shared.execute("x = 1") == ""  # nothing printed, no value
    assert shared.execute("print('ignored')\n[1, 'a', {'k': None}]") == [1, "a", {"k": None}]
    assert shared("2 + 3") == 5  # calling it is execute


def test_state_persists_between_executions_and_variables_are_injected(shared):
    shared.execute("counter = 40")
    assert shared.execute("counter + number", variables={"number": 2}) == 42
    Point = namedtuple("Point", "x y")
    values = {"point": Point(1, 2), "tags": {"b", "a"}, "pair": (1, 2), "model": dsr.Example(a=1).toDict()}
    assert shared.execute("[point, tags, pair, model]", variables=values) == [
        {"x": 1, "y": 2},
        ["a", "b"],
        [1, 2],
        {"a": 1},
    ]
    with pytest.raises(CodeInterpreterError, match="invalid variable name 'class'"):
        shared.execute("1", variables={"class": 1})
    with pytest.raises(CodeInterpreterError, match="type object cannot be passed"):
        shared.execute("1", variables={"value": object()})


def test_errors_are_worded_as_dspys_python_interpreter_words_them(shared):
    with pytest.raises(SyntaxError, match="Invalid Python syntax"):
        shared.execute("+++")
    token = random.randint(1, 10**9)
    with pytest.raises(CodeExecutionError, match=rf"ValueError: \[{token}\]") as raised:
        shared.execute(f"def f():\n    raise ValueError({token})\nf()")
    assert "line 2, in f" in raised.value.traceback_text  # the code's own frames, for the one who fixes it
    with pytest.raises(CodeExecutionError, match=r"ZeroDivisionError: \['division by zero'\]"):
        shared.execute("1 + 0 / 0")
    assert shared.execute("'still alive'") == "still alive"  # an exception in the code ends nothing


def test_submit_ends_the_code_with_a_final_output(shared):
    assert shared.execute("SUBMIT({'answer': 4})\nprint('not reached')") == FinalOutput({"output": {"answer": 4}})
    with PythonInterpreter(output_fields=[{"name": "answer", "type": "int"}, {"name": "why"}]) as typed:
        assert typed.execute("SUBMIT(answer=6 * 7, why='math')") == FinalOutput({"answer": 42, "why": "math"})
        assert typed.execute("SUBMIT(1, 'two')") == FinalOutput({"answer": 1, "why": "two"})
        with pytest.raises(CodeExecutionError, match=r"SUBMIT takes the outputs \['answer', 'why'\]"):
            typed.execute("SUBMIT(answer=1)")


def test_host_tools_are_called_with_their_arguments_and_answer_in_json():
    seen = []

    def lookup(city: str, unit: str = "C") -> dict:
        seen.append((city, unit))
        return {"city": city, "temp": 21, "unit": unit}

    async def shout(text: str) -> str:
        await asyncio.sleep(0)
        return text.upper()

    def broken() -> str:
        raise KeyError("no such record")

    tools = {"lookup": lookup, "shout": shout, "broken": broken}
    with PythonInterpreter(tools=tools) as interpreter:
        assert interpreter.execute("lookup('Oslo')['temp'] + 1") == 22
        assert interpreter.execute("lookup(city='Rome', unit='F')") == {"city": "Rome", "temp": 21, "unit": "F"}
        assert interpreter.execute("shout('hi')") == "HI"  # an async tool is awaited on the host
        with pytest.raises(CodeExecutionError, match="KeyError: 'no such record'"):
            interpreter.execute("broken()")
        caught = "try:\n    broken()\nexcept RuntimeError as e:\n    r = str(e)\nr"
        assert "no such record" in interpreter.execute(caught)  # the code can handle a tool's failure
        with pytest.raises(CodeExecutionError, match="unexpected keyword argument|got an unexpected"):
            interpreter.execute("lookup('Oslo', colour='red')")
    assert seen == [("Oslo", "C"), ("Rome", "F")]


def test_a_tool_cannot_run_code_in_its_own_interpreter():
    holder = {}

    def reenter() -> str:
        return holder["interpreter"].execute("1")

    with PythonInterpreter(tools={"reenter": reenter}) as interpreter:
        holder["interpreter"] = interpreter
        with pytest.raises(CodeExecutionError, match="recursion"):
            interpreter.execute("reenter()")


def test_another_thread_waits_for_a_running_tool_instead_of_failing():
    """Calls from several threads are serialized: a call made while another thread's code is inside a tool waits
    (it is no recursion), and an async tool that re-enters its own interpreter is still caught."""
    in_tool, release = threading.Event(), threading.Event()

    def slow() -> str:
        in_tool.set()
        release.wait(30)
        return "slow done"

    async def reenter_async() -> str:
        return holder["interpreter"].execute("1")

    holder = {}
    with PythonInterpreter(tools={"slow": slow, "reenter_async": reenter_async}) as interpreter:
        holder["interpreter"] = interpreter
        results = {}
        first = threading.Thread(target=lambda: results.setdefault("first", interpreter.execute("slow()")))
        first.start()
        assert in_tool.wait(120)
        second = threading.Thread(target=lambda: results.setdefault("second", interpreter.execute("40 + 2")))
        second.start()
        release.set()
        first.join(120)
        second.join(120)
        assert results == {"first": "slow done", "second": 42}
        with pytest.raises(CodeExecutionError, match="recursion"):
            interpreter.execute("reenter_async()")


def test_files_environment_and_network_only_when_allowed(tmp_path, monkeypatch):
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    output = tmp_path / "out.txt"
    monkeypatch.setenv("DSR_SANDBOX_PROBE", "visible")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    read_host = (
        f"import js\ntry:\n    r = js.Deno.readTextFileSync({str(secret)!r})\nexcept Exception as e:\n    r = str(e)\nr"
    )
    fetch = f"import js\nr = await js.fetch({url!r})\nr.status"
    try:
        with PythonInterpreter() as closed:
            assert "NotCapable" in closed.execute(read_host)  # Deno refuses: no read permission
            assert closed.execute("import os\nos.environ.get('DSR_SANDBOX_PROBE')") == ""
            with pytest.raises(CodeExecutionError, match="NotCapable|net access"):
                closed.execute(fetch)
        with PythonInterpreter(
            enable_read_paths=[secret],
            enable_write_paths=[output],
            enable_env_vars=["DSR_SANDBOX_PROBE"],
            enable_network_access=[f"127.0.0.1:{server.server_address[1]}"],
        ) as open_:
            assert open_.execute("open('/sandbox/secret.txt').read()") == "top secret"
            assert open_.execute("import os\nos.environ['DSR_SANDBOX_PROBE']") == "visible"
            open_.execute("open('/sandbox/out.txt', 'w').write('from the sandbox')")
            assert output.read_text() == "from the sandbox"  # written back after the execution
            assert open_.execute(fetch) == 200
    finally:
        server.shutdown()


def test_a_runaway_execution_is_stopped_and_the_session_ends():
    before = SLOTS.running
    interpreter = PythonInterpreter(timeout=3)
    assert interpreter.execute("1 + 1") == 2
    with pytest.raises(CodeInterpreterError, match="no answer while running code within 3 s"):
        interpreter.execute("while True:\n    pass")
    with pytest.raises(CodeInterpreterError, match="session has ended"):
        interpreter.execute("1")
    assert SLOTS.running == before  # its slot was given back


def test_a_dead_process_is_a_terminal_error_naming_it():
    interpreter = PythonInterpreter()
    interpreter.start()
    os.kill(interpreter._process.pid, signal.SIGKILL)
    interpreter._process.wait()
    with pytest.raises(CodeInterpreterError, match="exited"):
        interpreter.execute("1")
    with pytest.raises(CodeInterpreterError, match="could not start '/nonexistent/deno'"):
        PythonInterpreter(deno_command=["/nonexistent/deno", "run", "x.js"]).execute("1")
    with pytest.raises(TypeError, match="list of strings"):
        PythonInterpreter(deno_command={"cmd": "deno"})


def test_at_most_max_sandboxes_run_at_once():
    before = SLOTS.running  # other tests' sandboxes (the shared one) count too
    first = PythonInterpreter()
    first.start()
    started = threading.Event()

    def start_second():
        second.start()
        started.set()

    second = PythonInterpreter()
    dsr.configure(max_sandboxes=before + 1)  # process-wide: the second start runs in another thread
    thread = threading.Thread(target=start_second)
    try:
        thread.start()
        assert not started.wait(2.0)  # waiting for the one slot
        assert SLOTS.running == before + 1
        first.shutdown()
        assert started.wait(120)
        assert second.execute("'second runs'") == "second runs"
    finally:
        dsr.configure(max_sandboxes=None)
        second.shutdown()
        thread.join()
    assert SLOTS.running == before


async def test_async_executions_run_off_the_event_loop_concurrently():
    interpreters = [PythonInterpreter() for _ in range(3)]
    ticks = 0

    async def tick():  # the loop keeps running while the sandboxes start and compute
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    try:
        results = await asyncio.gather(*(p.aexecute(f"sum(range({n}))") for n, p in enumerate(interpreters, 10)))
    finally:
        ticker.cancel()
        await asyncio.gather(*(p.ashutdown() for p in interpreters))
    assert results == [45, 55, 66]
    assert ticks > 10


# -- LocalInterpreter: DSPy's CPython worker --------------------------------------------------------------------

LOCAL_CASES = [
    {"code": "print('a')\nprint('b')"},
    {"code": "x = 40\nx + 2"},
    {"code": "value", "variables": {"value": [1, {"a": None}, "z"]}},
    {"code": "1 / 0"},
    {"code": "raise ValueError('bad', 2)"},
    {"code": "SUBMIT({'k': [1, 2]})"},
    {"code": "SUBMIT(answer=3, why='w')", "outputs": [{"name": "answer", "type": "int"}, {"name": "why"}]},
    {"code": "add(1)"},
    {"code": "add(1, b=5)"},
    {"code": "print(add(2))\nNone"},
    {"code": "+++"},
]

LOCAL_SIDE = r"""
def add(a: int, b: int = 2) -> int:
    return a + b


def run_local_cases(interpreter_class, final_type, execution_error, cases):
    results = []
    for case in cases:
        with interpreter_class(tools={"add": add}, output_fields=case.get("outputs")) as interpreter:
            try:
                result = interpreter.execute(case["code"], variables=case.get("variables"))
                results.append({"final": result.output} if isinstance(result, final_type) else {"value": result})
            except SyntaxError:
                results.append({"syntax_error": True})
            except execution_error as exc:
                results.append({"error": str(exc)})
    return results
"""


def test_local_interpreter_gives_dspys_local_interpreter_results(dspy_python):  # noqa: F811
    """The same code in DSPy 3.4.1's LocalInterpreter and in dsr's: the same values, printed text, final
    outputs, tool results and error texts."""
    import json
    import subprocess

    dspy_script = (
        "import json, sys\nfrom dspy import LocalInterpreter\n"
        "from dspy.primitives.code_interpreter import FinalOutput, CodeExecutionError\n"
        + LOCAL_SIDE
        + "print(json.dumps(run_local_cases(LocalInterpreter, FinalOutput, CodeExecutionError, json.load(sys.stdin))))"
    )
    run = subprocess.run(
        [str(dspy_python), "-c", dspy_script], input=json.dumps(LOCAL_CASES), capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-2000:]
    expected = json.loads(run.stdout.splitlines()[-1])
    namespace: dict = {}
    exec(LOCAL_SIDE, namespace)  # noqa: S102 - the same helper on dsr's side
    got = namespace["run_local_cases"](dsr.LocalInterpreter, FinalOutput, CodeExecutionError, LOCAL_CASES)
    assert got == expected
    assert expected[0] == {"value": "a\nb"} and expected[3] == {"error": "ZeroDivisionError: division by zero"}


def test_local_interpreter_runs_on_the_host_and_stops_a_runaway():
    with dsr.LocalInterpreter(execution_timeout=3) as local:
        assert local.execute("import sys\nsys.platform") == sys.platform  # not emscripten: no sandbox
        with pytest.raises(CodeInterpreterError, match="within 3 s"):
            local.execute("import subprocess\nsubprocess.run(['sleep', '60'])")
    with pytest.raises(ValueError, match="execution_timeout must be positive"):
        dsr.LocalInterpreter(execution_timeout=0)
