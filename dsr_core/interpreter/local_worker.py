"""The worker process of ``LocalInterpreter``: plain CPython, run as ``python -I local_worker.py``.

It speaks the protocol of the Deno sandbox's runner (``runner.js``): one JSON object per line, requests from
the host on stdin, answers on the process's original stdout, and ``tool_call`` requests to the host while
code runs. It imports nothing from dsr, so the code it runs sees a bare interpreter. What the code prints
(including what C extensions and child processes write to file descriptors 1 and 2) is captured into a
temporary file, so it can never be mistaken for a protocol line.

It is no sandbox: the code has the files, environment, network and processes of the user running it.
"""

from __future__ import annotations

import ast
import builtins
import json
import os
import sys
import tempfile
import threading
import traceback
from typing import Any

_PROTOCOL = os.fdopen(os.dup(1), "w", encoding="utf-8")  # the host reads this; fd 1 itself is the code's
_LOCK = threading.Lock()  # a tool call from one of the code's threads waits for another's to be answered


def _silence() -> None:
    sink = os.open(os.devnull, os.O_WRONLY)
    os.dup2(sink, 1)
    os.dup2(sink, 2)
    os.close(sink)


def send(message: dict[str, Any]) -> None:
    _PROTOCOL.write(json.dumps(message, default=repr) + "\n")
    _PROTOCOL.flush()


def receive() -> dict[str, Any] | None:
    line = sys.stdin.readline()
    return json.loads(line) if line else None


class Submitted(BaseException):
    """SUBMIT's way out of the code: a final output, not an error."""


def jsonable(value: Any) -> Any:
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return repr(value)


class Session:
    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
        self.outputs: list[str] | None = None
        self.namespace["SUBMIT"] = self.submit
        self.calls = 0

    def submit(self, *args: Any, **kwargs: Any) -> None:
        if self.outputs is None:
            if len(args) != 1 or kwargs:
                raise TypeError("SUBMIT takes one output value")
            raise Submitted({"output": args[0]})
        values = dict(zip(self.outputs, args, strict=False))
        values.update(kwargs)
        if set(values) != set(self.outputs) or len(args) > len(self.outputs):
            raise TypeError(f"SUBMIT takes the outputs {self.outputs}")
        raise Submitted(values)

    def tool(self, name: str, parameters: list[dict[str, Any]]) -> Any:
        names = [p["name"] for p in parameters]
        defaults = {p["name"]: p["default"] for p in parameters if "default" in p}

        def call(*args: Any, **kwargs: Any) -> Any:
            if len(args) > len(names):
                raise TypeError(f"{name}() takes {len(names)} arguments but {len(args)} were given")
            arguments = {**defaults, **dict(zip(names, args, strict=False)), **kwargs}
            with _LOCK:
                self.calls += 1
                send({"id": f"tool-{self.calls}", "method": "tool_call", "params": {"name": name, "kwargs": arguments}})
                answer = receive()
            if answer is None:
                raise RuntimeError("the host closed the interpreter during a tool call")
            if "error" in answer:
                raise RuntimeError(f"{answer['error']['type']}: {answer['error']['message']}")
            return answer["result"]

        call.__name__ = name
        return call

    def register(self, params: dict[str, Any]) -> dict[str, Any]:
        for tool in params.get("tools") or []:
            self.namespace[tool["name"]] = self.tool(tool["name"], tool.get("parameters") or [])
        if params.get("outputs"):
            self.outputs = [output["name"] for output in params["outputs"]]
        return {"registered": [tool["name"] for tool in params.get("tools") or []]}

    def execute(self, params: dict[str, Any]) -> dict[str, Any]:
        self.namespace.update(params.get("variables") or {})
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 1)
            os.dup2(captured.fileno(), 2)
            try:
                outcome = self._run(params.get("code", ""))
            finally:
                for stream in (sys.stdout, sys.stderr):
                    stream.flush()
                _silence()
            captured.seek(0)
            outcome["stdout"] = captured.read().decode(errors="replace").rstrip("\n")  # as DSPy's local worker
        return outcome

    def _run(self, code: str) -> dict[str, Any]:
        try:
            tree = ast.parse(code, mode="exec")
            last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
            exec(compile(tree, "<interpreter>", "exec"), self.namespace)  # noqa: S102 - running code is the job
            value = eval(compile(ast.Expression(last.value), "<interpreter>", "eval"), self.namespace) if last else None  # noqa: S307
        except Submitted as submitted:
            return {"final": jsonable(submitted.args[0])}
        except SyntaxError as exc:
            return {"error": {"type": "SyntaxError", "message": str(exc)}}
        except BaseException as exc:  # noqa: BLE001 - the code's exception is its result
            frames = traceback.format_exception(type(exc), exc, exc.__traceback__)
            return {
                "error": {
                    "type": type(exc).__name__,
                    "message": str(exc),
                    "args": [jsonable(a) for a in exc.args],
                    "traceback": "".join(line for line in frames if "local_worker.py" not in line),
                }
            }
        return {"value": None if value is None else jsonable(value)}


def main() -> None:
    _silence()
    session = Session()
    send({"ready": True, "python": sys.version.split()[0]})
    while (request := receive()) is not None:
        method, params = request.get("method"), request.get("params") or {}
        if method == "shutdown":
            break
        try:
            if method == "execute":
                result = session.execute(params)
            elif method == "register":
                result = session.register(params)
            else:
                raise ValueError(f"unknown method {method!r}")
            send({"id": request.get("id"), "result": result})
        except Exception as exc:  # noqa: BLE001 - reported to the host, which ends the session
            send({"id": request.get("id"), "error": {"type": type(exc).__name__, "message": str(exc)}})


if __name__ == "__main__":
    main()
