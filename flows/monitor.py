"""The drift monitor flow: judge what production answered, keep a rolling score, re-optimize on a drop.

Each run reads the production log (``dsr serve --log``) written since the previous run, skips failed
requests, judges a seeded sample (``[monitor] sample``) against ``[monitor] criteria`` with the separate
``[judge_lm]`` as ``judge_shard`` tasks over shards, and adds the batch to a rolling window
(``window_days``). The monitor's state (the log watermark, the window, the baselines) is JSON at
``state_url``, written after the batch is recorded, so a crashed run judges its batch again rather than
skipping it.

Baseline: ``[monitor] baseline`` if set; otherwise the first rolling score measured for the current
champion version (kept in the state and as the version's ``dsr.monitor_baseline`` tag). When the rolling
score has at least ``min_examples`` behind it and falls more than ``drop_points`` below the baseline, the
records of the window are written to ``collected_url`` as JSONL (inputs, the served outputs, the judge
score) and the optimize deployment is triggered with ``data.train`` pointing at them. The window then
starts afresh, so one drop triggers one re-optimization.

MLflow gets one run per monitor run: the batch score, rolling score, baseline, counts and the decision.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

from prefect import flow, get_run_logger
from pydantic import BaseModel

from tasks.monitor import judge_shard
from tasks.specs import MetricSpec

from .artifacts import join, open_file, open_for_writing
from .config import RunConfig, resolve_config
from .services.production_log import read_production_log
from .tracking import client_for, experiment_id

DAY = 86_400.0


class WindowEntry(BaseModel):
    ts: float
    version: str | None
    judged: int
    total: float  # sum of scores (0-100) of the judged records


class MonitorState(BaseModel):
    watermark_ms: int = 0
    window: list[WindowEntry] = []
    baselines: dict[str, float] = {}  # champion version -> baseline rolling score
    triggers: list[dict[str, Any]] = []


class MonitorReport(BaseModel):
    new_records: int
    failed_records: int
    judged: int
    batch_score: float | None
    rolling_score: float | None
    window_examples: int
    baseline: float | None
    champion_version: str | None
    triggered: bool
    optimize_flow_run_id: str | None = None
    collected_url: str | None = None
    mlflow_run_id: str | None = None


def _read_state(url: str) -> MonitorState:
    try:
        with open_file(url, "r") as handle:
            return MonitorState.model_validate_json(handle.read())
    except FileNotFoundError:
        return MonitorState()


def _write_state(url: str, state: MonitorState) -> None:
    with open_for_writing(url) as handle:
        handle.write(state.model_dump_json(indent=2))


def _champion(config: RunConfig, name: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client_for(config).get_model_version_by_alias(name, "champion").version)
    except MlflowException:
        return None


def rolling(window: list[WindowEntry]) -> tuple[float | None, int]:
    judged = sum(e.judged for e in window)
    return (round(sum(e.total for e in window) / judged, 4) if judged else None), judged


@flow(name="dsr-monitor", validate_parameters=True)
def monitor_flow(config: RunConfig | str, overrides: list[str] | None = None) -> MonitorReport:
    logger = get_run_logger()
    config = resolve_config(config, overrides)
    monitor = config.monitor
    if monitor is None:
        raise ValueError("the drift monitor needs a [monitor] section in the config")
    state_url = monitor.state_url or join(monitor.log_url, "_monitor", "state.json")
    state = _read_state(state_url)
    now = time.time()

    records, watermark = read_production_log(monitor.log_url, state.watermark_ms)
    answered = [r for r in records if r.get("outputs") is not None and not r.get("error")]
    rng = random.Random(f"{state.watermark_ms}:{watermark}")
    sample = [r for r in answered if rng.random() < monitor.sample]
    logger.info("%d new records (%d failed); judging %d", len(records), len(records) - len(answered), len(sample))

    size = config.run.shard_size or 50
    futures = [
        judge_shard.submit(
            sample[i : i + size],
            MetricSpec(ref="judge", criteria=monitor.criteria),
            config.judge_lm,
            concurrency=config.judge_lm.max_concurrency if config.judge_lm else 16,
        )
        for i in range(0, len(sample), size)
    ]
    scores = [s for f in futures for s in f.result()]
    judged = [(r, 100.0 * s) for r, s in zip(sample, scores, strict=True) if s is not None]
    batch_score = round(sum(s for _, s in judged) / len(judged), 4) if judged else None

    champion = _champion(config, monitor.model)
    state.watermark_ms = watermark
    state.window = [e for e in state.window if e.ts >= now - monitor.window_days * DAY]
    if judged:
        state.window.append(WindowEntry(ts=now, version=champion, judged=len(judged), total=sum(s for _, s in judged)))
    current, examples = rolling(state.window)

    baseline = monitor.baseline if monitor.baseline is not None else state.baselines.get(champion or "")
    if baseline is None and champion is not None and current is not None and examples >= monitor.min_examples:
        baseline = state.baselines[champion] = current
        client_for(config).set_model_version_tag(monitor.model, champion, "dsr.monitor_baseline", str(current))
        logger.info("baseline for %s version %s: %.2f", monitor.model, champion, current)

    report: dict[str, Any] = {
        "new_records": len(records),
        "failed_records": len(records) - len(answered),
        "judged": len(judged),
        "batch_score": batch_score,
        "rolling_score": current,
        "window_examples": examples,
        "baseline": baseline,
        "champion_version": champion,
        "triggered": False,
    }
    dropped = (
        baseline is not None
        and current is not None
        and examples >= monitor.min_examples
        and current < baseline - monitor.drop_points
    )
    if dropped:
        report.update(_reoptimize(config, judged_rows(judged), now))
        state.triggers.append({"ts": now, "rolling_score": current, "baseline": baseline, **report})
        state.window = []  # a fresh window: one drop, one re-optimization
        logger.warning("rolling score %.2f is below baseline %.2f - %.1f: re-optimizing", current, baseline,
                       monitor.drop_points)  # fmt: skip
    report["mlflow_run_id"] = _log(config, report)
    _write_state(state_url, state)
    return MonitorReport.model_validate(report)


def judged_rows(records: list[tuple[dict[str, Any], float]]) -> list[dict[str, Any]]:
    """Rows for re-optimization: the request's inputs, what was served, and the judge's score."""
    return [
        {**r["inputs"], **{f"served_{k}": v for k, v in r["outputs"].items()}, "judge_score": s} for r, s in records
    ]


def _reoptimize(config: RunConfig, rows: list[dict[str, Any]], now: float) -> dict[str, Any]:
    from prefect.deployments import run_deployment

    monitor = config.monitor
    assert monitor is not None
    base = monitor.collected_url or join(monitor.log_url, "_monitor", "collected")
    url = join(base, f"collected-{int(now)}.jsonl")
    with open_for_writing(url) as handle:
        handle.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    result: dict[str, Any] = {"triggered": True, "collected_url": url}
    if monitor.optimize_deployment:
        run: Any = run_deployment(  # sync here (outside an event loop)
            monitor.optimize_deployment,
            parameters={"overrides": [f"data.train={json.dumps(url)}"]},
            timeout=0,  # start it; the optimization runs on its own schedule and worker
            as_subflow=False,
        )
        result["optimize_flow_run_id"] = str(run.id)
    return result


def _log(config: RunConfig, report: dict[str, Any]) -> str:
    from mlflow.entities import Metric

    client = client_for(config)
    run = client.create_run(
        experiment_id(client, config.mlflow.experiment),
        run_name=f"monitor-{time.strftime('%Y%m%d-%H%M%S')}",
        tags={"dsr.flow": "monitor", "dsr.model": str(config.monitor.model if config.monitor else "")},
    )
    now = int(time.time() * 1000)
    names = ("batch_score", "rolling_score", "baseline", "judged", "new_records", "failed_records", "window_examples")
    metrics = [Metric(k, float(report[k]), now, 0) for k in names if report.get(k) is not None]
    metrics.append(Metric("triggered", float(report["triggered"]), now, 0))
    client.log_batch(run.info.run_id, metrics=metrics)
    client.set_terminated(run.info.run_id)
    return str(run.info.run_id)
