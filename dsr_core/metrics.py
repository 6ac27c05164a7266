"""Metrics: normalized exact match, token F1 (SQuAD's normalization), and an LLM judge.

A metric is ``metric(example, prediction, trace=None) -> float | bool`` (DSPy's convention); async
metrics work too. ``exact_match`` and ``f1`` compare the ``answer`` field; ``ExactMatch("label")`` and
``F1("summary")`` compare another one. A gold value may be a list of acceptable answers.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Any

from .errors import DsrError
from .signatures import InputField, OutputField, Signature, ensure_signature

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_text(text: Any) -> str:
    """Lowercase, drop punctuation and articles, collapse whitespace."""
    text = str(text).lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _golds(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple, set)) else [value]


def exact_match_score(prediction: Any, gold: Any) -> float:
    pred = normalize_text(prediction)
    return float(any(pred == normalize_text(g) for g in _golds(gold)))


def f1_score(prediction: Any, gold: Any) -> float:
    def one(pred_text: str, gold_text: str) -> float:
        pred_tokens, gold_tokens = normalize_text(pred_text).split(), normalize_text(gold_text).split()
        if not pred_tokens or not gold_tokens:
            return float(pred_tokens == gold_tokens)
        common = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
        if common == 0:
            return 0.0
        precision, recall = common / len(pred_tokens), common / len(gold_tokens)
        return 2 * precision * recall / (precision + recall)

    return max(one(str(prediction), str(g)) for g in _golds(gold))


def _field_value(obj: Any, name: str, what: str) -> Any:
    try:
        return obj[name]
    except (KeyError, TypeError):
        raise DsrError(f"metric: the {what} has no field {name!r}") from None


class _FieldMetric:
    """Compares one field of the prediction with the same field of the example."""

    kind = ""

    def __init__(self, field: str = "answer") -> None:
        self.field = field
        self.__name__ = f"{self.kind}[{field}]"

    @staticmethod
    def compare(prediction: Any, gold: Any) -> float:
        raise NotImplementedError

    def __call__(self, example: Any, prediction: Any, trace: Any = None) -> float:
        return self.compare(
            _field_value(prediction, self.field, "prediction"), _field_value(example, self.field, "example")
        )


class ExactMatch(_FieldMetric):
    """Normalized exact match on one field (default ``answer``)."""

    kind = "exact_match"
    compare = staticmethod(exact_match_score)


class F1(_FieldMetric):
    """Token-level F1 on one field (default ``answer``)."""

    kind = "f1"
    compare = staticmethod(f1_score)


exact_match = ExactMatch("answer")
f1 = F1("answer")
answer_exact_match = exact_match  # DSPy's name


class JudgeSignature(Signature):
    """Judge whether the response meets the criteria, given the task inputs and the reference answer.
    Give a score between 0.0 (fails completely) and 1.0 (fully meets the criteria)."""

    criteria: str = InputField(desc="what a good response must do")
    task_inputs: str = InputField(desc="the inputs the response was produced from")
    reference: str = InputField(desc="a reference (gold) output; may be empty")
    response: str = InputField(desc="the response to judge")
    score: float = OutputField(desc="a number from 0.0 to 1.0")


class LLMJudge:
    """Score predictions with a separate judge LM.

    ``LLMJudge("The answer is factually consistent with the reference.", lm=judge_lm)`` uses a built-in
    judging signature; pass a Signature instead to judge your own way (its inputs are filled from the
    example and the prediction by name, its first float/bool output is the score).
    """

    def __init__(
        self,
        criteria_or_signature: Any = "The response correctly and fully answers the task.",
        *,
        lm: Any = None,
        fields: list[str] | None = None,
    ) -> None:
        from .modules.predict import Predict

        if isinstance(criteria_or_signature, str) and "->" not in criteria_or_signature:
            self.criteria: str | None = criteria_or_signature
            self.signature: type[Signature] = JudgeSignature
        else:
            self.criteria = None
            self.signature = ensure_signature(criteria_or_signature)
        self.lm = lm
        self.fields = fields
        self.predict = Predict(self.signature)
        outputs = self.signature.output_fields
        score_fields = [n for n, f in outputs.items() if f.annotation in (float, int, bool)]
        if not score_fields:
            raise DsrError(
                f"LLMJudge: the signature {self.signature.signature} has no float/int/bool output to use as score"
            )
        self.score_field = score_fields[0]
        self.__name__ = "llm_judge"

    def _inputs(self, example: Any, prediction: Any) -> dict[str, Any]:
        if self.criteria is not None:
            labels = example.labels().to_dict() if getattr(example, "input_keys", None) else {}
            task_inputs = example.inputs().to_dict() if getattr(example, "input_keys", None) else example.to_dict()
            response = prediction.to_dict() if hasattr(prediction, "to_dict") else dict(prediction)
            if self.fields:
                response = {k: v for k, v in response.items() if k in self.fields}
                labels = {k: v for k, v in labels.items() if k in self.fields}
            return {
                "criteria": self.criteria,
                "task_inputs": _render(task_inputs),
                "reference": _render(labels),
                "response": _render(response),
            }
        values = {**(example.to_dict() if hasattr(example, "to_dict") else dict(example))}
        values.update(prediction.to_dict() if hasattr(prediction, "to_dict") else dict(prediction))
        return {name: values[name] for name in self.signature.input_fields if name in values}

    async def __call__(self, example: Any, prediction: Any, trace: Any = None) -> float:
        judged = await self.predict.acall(**self._inputs(example, prediction), **({"lm": self.lm} if self.lm else {}))
        value = judged[self.score_field]
        score = float(value)
        return min(1.0, max(0.0, score))


def _render(values: dict[str, Any]) -> str:
    return "\n".join(f"{k}: {v}" for k, v in values.items())


BUILTIN_METRICS = {"exact_match": exact_match, "f1": f1}
