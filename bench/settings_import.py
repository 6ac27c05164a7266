"""What reading dsr's DSR_ settings costs a fresh process: dsr's frozen dataclass against pydantic-settings.

    python bench/settings_import.py [--repeats 9]

Each case runs in a new interpreter that has already imported ``dsr_core`` (as any process reading the
settings has), so the time is what the settings add: dsr's ``environment()`` against a pydantic-settings class
with the same three variables (``DSR_CACHE``, ``DSR_CACHE_DIR``, ``DSR_HTTP_TRANSPORT``), defined and read.
Median of the repeats, range in brackets, with the modules each loads beyond ``import dsr_core``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CASES = {
    "dsr environment()": """
from dsr_core.environment import environment
environment()
""",
    "pydantic-settings BaseSettings": """
from pydantic_settings import BaseSettings, SettingsConfigDict

class DsrSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DSR_")
    cache: bool = True
    cache_dir: str | None = None
    http_transport: str = "aiohttp"

DsrSettings()
""",
}

PROBE = """
import json, sys, time
import dsr_core
before = set(sys.modules)
started = time.perf_counter()
exec(compile({code!r}, "case", "exec"))
print(json.dumps({{"ms": (time.perf_counter() - started) * 1000, "modules": len(set(sys.modules) - before)}}))
"""


def measure(code: str, repeats: int) -> tuple[list[float], int]:
    times, modules = [], 0
    for _ in range(repeats):
        run = subprocess.run([sys.executable, "-c", PROBE.format(code=code)], capture_output=True, text=True)
        if run.returncode != 0:
            raise SystemExit(run.stderr)
        result = json.loads(run.stdout)
        times.append(result["ms"])
        modules = result["modules"]
    return times, modules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    print("| settings | ms (median, range) | modules loaded |")
    print("|---|---:|---:|")
    for name, code in CASES.items():
        times, modules = measure(code, args.repeats)
        print(f"| {name} | {statistics.median(times):.2f} ({min(times):.2f}-{max(times):.2f}) | {modules} |")


if __name__ == "__main__":
    main()
