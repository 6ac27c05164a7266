"""Optimized programs in the MLflow model registry.

A program is logged as a pyfunc model without pickle: the model folder holds the program JSON as its data
and names this module as the loader (``loader_module``), so loading needs dsr and the program's code, the
way loading a DSPy program does, and never unpickles anything. Each optimization registers one version
(``[mlflow] register_as``); alias ``candidate`` always moves to it, ``champion`` only when it beats the
current champion on the same validation examples. Both scores are kept as version tags.

``dsr_core.load_program("models:/name@champion")`` reaches ``fetch_program_state`` through the
``dsr.program_sources`` entry point, so dsr_core itself never imports MLflow.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dsr_core as dsr
from dsr_core.state import ProgramState

from ..config import RunConfig
from ..tracking import client_for

CANDIDATE, CHAMPION = "candidate", "champion"
PROGRAM_FILE = "program.json"
# the loader modules a dsr program model may name: this one, and where it lived before flows.services
LOADER_MODULES = (__name__, "flows.registry")


# -- writing ---------------------------------------------------------------------------------------------------


def _log_model(client: Any, run_id: str, program_state: dict[str, Any]) -> str:
    """Save the pyfunc model folder and log it under the run's ``model/``; returns its runs:/ URI."""
    import mlflow.pyfunc

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / PROGRAM_FILE
        data.write_text(json.dumps(program_state, indent=2, ensure_ascii=False), encoding="utf-8")
        folder = Path(tmp) / "model"
        mlflow.pyfunc.save_model(
            str(folder),
            loader_module=__name__,
            data_path=str(data),
            pip_requirements=[f"dsr=={dsr.__version__}"],
            metadata={"dsr_program": ProgramState.from_json(program_state).program_ref},
        )
        client.log_artifacts(run_id, str(folder), "model")
    return f"runs:/{run_id}/model"


def register(
    config: RunConfig,
    run_id: str,
    program_state: dict[str, Any],
    score: float,
    *,
    champion_score: Callable[[dict[str, Any]], float],
) -> dict[str, Any]:
    """Register the run's program as ``register_as``; move ``candidate``, and ``champion`` if it wins.

    Idempotent per run: a resumed run that crashed after registering reuses its version. A champion that
    cannot be scored with this program (another shape) stays champion; the reason is kept as a version tag.
    ``champion_score(program_state)`` scores the current champion on the examples ``score`` came from.
    """
    from mlflow.exceptions import MlflowException

    name = config.mlflow.register_as
    assert name is not None
    client = client_for(config)
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="dsr programs (JSON), registered by `dsr optimize`")
    existing = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if existing:
        version = existing[0]
    else:
        version = client.create_model_version(name, _log_model(client, run_id, program_state), run_id=run_id)
    client.set_model_version_tag(name, version.version, "dsr.val_score", str(score))
    client.set_registered_model_alias(name, CANDIDATE, version.version)

    result: dict[str, Any] = {"model_name": name, "model_version": str(version.version), "promoted": False}
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        champion = None
    if champion is not None and champion.version == version.version:
        return {**result, "champion_version": str(version.version), "promoted": True}
    if champion is not None:
        try:
            previous = champion_score(
                ProgramState.from_json(fetch_program_state(f"models:/{name}/{champion.version}", client)).predictors()
            )
        except Exception as exc:  # noqa: BLE001 - e.g. the program changed shape since the champion was made
            reason = f"{type(exc).__name__}: {exc}"[:500]
            client.set_model_version_tag(name, version.version, "dsr.champion_comparison", f"failed: {reason}")
            return {**result, "champion_version": str(champion.version), "champion_error": reason}
        result["champion_score"] = previous
        client.set_model_version_tag(name, version.version, "dsr.champion_score_at_registration", str(previous))
        if score <= previous:
            return {**result, "champion_version": str(champion.version)}
    client.set_registered_model_alias(name, CHAMPION, version.version)
    return {**result, "champion_version": str(version.version), "promoted": True}


# -- reading ---------------------------------------------------------------------------------------------------


def fetch_program_state(uri: str, client: Any = None) -> dict[str, Any]:
    """The program JSON of a registered model (``models:/name@alias`` or ``models:/name/version``).

    Uses MLflow's tracking URI (MLFLOW_TRACKING_URI, default sqlite:///mlflow.db) unless a client is given.
    """
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    tracking_uri = client.tracking_uri if client is not None else None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp, tracking_uri=tracking_uri)
            path = _program_file(Path(local))
            return json.loads(path.read_text(encoding="utf-8"))
    except MlflowException as exc:
        raise dsr.ProgramStateError(f"{uri}: cannot load from the MLflow registry: {exc.message}") from None


def _program_file(model_dir: Path) -> Path:
    import yaml

    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text(encoding="utf-8"))
    flavor = mlmodel.get("flavors", {}).get("python_function", {})
    if flavor.get("loader_module") not in LOADER_MODULES:
        raise dsr.ProgramStateError(f"{model_dir}: not a dsr program model (loader {flavor.get('loader_module')!r})")
    return model_dir / flavor["data"]


class ProgramModel:
    """What ``mlflow.pyfunc.load_model`` returns inside its wrapper: ``predict`` runs the program."""

    def __init__(self, program: dsr.Module) -> None:
        self.program = program

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        """Rows in (a DataFrame, a dict, or a list of dicts of input fields); one dict of outputs per row."""
        import asyncio

        from dsr_core._async import run_sync

        rows, as_frame = _rows(model_input)

        async def run_all() -> list[dict[str, Any]]:
            predictions = await asyncio.gather(*(self.program.acall(**row) for row in rows))
            return [prediction.to_dict() for prediction in predictions]

        outputs = run_sync(run_all())
        if as_frame:
            import pandas as pd

            return pd.DataFrame(outputs)
        return outputs


def _rows(model_input: Any) -> tuple[list[dict[str, Any]], bool]:
    if hasattr(model_input, "to_dict") and hasattr(model_input, "columns"):
        return model_input.to_dict(orient="records"), True
    if isinstance(model_input, dict):
        return [model_input], False
    if isinstance(model_input, list) and all(isinstance(row, dict) for row in model_input):
        return model_input, False
    raise dsr.DsrError(f"predict takes a DataFrame, a dict or a list of dicts of input fields, not {type(model_input)}")


def _load_pyfunc(data_path: str) -> ProgramModel:
    """MLflow's loader hook: ``data_path`` is the program JSON inside the model folder."""
    return ProgramModel(dsr.load_program(os.fspath(data_path)))
