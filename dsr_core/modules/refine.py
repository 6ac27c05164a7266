"""BestOfN and Refine: run a module up to N times and keep the best prediction by a reward function.

Each attempt runs a copy of the module whose predictors sample at ``temperature=1.0`` with their own
``rollout_id`` (start, start + 1, ...), so the cache keeps the attempts apart and a rerun is reproducible.
The first prediction whose reward reaches ``threshold`` wins; otherwise the best one. Refine additionally
asks the LM, after a failed attempt, for advice to each predictor (DSPy's ``OfferFeedback``) and shows it
to them as a ``hint_`` input on the next attempt.

The attempts' predictor calls are reported to the caller's trace under the original predictors, so
BootstrapFewShot sees them as calls of the wrapped module's predictors.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import json
import logging
import textwrap
from collections.abc import Callable, Mapping
from typing import Any

from .. import settings as _settings
from ..adapters import Adapter
from ..adapters.base import describe_fields
from ..primitives import Prediction, Usage
from ..runtime import runtime
from ..signatures import InputField, OutputField, Signature
from ..tracking import current_trace, trace
from .module import Module
from .predict import Predict, adapter_for

log = logging.getLogger(__name__)

RewardFn = Callable[[dict[str, Any], Prediction], Any]


class OfferFeedback(Signature):
    """
    In the discussion, assign blame to each module that contributed to the final reward being below the threshold, if
    any. Then, prescribe concrete advice of how the module should act on its future input when we retry the process, if
    it were to receive the same or similar inputs. If a module is not to blame, the advice should be N/A.
    The module will not see its own history, so it needs to rely on entirely concrete and actionable advice from you
    to avoid the same mistake on the same or similar inputs.
    """

    program_code: str = InputField(desc="The code of the program that we are analyzing")
    modules_defn: str = InputField(desc="The definition of each module in the program, including its I/O")
    program_inputs: str = InputField(desc="The inputs to the program that we are analyzing")
    program_trajectory: str = InputField(desc="The trajectory of the program's execution, showing each module's I/O")
    program_outputs: str = InputField(desc="The outputs of the program that we are analyzing")
    reward_code: str = InputField(desc="The code of the reward function that we are analyzing")
    target_threshold: float = InputField(desc="The target threshold for the reward function")
    reward_value: float = InputField(desc="The reward value assigned to the program's outputs")
    module_names: list[str] = InputField(desc="The names of the modules in the program, for which we seek advice")
    discussion: str = OutputField(desc="Discussing blame of where each module went wrong, if it did")
    advice: dict[str, str] = OutputField(
        desc="For each module, describe very concretely, in this order: the specific scenarios in which it has made "
        "mistakes in the past and what each mistake was, followed by what it should do differently in that kind of"
        "scenario in the future. If the module is not to blame, write N/A."
    )


class BestOfN(Module):
    """``BestOfN(module, N=3, reward_fn=lambda args, pred: ..., threshold=1.0)``.

    ``reward_fn(inputs, prediction)`` returns a number (or a bool); it may be async. ``fail_count`` is how
    many attempts may raise before the error is re-raised (default ``N``); if every attempt raised, the last
    error is.
    """

    def __init__(
        self,
        module: Module,
        N: int,  # noqa: N803 - DSPy's name
        reward_fn: RewardFn,
        threshold: float,
        fail_count: int | None = None,
    ) -> None:
        self.module = module
        self._reward_fn = reward_fn  # private: a function is not a parameter of the program
        self.threshold = threshold
        self.N = N
        self.fail_count = fail_count if fail_count is not None else N

    gives_feedback = False  # Refine: advice between attempts

    @property
    def reward_fn(self) -> RewardFn:
        return self._reward_fn

    async def aforward(self, **kwargs: Any) -> Prediction:  # type: ignore[override]
        originals = self.module.predictors()
        start = _start_rollout(originals)
        best_pred: Prediction | None = None
        best_trace: list[tuple[Any, dict[str, Any], Any]] = []
        best_originals: dict[int, Predict] = {}
        best_reward = -float("inf")
        advice: dict[str, str] | None = None
        failures = 0
        last_error: Exception | None = None
        spent = Usage()
        for idx in range(self.N):
            rid = start + idx
            mod = self.module.deepcopy()
            named = mod.named_predictors()
            to_original = {id(copy): original for (_, copy), original in zip(named, originals, strict=True)}
            for _, predictor in named:
                predictor.config = {**predictor.config, "temperature": 1.0, "rollout_id": rid}
            if advice:
                for name, predictor in named:
                    predictor.adapter = _HintAdapter(_adapter_of(predictor), advice.get(name, "N/A"))
            try:
                with trace() as calls:
                    outputs = await mod.acall(**kwargs)
                spent.add(outputs.usage)
                reward = await _reward(self._reward_fn, kwargs, outputs)
                if reward > best_reward:
                    best_reward, best_pred, best_trace, best_originals = reward, outputs, list(calls), to_original
                if self.threshold is not None and reward >= self.threshold:
                    break
                if self.gives_feedback and idx < self.N - 1:
                    advice, advised = await self._advise(mod, kwargs, calls, outputs, reward)
                    spent.add(advised)  # the advice call is this module's spend too
            except Exception as exc:  # noqa: BLE001 - an attempt may fail; fail_count says how many may
                failures += 1
                last_error = exc
                log.warning("%s: attempt %d failed with rollout id %s: %s", type(self).__name__, idx + 1, rid, exc)
                if failures > self.fail_count:
                    raise
        if best_pred is None:
            assert last_error is not None
            raise last_error
        outer = current_trace.get()
        if outer is not None and best_trace:  # as calls of the module's own predictors, not of the copy's
            outer.extend((best_originals.get(id(p), p), inputs, out) for p, inputs, out in best_trace)
        best_pred.usage = spent
        return best_pred

    async def _advise(
        self,
        mod: Module,
        kwargs: dict[str, Any],
        calls: list[tuple[Any, dict[str, Any], Any]],
        outputs: Prediction,
        reward: float,
    ) -> tuple[dict[str, str], Usage]:
        """Advice per predictor name for the next attempt, and what asking cost (none here: BestOfN only
        samples again)."""
        return {}, Usage()


class Refine(BestOfN):
    """BestOfN that, after an attempt below the threshold, asks the LM for advice to each predictor and passes
    it to them as a hint on the next attempt (DSPy's ``Refine``)."""

    gives_feedback = True

    def __init__(
        self,
        module: Module,
        N: int,  # noqa: N803 - DSPy's name
        reward_fn: RewardFn,
        threshold: float,
        fail_count: int | None = None,
    ) -> None:
        super().__init__(module, N, reward_fn, threshold, fail_count)
        self.module_code = _source(type(module))
        self.reward_fn_code = _source(reward_fn)

    async def _advise(
        self,
        mod: Module,
        kwargs: dict[str, Any],
        calls: list[tuple[Any, dict[str, Any], Any]],
        outputs: Prediction,
        reward: float,
    ) -> tuple[dict[str, str], Usage]:
        named = mod.named_predictors()
        predictor2name = {id(p): name for name, p in named}
        trajectory = [
            {"module_name": predictor2name[id(p)], "inputs": inputs, "outputs": dict(out)} for p, inputs, out in calls
        ]
        advise_kwargs: dict[str, Any] = {
            "program_code": self.module_code,
            "modules_defn": inspect_modules(mod),
            "program_inputs": kwargs,
            "program_trajectory": trajectory,
            "program_outputs": dict(outputs),
            "reward_code": self.reward_fn_code,
            "target_threshold": self.threshold,
            "reward_value": reward,
            "module_names": [name for name, _ in named],
        }
        advise_kwargs = {k: v if isinstance(v, str) else _dumps(v) for k, v in advise_kwargs.items()}
        lm = _settings.get("lm") or next((p.lm for _, p in named if p.lm is not None), None)
        with trace():  # the feedback call is not a call of the program's predictors
            prediction = await Predict(OfferFeedback, lm=lm).acall(**advise_kwargs)
        return dict(prediction.advice), prediction.usage or Usage()


class _HintAdapter(Adapter):
    """Shows a predictor an extra ``hint_`` input, then formats and calls as the adapter it wraps."""

    name = "HintAdapter"

    def __init__(self, inner: Adapter, hint: str) -> None:
        self.inner = inner
        self.hint = hint

    async def arun(  # type: ignore[override]
        self,
        lm: Any,
        signature: type[Signature],
        demos: list[Mapping[str, Any]],
        inputs: Mapping[str, Any],
        **kwargs: Any,
    ) -> tuple[list[dict[str, Any]], Usage]:
        hinted = signature.append("hint_", InputField(desc="A hint to the module from an earlier run"))
        return await self.inner.arun(lm, hinted, demos, {**inputs, "hint_": self.hint}, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"HintAdapter({self.inner!r})"


def inspect_modules(program: Module) -> str:
    """Each predictor's name, input and output fields and instructions, as DSPy's Refine describes them."""
    separator = "-" * 80
    output = [separator]
    for name, predictor in program.named_predictors():
        signature = predictor.signature
        instructions = textwrap.dedent(signature.instructions)
        instructions = ("\n" + "\t" * 2).join(["", *instructions.splitlines()])
        output.append(f"Module {name}")
        output.append("\n\tInput Fields:")
        output.append(("\n" + "\t" * 2).join(["", *describe_fields(signature.input_fields).splitlines()]))
        output.append("\tOutput Fields:")
        output.append(("\n" + "\t" * 2).join(["", *describe_fields(signature.output_fields).splitlines()]))
        output.append(f"\tOriginal Instructions: {instructions}")
        output.append(separator)
    return "\n".join(o.strip("\n") for o in output)


def recursive_mask(value: Any) -> Any:
    """``value`` with everything JSON cannot hold replaced by ``<non-serializable: Type>``."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        pass
    if isinstance(value, Mapping):
        return {k: recursive_mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [recursive_mask(v) for v in value]
    if isinstance(value, tuple):
        return tuple(recursive_mask(v) for v in value)
    return f"<non-serializable: {type(value).__name__}>"


# -- helpers -------------------------------------------------------------------------------------------------------


def _dumps(value: Any) -> str:
    return json.dumps(recursive_mask(value), indent=2, ensure_ascii=False)


def _source(obj: Any) -> str:
    """The source of a class or function (of its class, for a callable object); empty if Python has none."""
    for target in (obj, type(obj)):
        try:
            return inspect.getsource(target)
        except (TypeError, OSError):
            continue
    return ""


def _start_rollout(predictors: list[Predict]) -> int:
    for predictor in predictors:
        rollout = predictor.config.get("rollout_id")
        if isinstance(rollout, int) and not isinstance(rollout, bool):
            return rollout
    return 0


def _adapter_of(predictor: Predict) -> Adapter:
    return adapter_for(predictor.lm or _settings.get("lm"), predictor.adapter)  # the one Predict would use


async def _reward(reward_fn: RewardFn, kwargs: dict[str, Any], prediction: Prediction) -> float:
    """Score one attempt. A plain function runs in a worker thread (it may call an LM synchronously); its own
    LM calls are kept out of the trace."""
    from ..evaluate import _as_score

    token = current_trace.set(None)
    try:
        if inspect.iscoroutinefunction(reward_fn):
            value = await reward_fn(kwargs, prediction)
        else:
            ctx = contextvars.copy_context()
            loop = asyncio.get_running_loop()
            value = await loop.run_in_executor(
                runtime().forward_pool(), functools.partial(ctx.run, reward_fn, kwargs, prediction)
            )
            if inspect.isawaitable(value):
                value = await value
    finally:
        current_trace.reset(token)
    return _as_score(value)


__all__ = ["BestOfN", "OfferFeedback", "Refine", "inspect_modules", "recursive_mask"]
