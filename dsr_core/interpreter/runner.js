// The sandbox side of dsr's PythonInterpreter: Pyodide (CPython compiled to WebAssembly) inside Deno.
//
// Deno's permission flags, set by the host, are the security boundary: this process may read the files the
// host lists (the Pyodide files in Deno's cache only until Pyodide has loaded) and nothing else unless the
// host allows it (write paths, environment variables, network hosts). Python code reaches the JS world
// through Pyodide's `js` module, and every Deno call it makes is checked against those flags.
//
// Protocol: one JSON object per line. The host sends {"id", "method", "params"}; this side answers
// {"id", "result"} or {"id", "error": {"type", "message"}} on stdout. While code runs, a call to a host tool
// is a {"id", "method": "tool_call", "params": {"name", "kwargs"}} line from this side, answered by the host
// with {"id", "result"} or {"id", "error"} on stdin. Anything Pyodide itself prints goes to stderr, so
// stdout carries protocol lines only.

import pyodideModule from "npm:pyodide@0.29.4/pyodide.js";

const write = (message) => {
  Deno.stdout.writeSync(new TextEncoder().encode(JSON.stringify(message) + "\n"));
};
const log = (text) => Deno.stderr.writeSync(new TextEncoder().encode(String(text) + "\n"));

// -- stdin, line by line ----------------------------------------------------------------------------------
const reader = Deno.stdin.readable.getReader();
const decoder = new TextDecoder();
let pending = "";
async function nextLine() {
  for (;;) {
    const newline = pending.indexOf("\n");
    if (newline >= 0) {
      const line = pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      return line;
    }
    const { value, done } = await reader.read();
    if (done) return null;
    pending += decoder.decode(value, { stream: true });
  }
}

// -- Pyodide --------------------------------------------------------------------------------------------
const [envNames = "", denoDir = ""] = Deno.args;
const pyodide = await pyodideModule.loadPyodide({ stdout: log, stderr: log });
if (denoDir) await Deno.permissions.revoke({ name: "read", path: denoDir });

for (const name of envNames.split(",").filter(Boolean)) {
  const value = Deno.env.get(name);
  if (value !== undefined) pyodide.runPython(`import os; os.environ[${JSON.stringify(name)}] = ${JSON.stringify(value)}`);
}

// What an execution printed: Python's stdout, collected while it runs.
let captured = "";
const utf8 = new TextDecoder();
pyodide.setStdout({ write: (bytes) => { captured += utf8.decode(bytes, { stream: true }); return bytes.length; } });

let toolCalls = 0;
async function callTool(name, kwargsJson) {
  const id = `tool-${++toolCalls}`;
  write({ id, method: "tool_call", params: { name, kwargs: JSON.parse(kwargsJson) } });
  const line = await nextLine();
  if (line === null) return JSON.stringify({ error: { type: "RuntimeError", message: "the host closed the sandbox during a tool call" } });
  return line; // the host's answer, decoded on the Python side
}
pyodide.globals.set("_dsr_call_tool", callTool);

// The Python side of the protocol: one namespace for the session's code, SUBMIT, tool wrappers, and the
// conversion of a result or an exception into JSON.
pyodide.runPython(`
import json as _json, sys as _sys, traceback as _traceback
from pyodide.code import eval_code_async as _eval_code_async
from pyodide.ffi import run_sync as _run_sync

class _DsrSubmit(BaseException):
    """Raised by SUBMIT to end the execution with a final output (not an error)."""

def _dsr_submit_function(outputs):
    if not outputs:
        def SUBMIT(output):
            raise _DsrSubmit({"output": output})
        return SUBMIT
    names = [o["name"] for o in outputs]
    def SUBMIT(*args, **kwargs):
        values = dict(zip(names, args))
        values.update(kwargs)
        missing = [n for n in names if n not in values]
        extra = [n for n in values if n not in names]
        if missing or extra or len(args) > len(names):
            raise TypeError(f"SUBMIT takes the outputs {names}; missing {missing}, unexpected {extra}")
        raise _DsrSubmit(values)
    SUBMIT.__doc__ = "SUBMIT(" + ", ".join(names) + "): end with these outputs."
    return SUBMIT

def _dsr_tool_function(name, parameters):
    names = [p["name"] for p in parameters]
    defaults = {p["name"]: p["default"] for p in parameters if "default" in p}
    def tool(*args, **kwargs):
        if len(args) > len(names):
            raise TypeError(f"{name}() takes {len(names)} arguments but {len(args)} were given")
        call = dict(zip(names, args))
        for key, value in kwargs.items():
            if key in call:
                raise TypeError(f"{name}() got multiple values for argument '{key}'")
            call[key] = value
        for key, value in defaults.items():
            call.setdefault(key, value)
        answer = _json.loads(_run_sync(_dsr_call_tool(name, _json.dumps(call, default=str))))
        if "error" in answer:
            raise RuntimeError(f"{answer['error']['type']}: {answer['error']['message']}")
        return answer["result"]
    tool.__name__ = name
    return tool

_dsr_namespace = {"__name__": "__main__", "SUBMIT": _dsr_submit_function([])}

def _dsr_jsonable(value):
    try:
        return _json.loads(_json.dumps(value))
    except (TypeError, ValueError):
        return repr(value)

def _dsr_error(exc):
    lines = _traceback.format_exception(type(exc), exc, exc.__traceback__)
    # Drop the frames of this driver: the code's own frames are what the author can act on.
    frames = [line for line in lines if "_dsr_execute" not in line and "_pyodide" not in line]
    return {"type": type(exc).__name__, "message": str(exc), "args": [_dsr_jsonable(a) for a in exc.args],
            "traceback": "".join(frames[-12:])}

async def _dsr_execute(code, variables_json):
    _dsr_namespace.update(_json.loads(variables_json))
    try:
        value = await _eval_code_async(code, _dsr_namespace, filename="<sandbox>")
    except _DsrSubmit as submitted:
        return _json.dumps({"final": _dsr_jsonable(submitted.args[0])})
    except SyntaxError as exc:
        return _json.dumps({"error": _dsr_error(exc)})
    except BaseException as exc:
        return _json.dumps({"error": _dsr_error(exc)})
    return _json.dumps({"value": None if value is None else _dsr_jsonable(value)})
`);
const namespace = pyodide.globals.get("_dsr_namespace");

async function handle(method, params) {
  if (method === "execute") {
    captured = "";
    await loadImports(params.code);
    pyodide.globals.set("_dsr_code", params.code);
    pyodide.globals.set("_dsr_variables", JSON.stringify(params.variables ?? {}));
    // Entered through runPythonAsync so that a tool call can suspend the code (run_sync) until the host answers.
    const outcome = JSON.parse(await pyodide.runPythonAsync("await _dsr_execute(_dsr_code, _dsr_variables)"));
    outcome.stdout = captured;
    return outcome;
  }
  if (method === "register") {
    const makeTool = pyodide.globals.get("_dsr_tool_function");
    for (const tool of params.tools ?? []) {
      namespace.set(tool.name, makeTool(tool.name, pyodide.toPy(tool.parameters ?? [])));
    }
    if (params.outputs) {
      namespace.set("SUBMIT", pyodide.globals.get("_dsr_submit_function")(pyodide.toPy(params.outputs)));
    }
    return { registered: (params.tools ?? []).map((t) => t.name) };
  }
  if (method === "mount") {
    const contents = await Deno.readFile(params.host_path);
    pyodide.FS.mkdirTree(params.virtual_path.split("/").slice(0, -1).join("/") || "/");
    pyodide.FS.writeFile(params.virtual_path, contents);
    return { mounted: params.virtual_path };
  }
  if (method === "sync") {
    await Deno.writeFile(params.host_path, pyodide.FS.readFile(params.virtual_path));
    return { synced: params.host_path };
  }
  throw new Error(`unknown method ${JSON.stringify(method)}`);
}

// Packages outside the standard library (numpy, ...) come from Pyodide's package index; without network
// permission their download fails, and the code's import error says which module was missing.
async function loadImports(code) {
  try {
    await pyodide.loadPackagesFromImports(code, { messageCallback: log, errorCallback: log });
  } catch (error) {
    log(`package loading failed: ${error?.message ?? error}`);
  }
}

write({ ready: true, pyodide: pyodide.version });
for (;;) {
  const line = await nextLine();
  if (line === null) break;
  let request;
  try {
    request = JSON.parse(line);
  } catch (error) {
    write({ id: null, error: { type: "ProtocolError", message: `not JSON: ${error.message}` } });
    continue;
  }
  if (request.method === "shutdown") break;
  try {
    write({ id: request.id, result: await handle(request.method, request.params ?? {}) });
  } catch (error) {
    write({ id: request.id, error: { type: error?.name ?? "Error", message: String(error?.message ?? error) } });
  }
}
