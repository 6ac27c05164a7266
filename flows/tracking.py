"""MLflow records through MlflowClient with explicit run ids.

MLflow's "active run" is thread-local; flows run tasks in threads and two runs may share a process, so
nothing here uses ``mlflow.start_run``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from .config import RunConfig

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def client_for(config: RunConfig) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=config.mlflow.tracking_uri or DEFAULT_TRACKING_URI)


def experiment_id(client: Any, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment is not None else client.create_experiment(name)


def log_evaluation(config: RunConfig, run_name: str, summary: dict[str, Any], table_url: str, table: Any) -> str:
    """One MLflow run: config params, the summary metrics, the per-example table as an artifact."""
    import pyarrow.parquet as pq
    from mlflow.entities import Metric, Param

    client = client_for(config)
    run = client.create_run(
        experiment_id(client, config.mlflow.experiment),
        run_name=run_name,
        tags={"dsr.flow": "evaluate", "dsr.table_url": table_url},
    )
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    params = [Param(k, str(v)[:6000]) for k, v in sorted(config.public_params().items())]
    metrics = [Metric(k, float(v), now, 0) for k, v in summary.items() if isinstance(v, (int, float))]
    for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
        client.log_batch(run_id, params=params[i : i + 100])
    client.log_batch(run_id, metrics=metrics)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "evaluation.parquet"
        pq.write_table(table, path)
        client.log_artifact(run_id, str(path))
    client.set_terminated(run_id)
    return run_id
