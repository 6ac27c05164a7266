"""The evaluate flow against dsr_core's in-process Evaluate and the physical limit.

2,000 examples, 100 ms server latency, 256 requests in flight. Prefect's ephemeral server is started by a
warm-up flow first and timed separately, so the flow number is what a run costs once Prefect is up.

    python bench/flow_evaluate.py [--n 2000] [--latency 0.1] [--concurrency 256]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import time_prefect_startup  # noqa: E402


def start_server(latency: float) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "dsr_core.testing.server", "--latency", str(latency)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def reset(url: str) -> None:
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{url}/reset", method="POST"), timeout=5).read()


def max_in_flight(url: str) -> int:
    import urllib.request

    with urllib.request.urlopen(f"{url}/stats", timeout=5) as response:
        return int(json.load(response)["max_in_flight"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--shard-size", type=int, default=None, help="default: the flow's automatic size")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dsr-bench-flow-"))
    os.environ["DSR_CACHE"] = "0"  # every call goes to the server
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    os.chdir(work)
    server, url = start_server(args.latency)
    try:
        data = work / "dev.jsonl"
        with data.open("w") as handle:
            for i in range(args.n):
                handle.write(json.dumps({"question": f"q{i}", "answer": f"q{i}"}) + "\n")

        import dsr_core as dsr

        # 1. in-process engine
        examples = dsr.DataLoader().load(str(data), input_keys=["question"])
        lm = dsr.LM("bench", api_base=url, max_concurrency=args.concurrency, cache=False)
        program = dsr.Predict("question -> answer", lm=lm)
        dsr.Evaluate(examples[:50], dsr.exact_match, concurrency=50)(program)  # warm the connection pool
        reset(url)
        t0 = time.perf_counter()
        in_process = dsr.Evaluate(examples, dsr.exact_match, concurrency=args.concurrency)(program)
        in_process_time = time.perf_counter() - t0
        in_process_flight = max_in_flight(url)

        # 2. Prefect startup (ephemeral server), measured with an empty flow
        startup = time_prefect_startup()

        # 3. the evaluate flow
        from flows.config import validate_config
        from flows.evaluate import run_evaluation

        config = validate_config(
            {
                "program": {"ref": "bench.flow_program:make_program"},
                "data": {"dev": str(data), "input_keys": ["question"]},
                "metric": {"ref": "exact_match"},
                "lm": {"model": "bench", "api_base": url, "max_concurrency": args.concurrency, "cache": False},
                "run": {"name": "bench-flow", "artifacts_url": str(work / "artifacts"), "shard_size": args.shard_size},
                "mlflow": {"tracking_uri": f"sqlite:///{work / 'mlflow.db'}"},
            }
        )
        # warm-up run on other shards (a different limit), so the timed run finds no persisted results
        warm = config.model_copy(
            update={
                "run": config.run.model_copy(update={"name": "warm"}),
                "data": config.data.model_copy(update={"limit": 300}),
            }
        )
        run_evaluation(warm)
        reset(url)
        t0 = time.perf_counter()
        report = run_evaluation(config)
        flow_time = time.perf_counter() - t0
        flow_flight = max_in_flight(url)
    finally:
        server.terminate()

    limit = args.latency * math.ceil(args.n / args.concurrency)
    print("| measure | seconds | x physical limit |\n|---|---|---|")
    print(f"| physical limit ({args.latency * 1000:.0f} ms x ceil({args.n}/{args.concurrency})) | {limit:.2f} | 1.00 |")
    print(
        f"| dsr_core Evaluate in process (max in flight {in_process_flight}) | {in_process_time:.2f} | "
        f"{in_process_time / limit:.2f} |"
    )
    print(
        f"| evaluate flow, whole run incl. data, Parquet, MLflow (max in flight {flow_flight}) | {flow_time:.2f} | "
        f"{flow_time / limit:.2f} |"
    )
    print(
        f"| evaluate flow, shard tasks only ({report.shards} shards) | {report.wall_time:.2f} | "
        f"{report.wall_time / limit:.2f} |"
    )
    print(f"| Prefect ephemeral startup (separate, once per process) | {startup:.2f} | |")
    phases = ", ".join(f"{k} {v:.2f}s" for k, v in report.phase_seconds.items())
    print(f"\nflow phases: {phases}; the rest of the whole run is Prefect's flow-run bookkeeping")
    print(f"\nflow / in-process: {flow_time / in_process_time:.2f}x; scores {report.score} / {in_process.score}")


if __name__ == "__main__":
    main()
