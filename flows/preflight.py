"""Checks made before the first LM call, so a run that cannot succeed costs nothing and says why in one place.

``preflight(config, purpose)`` collects every problem it can find (each with its config path) and raises one
``ConfigError`` listing them (refs and optimizer parameters are checked when the config is validated, by
``validate_config``, so not again here): API key variables that are named but unset, a program that does not build or whose saved state does not load, empty or unreadable
data, artifact/checkpoint/MLflow locations that cannot be written, and, with ``probe=True``, one tiny request
to every LM the run will use (a refused connection, a 401 or an unknown model become one clear line).
``dsr config check`` runs the same checks without the probe (it calls no LM); the CLI runs them before it
starts a flow, and the flows run them again as their first step (deployments do not go through the CLI).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import dsr_core as dsr
from dsr_core.environment import secret
from tasks.specs import LMSpec

from .artifacts import filesystem, is_remote, join, read_program_state
from .config import ConfigError, RunConfig
from .shards import load_split

Purpose = Literal["evaluate", "optimize", "check"]

# optimizers that ask the prompt model for instructions (the others never call it)
PROPOSING_OPTIMIZERS = {"COPRO", "MIPROv2", "SIMBA", "Structural", "GEPA"}


@dataclass
class Prepared:
    """What the checks loaded on the way, for the flow to use instead of loading it again."""

    trainset: list[dsr.Example] | None = None
    devset: list[dsr.Example] | None = None
    program_state: dict[str, Any] | None = None
    problems: list[tuple[str, str]] = field(default_factory=list)


def lm_sections(config: RunConfig, purpose: Purpose) -> dict[str, LMSpec]:
    """The LM sections this run will call, by config path."""
    sections = {"lm": config.lm}
    if config.judge_lm is not None and config.metric.ref == "judge":  # the monitor's judge is not the run's
        sections["judge_lm"] = config.judge_lm
    if purpose != "evaluate" and config.optimizer.name in PROPOSING_OPTIMIZERS and config.prompt_lm is not None:
        sections["prompt_lm"] = config.prompt_lm
    if purpose != "evaluate" and config.optimizer.name == "GEPA" and config.reflection_lm is not None:
        sections["reflection_lm"] = config.reflection_lm  # it replaces [prompt_lm] for GEPA
        sections.pop("prompt_lm", None)
    return sections


def key_problems(sections: dict[str, LMSpec]) -> list[tuple[str, str]]:
    """A key variable that is named but unset would send requests with a placeholder key (every row a 401).

    It is a problem when the section names its own variable, or when the endpoint needs a key: OpenAI's, or
    a hosted provider's (``anthropic/...``); a local endpoint (``api_base`` set) needs none.
    """
    from dsr_core.lm import DEFAULT_API_KEY_ENV

    from .services.local_lm import LOCAL_MODEL

    problems = []
    for path, section in sections.items():
        if section.model == LOCAL_MODEL:
            continue
        lm = section.build()  # resolves the provider's endpoint and key variable; no request is made
        # OpenAI's variable with a local endpoint is the default written out, not a demand for a key
        named = section.api_key_env != DEFAULT_API_KEY_ENV
        if secret(lm.api_key_env) is not None or not (named or lm.key_required):
            continue
        where = "the default endpoint (api.openai.com)" if lm.api_base is None else lm.api_base
        problems.append((f"{path}.api_key_env", f"names {lm.api_key_env}, which is not set (needed for {where})"))
    return problems


def program_problems(config: RunConfig, prepared: Prepared) -> list[tuple[str, str]]:
    """The program must build (its ``__init__`` may raise) and its saved state, if any, must load into it."""
    from tasks.program import instantiate

    if config.program.state:
        try:
            prepared.program_state = read_program_state(config.program.state)
        except dsr.DsrError as exc:
            return [("program.state", str(exc))]
    try:
        instantiate(config.program.ref, prepared.program_state)
    except dsr.ProgramStateError as exc:
        return [("program.state", str(exc))]
    except Exception as exc:  # noqa: BLE001 - the user's constructor may raise anything
        return [("program.ref", f"{config.program.ref} does not build: {type(exc).__name__}: {exc}")]
    return []


def data_problems(config: RunConfig, purpose: Purpose, prepared: Prepared) -> list[tuple[str, str]]:
    """Load the splits the run reads; each must exist, parse and hold at least one example."""
    wanted = {
        "evaluate": ["dev" if config.data.dev else "train"],
        "optimize": ["train", *(["dev"] if config.data.dev else [])],
        "check": [s for s in ("train", "dev") if getattr(config.data, s)],
    }[purpose]
    problems = []
    if purpose == "optimize" and not config.data.train:
        return [("data.train", "optimization needs a training set (data.train); data.dev is for validation")]
    for split in wanted:
        try:
            examples = load_split(config, split)
        except dsr.DsrError as exc:
            problems.append((f"data.{split}", str(exc)))
            continue
        if not examples:
            source = getattr(config.data, split)
            problems.append((f"data.{split}", f"{source} holds no examples; nothing to {purpose}"))
        setattr(prepared, "trainset" if split == "train" else "devset", examples)
    return problems


def writable_problem(url: str) -> str | None:
    """Write and delete a small file under ``url`` (a folder or s3:// prefix); the error if that fails."""
    probe = join(url, f".dsr-write-check-{uuid.uuid4().hex[:12]}")
    try:
        fs = filesystem(probe)
        if not is_remote(probe):
            os.makedirs(os.path.dirname(probe), exist_ok=True)
        # through the filesystem, not fsspec.open: that makes missing parents, which on S3 creates the bucket
        with fs.open(probe, "wb") as handle:
            handle.write(b"ok")
        fs.rm(probe)
    except Exception as exc:  # noqa: BLE001 - any storage failure (credentials, permissions, no bucket)
        return f"cannot write to {url}: {type(exc).__name__}: {exc}"
    return None


def tracking_problem(config: RunConfig) -> str | None:
    """The MLflow tracking store must be usable: a sqlite file complete and in a writable folder, a server
    answering its health check."""
    import urllib.error
    import urllib.request

    from .tracking import DEFAULT_TRACKING_URI
    from .tracking_store import check_tracking_store, sqlite_path

    uri = config.mlflow.tracking_uri or DEFAULT_TRACKING_URI
    if uri.startswith("sqlite:"):
        path = sqlite_path(uri)
        if path is not None and path.absolute().parent.exists() and not os.access(path.absolute().parent, os.W_OK):
            return f"{uri}: the folder {path.absolute().parent} is not writable"
        try:
            check_tracking_store(uri)
        except dsr.DsrError as exc:
            return str(exc)
        return None
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10) as response:
                response.read()
        except (urllib.error.URLError, OSError) as exc:
            return f"the MLflow server at {uri} does not answer: {exc}"
    return None


def storage_problems(config: RunConfig, purpose: Purpose) -> list[tuple[str, str]]:
    locations = {"run.artifacts_url": config.run.artifacts_url}
    if purpose != "evaluate":
        locations["run.checkpoint_url"] = config.run.checkpoint_url
    problems = [(path, message) for path, url in locations.items() if (message := writable_problem(url))]
    if message := tracking_problem(config):
        problems.append(("mlflow.tracking_uri", message))
    return problems


def probe_problems(sections: dict[str, LMSpec]) -> list[tuple[str, str]]:
    """One minimal request to each distinct endpoint and model the run will call."""
    from tasks.program import get_lm

    problems = []
    seen: set[tuple[Any, ...]] = set()
    for path, section in sections.items():
        key = (section.model, section.api_base, section.api_key_env)
        if key in seen:
            continue
        seen.add(key)
        try:
            get_lm(section).probe()
        except dsr.LMError as exc:
            problems.append((path, str(exc)))  # it names the model, the endpoint and what went wrong
    return problems


def preflight(config: RunConfig, purpose: Purpose, *, probe: bool = True) -> Prepared:
    """Run every check; raise one ConfigError with all problems found, else return what was loaded."""
    prepared = Prepared()
    sections = lm_sections(config, purpose)
    problems = key_problems(sections)  # refs and optimizer parameters were checked with the config itself
    problems += program_problems(config, prepared)
    problems += data_problems(config, purpose, prepared)
    problems += storage_problems(config, purpose)
    if probe and not problems:  # no request goes out for a run that would stop anyway
        problems += probe_problems(sections)
    if problems:
        raise ConfigError(problems, "run")
    return prepared
