"""The ``dsr`` command as a user meets it: a real subprocess, its exit code and what it prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

from tests.programs import upper_answer, write_dataset

DSR = [sys.executable, "-m", "flows.cli"]
REPO = str(Path(__file__).resolve().parents[1])  # on PYTHONPATH: tests.programs is imported by reference


def run_dsr(args, cwd, timeout=300, **env):
    return subprocess.run(
        [*DSR, *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": REPO, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_config(workdir, server, **lm):
    write_dataset(workdir / "dev.jsonl", 6)
    lm_lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in {"num_retries": 1, **lm}.items())
    (workdir / "eval.toml").write_text(
        textwrap.dedent(f"""
        [program]
        ref = "tests.programs:QA"
        [data]
        dev = "dev.jsonl"
        input_keys = ["question"]
        [metric]
        ref = "tests.programs:exact_upper"
        [lm]
        model = "test-model"
        api_base = "{server.url}"
        """)
        + lm_lines
        + "\n"
    )
    return workdir / "eval.toml"


def test_an_error_found_before_the_run_is_one_line_and_costs_nothing(server, workdir):
    path = write_config(workdir, server, api_key_env="DSR_UNSET_KEY")
    result = run_dsr(["evaluate", str(path)], workdir)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: evaluation failed: run has 1 problem(s):")
    assert "lm.api_key_env: names DSR_UNSET_KEY, which is not set" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert server.stats.requests == 0


def test_an_error_inside_the_flow_is_one_line_with_the_log_named(server, workdir):
    server.responder = upper_answer
    server.inject("500", 1000, match=lambda r: r.inputs.get("question") is not None)  # the endpoint breaks
    path = write_config(workdir, server)
    result = run_dsr(["evaluate", str(path)], workdir)
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("error: evaluation failed: every one of the 6 examples failed with LMError"), lines
    assert lines[1].startswith("details: ") and len(lines) == 2, lines
    log = lines[1].removeprefix("details: ")
    text = open(log, encoding="utf-8").read()
    assert "Traceback" in text and "EvaluationFailed" in text  # the whole story is in the log file
    debug = run_dsr(["--debug", "evaluate", str(path)], workdir)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_serve_imports_programs_from_the_working_folder(server, workdir):
    """`dsr serve` finds a program defined in the folder it runs in, as evaluate and optimize do."""
    from tests.conftest import free_port

    project = workdir / "servedproj"
    project.mkdir()
    (project / "__init__.py").write_text("")
    (project / "program.py").write_text(
        "import dsr_core as dsr\n\n\nclass Echo(dsr.Module):\n"
        "    def __init__(self):\n        self.answer = dsr.Predict('question -> answer')\n\n"
        "    def forward(self, question):\n        return self.answer(question=question)\n"
    )
    save = (
        "import dsr_core as dsr; from servedproj.program import Echo; program = Echo(); "
        f"program.answer.lm = dsr.LM('test-model', api_base='{server.url}'); program.save('program.json')"
    )
    subprocess.run([sys.executable, "-c", save], cwd=workdir, check=True, env={**os.environ, "PYTHONPATH": REPO})
    port = free_port()
    # the installed `dsr` script, not `python -m`, which would put the working folder on sys.path by itself
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "dsr"), "serve", "program.json", "--port", str(port)],
        cwd=workdir,
        env={**os.environ, "PYTHONPATH": REPO},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + 120
        health = None
        while time.time() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    health = json.loads(response.read())
                    break
            except OSError:
                time.sleep(0.3)
        assert health is not None, process.stdout.read() if process.poll() is not None else "no answer"
        assert health["program"] == "Echo" and health["inputs"] == ["question"]
    finally:
        process.terminate()
        process.wait(30)


def test_program_graph_traces_a_saved_program_and_writes_a_picture(server, tmp_path):
    import dsr_core as dsr
    from tests.programs import RewriteThenAnswer

    server.responder = lambda request: request.reply(**{name: f"{name}!" for name in request.output_fields})
    program = RewriteThenAnswer()
    program.set_lm(dsr.LM("test-model", api_base=server.url))
    program.save(tmp_path / "rag.json")
    write_dataset(tmp_path / "dev.jsonl", 5)

    plain = run_dsr(["program", "graph", "rag.json"], tmp_path)
    assert plain.returncode != 0 and "was not saved as a graph; pass --examples" in plain.stderr

    done = run_dsr(["program", "graph", "rag.json", "--examples", "dev.jsonl", "--input-key", "question"], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "rewrite" in done.stdout and "answer.predict" in done.stdout and "2 LM calls per run" in done.stdout
    dot = (tmp_path / "rag.graph.dot").read_text()
    assert dot.startswith("digraph program {") and '"node:rewrite"' in dot
    assert server.stats.requests == 3 * 2  # traced on the first three rows (the --limit default), two calls each
