"""The run config: one pydantic model shared by every flow (as its parameters) and by the CLI (as a file).

A TOML or YAML file with sections ``[program] [data] [metric] [lm] [judge_lm] [prompt_lm] [reflection_lm]
[optimizer] [run] [mlflow]`` (the optimize flow reads ``[optimizer]``, ``[prompt_lm]`` and, for GEPA,
``[reflection_lm]``; the evaluate flow ignores them);
``--set section.key=value`` overrides any key. Problems (unknown keys, wrong types, refs that do not
import) are collected and reported together, each with its config path, before any LM call is made.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

import dsr_core as dsr
from tasks.specs import JUDGE_CRITERIA, LMSpec, MetricSpec, ProgramSpec, Spec


class ConfigError(dsr.DsrError, ValueError):
    """The config is invalid. ``problems`` lists (config path, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]], source: str = "config") -> None:
        self.problems = problems
        lines = "\n".join(f"  {path}: {message}" for path, message in problems)
        super().__init__(f"{source} has {len(problems)} problem(s):\n{lines}")


class DataConfig(Spec):
    train: str | None = None
    dev: str | None = None
    input_keys: list[str]
    rename: dict[str, str] | None = None
    limit: int | None = Field(None, ge=1)
    split: str | None = Field(None, description="split for hf: sources and save_to_disk folders")
    train_split: str | None = Field(None, description="split for data.train (default: split)")
    dev_split: str | None = Field(None, description="split for data.dev (default: split)")
    config: str | None = Field(None, description="dataset config for hf: sources")


class RunSection(Spec):
    name: str | None = None
    artifacts_url: str = Field(".dsr/artifacts", description="local folder or s3://bucket/prefix")
    shard_size: int | None = Field(None, ge=1, description="examples per task; auto when unset")
    concurrency: int = Field(64, ge=1, description="examples in flight inside one shard task")
    task_runner: Literal["thread", "process", "dask"] = "thread"
    max_workers: int | None = Field(None, ge=1)
    dask_address: str | None = None
    checkpoint_url: str = Field(
        ".dsr/checkpoints", description="optimizer checkpoints: {checkpoint_url}/{run name}/ (local or s3://)"
    )
    # budgets: the run stops at a step boundary before going over one (flows/budget.py)
    max_cost: float | None = Field(None, gt=0, description="US dollars (every LM the run uses needs prices)")
    max_lm_calls: int | None = Field(None, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    max_wall_time: float | None = Field(None, gt=0, description="seconds")


OPTIMIZERS = (
    "LabeledFewShot",
    "BootstrapFewShot",
    "BootstrapFewShotWithRandomSearch",
    "COPRO",
    "MIPROv2",
    "GEPA",
    "SIMBA",
    "Structural",
)


class OptimizerConfig(BaseModel):
    """``name`` and ``seed``; every other key is a parameter of that optimizer (checked against it)."""

    model_config = ConfigDict(extra="allow")

    name: Literal[OPTIMIZERS] = "BootstrapFewShot"  # type: ignore[valid-type]
    seed: int = 0

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class MonitorConfig(Spec):
    """The drift monitor: judge a sample of the production log, keep a rolling score, re-optimize on a drop."""

    log_url: str = Field(description="the production log `dsr serve --log` writes (folder or s3:// prefix)")
    model: str = Field(description="registered model name whose champion is monitored")
    criteria: str = Field(JUDGE_CRITERIA, description="what the judge ([judge_lm]) checks")
    sample: float = Field(0.1, gt=0, le=1, description="fraction of new records to judge")
    window_days: float = Field(7.0, gt=0)
    drop_points: float = Field(5.0, gt=0, description="re-optimize when rolling score < baseline - drop_points")
    baseline: float | None = Field(None, description="default: the first rolling score seen for the champion")
    min_examples: int = Field(20, ge=1, description="judged examples in the window before any decision")
    state_url: str | None = Field(None, description="default: {log_url}/_monitor/state.json")
    collected_url: str | None = Field(None, description="where new data goes for re-optimization")
    optimize_deployment: str | None = Field(
        "dsr-optimize/nightly", description="'flow-name/deployment-name' to trigger; empty: only collect the data"
    )


class MLflowConfig(Spec):
    tracking_uri: str | None = Field(None, description="default: sqlite:///mlflow.db in the working folder")
    experiment: str = "dsr"
    register_as: str | None = Field(None, description="registered model name for the optimized program")


class RunConfig(Spec):
    """The whole run: the sections tasks need (``tasks.specs``) and the ones only the flows read.

    ``validate_config`` makes one and checks its references; ``resolve_config`` hands a checked one on as is.
    """

    program: ProgramSpec
    data: DataConfig
    metric: MetricSpec = MetricSpec()
    lm: LMSpec
    judge_lm: LMSpec | None = None
    prompt_lm: LMSpec | None = Field(None, description="the model that proposes instructions (default: lm)")
    reflection_lm: LMSpec | None = Field(None, description="the model GEPA reflects with (default: prompt_lm, then lm)")
    optimizer: OptimizerConfig = OptimizerConfig()
    monitor: MonitorConfig | None = None
    run: RunSection = RunSection()
    mlflow: MLflowConfig = MLflowConfig()
    _references_checked: bool = PrivateAttr(False)

    def public_params(self) -> dict[str, Any]:
        """Flat ``section.key`` params for MLflow. The config holds only env-var NAMES, never keys."""
        flat: dict[str, Any] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(f"{prefix}.{k}" if prefix else k, v)
            elif value is not None:
                flat[prefix] = json.dumps(value) if isinstance(value, list) else value

        walk("", self.model_dump())
        return flat


# -- reading ---------------------------------------------------------------------------------------------------


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError([(item, "an override must look like section.key=value")], "--set")
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError([(key, f"{part!r} is not a section")], "--set")
        node[parts[-1]] = _parse_value(value.strip())
    return data


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([(str(path), "no such file")], str(path)) from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = tomllib.loads(text)
    except Exception as exc:  # noqa: BLE001 - a syntax error of either format
        raise ConfigError([(str(path), f"cannot parse: {exc}")], str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError([(str(path), "the top level must be a table/mapping")], str(path))
    return data


def validate_config(data: dict[str, Any], source: str = "config", *, check_refs: bool = True) -> RunConfig:
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as exc:
        problems = [(".".join(str(p) for p in err["loc"]) or "(top level)", err["msg"]) for err in exc.errors()]
        raise ConfigError(problems, source) from None
    if check_refs:
        problems = check_references(config)
        if problems:
            raise ConfigError(problems, source)
        config._references_checked = True
    return config


def load_config(
    path: str | os.PathLike[str], overrides: list[str] | None = None, *, check_refs: bool = True
) -> RunConfig:
    data = apply_overrides(read_config_file(path), overrides or [])
    return validate_config(data, str(path), check_refs=check_refs)


# -- references ------------------------------------------------------------------------------------------------


def check_references(config: RunConfig) -> list[tuple[str, str]]:
    """Every problem with the config's references and their combinations, each with its config path."""
    problems = config.program.problems()
    problems += config.metric.problems(has_judge_lm=config.judge_lm is not None)
    if not config.data.dev and not config.data.train and config.monitor is None:
        problems.append(("data", "give data.dev (and/or data.train)"))
    if config.monitor is not None and config.judge_lm is None:
        problems.append(("judge_lm", "the drift monitor ([monitor]) judges with a [judge_lm] section"))
    problems.extend(check_optimizer_params(config.optimizer))
    if config.run.max_cost is not None:
        sections = {"lm": config.lm, "prompt_lm": config.prompt_lm, "reflection_lm": config.reflection_lm}
        sections["judge_lm"] = config.judge_lm if config.metric.ref == "judge" else None
        for name, section in sections.items():
            if section is not None and section.prices() is None:
                problems.append(
                    (
                        f"{name}",
                        "run.max_cost needs prices for every LM the run uses: input_price and output_price "
                        "(USD per million tokens), or gpu_hour_price with tokens_per_second",
                    )
                )
            elif section is not None and section.gpu_hour_price is not None and section.tokens_per_second is None:
                problems.append(
                    (
                        f"{name}.tokens_per_second",
                        "run.max_cost cannot be kept with gpu_hour_price alone: a run prices its calls at "
                        "tokens_per_second (`dsr optimize --estimate` measures the endpoint's)",
                    )
                )
    return problems


CLASS_NAMES = {"Structural": "StructuralOptimizer"}  # config names that differ from the class name


def optimizer_class(name: str) -> type:
    from dsr_core import optimizers

    return getattr(optimizers, CLASS_NAMES.get(name, name))


# objects, not settings: the flow supplies them from the other sections
NOT_FROM_CONFIG = {"metric", "seed", "teacher", "prompt_model", "task_model", "reflection_lm"}


def check_optimizer_params(section: OptimizerConfig) -> list[tuple[str, str]]:
    """Problems with the chosen optimizer's parameters, each with its config path: unknown names, values of
    the wrong type or out of range (from the optimizer's annotated signature), and combinations its
    constructor refuses (MIPROv2's ``auto`` together with ``num_trials``)."""
    import inspect

    from dsr_core.optimizers.base import parameter_problems

    try:
        cls = optimizer_class(section.name)
    except AttributeError:
        return [("optimizer.name", f"{section.name} is not available in this version of dsr")]
    init = inspect.unwrap(cls.__init__)
    parameters = inspect.signature(init).parameters
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    settable = {name for name, p in parameters.items() if p.kind in named} - NOT_FROM_CONFIG - {"self"}
    problems = [
        (f"optimizer.{key}", f"{section.name} has no parameter {key!r} (it takes: {', '.join(sorted(settable))})")
        for key in section.params
        if key not in settable
    ]
    known = {k: v for k, v in section.params.items() if k in settable}
    _, invalid = parameter_problems(init, {"seed": section.seed, **known})
    problems.extend((f"optimizer.{name}", message) for name, message in invalid)
    if not problems:
        try:
            cls(seed=section.seed, **known)
        except (TypeError, ValueError) as exc:
            problems.append(("optimizer", str(exc)))
    return problems


def resolve_config(config: RunConfig | str | dict[str, Any], overrides: list[str] | None = None) -> RunConfig:
    """A flow's ``config`` parameter: a RunConfig, a dict of one, or the path of a TOML/YAML file (what
    deployments pass, so a schedule always runs the file's current contents); ``overrides`` as with --set."""
    if isinstance(config, str):
        return load_config(config, overrides or [])
    if isinstance(config, RunConfig) and config._references_checked and not overrides:
        return config  # validated and checked already (by the CLI, or by the flow that started this one)
    data = config.model_dump() if isinstance(config, RunConfig) else dict(config)
    return validate_config(apply_overrides(data, overrides or []))
