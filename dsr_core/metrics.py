"""Metrics: normalized exact match, token F1 (SQuAD's normalization), DSPy's metrics, and LLM judges.

A metric is ``metric(example, prediction, trace=None) -> float | bool`` (DSPy's convention); async
metrics work too. ``exact_match`` and ``f1`` compare the ``answer`` field; ``ExactMatch("label")`` and
``F1("summary")`` compare another one. A gold value may be a list of acceptable answers.

DSPy's own metrics keep their signatures and results: ``answer_exact_match(example, pred, trace=None,
frac=1.0)`` and ``answer_passage_match`` (booleans), and the LM-judged modules ``SemanticF1`` and
``CompleteAndGrounded`` (``Prediction(score=...)``; with a trace, the score is ``score >= threshold``).
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from typing import Any

from .errors import DsrError
from .modules.module import Module
from .primitives import Prediction
from .signatures import InputField, OutputField, Signature, ensure_signature

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_text(text: Any) -> str:
    """DSPy's normalization: Unicode NFD, lowercase, drop punctuation and articles, collapse whitespace."""
    text = unicodedata.normalize("NFD", str(text)).lower().translate(_PUNCT)
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


# -- DSPy's metrics ---------------------------------------------------------------------------------------------


def em_score(prediction: str, ground_truth: str) -> bool:
    """DSPy's exact match of two strings after ``normalize_text``."""
    return normalize_text(prediction) == normalize_text(ground_truth)


def _dspy_f1(prediction: str, ground_truth: str) -> float:
    """DSPy's token F1: 0 without a common token (two empty strings included)."""
    pred_tokens, gold_tokens = normalize_text(prediction).split(), normalize_text(ground_truth).split()
    common = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred_tokens), common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def EM(prediction: str, answers_list: list[str]) -> bool:  # noqa: N802 - DSPy's name
    """True if any reference equals the prediction after normalization."""
    assert isinstance(answers_list, list)
    return max(em_score(prediction, answer) for answer in answers_list)


def _answers(example: Any) -> list[str]:
    answer = example.answer
    if isinstance(answer, str):
        return [answer]
    if isinstance(answer, list):
        return answer
    raise ValueError(f"Invalid answer type: {type(answer)}")


def answer_exact_match(example: Any, pred: Any, trace: Any = None, frac: float = 1.0) -> bool:
    """DSPy's metric: ``pred.answer`` against ``example.answer`` (a string or a list of them); exact match
    when ``frac >= 1.0``, else whether the best token F1 reaches ``frac``."""
    answers = _answers(example)
    if frac >= 1.0:
        return EM(pred.answer, answers)
    return max(_dspy_f1(pred.answer, answer) for answer in answers) >= frac


def answer_passage_match(example: Any, pred: Any, trace: Any = None) -> bool:
    """DSPy's metric: does any passage of ``pred.context`` contain one of the answers (as a run of DPR tokens)?"""
    answers = [dpr_tokens(normalize_text(answer)) for answer in _answers(example)]
    return any(_has_answer(answers, normalize_text(passage)) for passage in pred.context)


def dpr_tokens(text: str) -> list[str]:
    """DPR's tokens (as DSPy's ``DPR_normalize``): after NFD, each run of letters, digits and marks, and
    every other character that is neither a separator nor a control character, lowercased."""
    tokens: list[str] = []
    word: list[str] = []
    for char in unicodedata.normalize("NFD", text):
        kind = unicodedata.category(char)[0]
        if kind in "LNM":
            word.append(char)
            continue
        if word:
            tokens.append("".join(word).lower())
            word = []
        if kind not in "ZC":
            tokens.append(char.lower())
    if word:
        tokens.append("".join(word).lower())
    return tokens


def _has_answer(tokenized_answers: list[list[str]], text: str) -> bool:
    words = dpr_tokens(text)
    for answer in tokenized_answers:
        for i in range(len(words) - len(answer) + 1):
            if answer == words[i : i + len(answer)]:
                return True
    return False


def _clamped_f1(precision: float, recall: float) -> float:
    """F1 of a precision and a recall, each clamped to [0, 1] (DSPy's auto-evaluation)."""
    precision, recall = max(0.0, min(1.0, precision)), max(0.0, min(1.0, recall))
    return 0.0 if precision + recall == 0 else 2 * (precision * recall) / (precision + recall)


class SemanticRecallPrecision(Signature):
    """
    Compare a system's response to the ground truth to compute its recall and precision.
    If asked to reason, enumerate key ideas in each response, and whether they are present in the other response.
    """

    question: str = InputField()
    ground_truth: str = InputField()
    system_response: str = InputField()
    recall: float = OutputField(desc="fraction (out of 1.0) of ground truth covered by the system response")
    precision: float = OutputField(desc="fraction (out of 1.0) of system response covered by the ground truth")


class DecompositionalSemanticRecallPrecision(Signature):
    """
    Compare a system's response to the ground truth to compute recall and precision of key ideas.
    You will first enumerate key ideas in each response, discuss their overlap, and then report recall and precision.
    """

    question: str = InputField()
    ground_truth: str = InputField()
    system_response: str = InputField()
    ground_truth_key_ideas: str = OutputField(desc="enumeration of key ideas in the ground truth")
    system_response_key_ideas: str = OutputField(desc="enumeration of key ideas in the system response")
    discussion: str = OutputField(desc="discussion of the overlap between ground truth and system response")
    recall: float = OutputField(desc="fraction (out of 1.0) of ground truth covered by the system response")
    precision: float = OutputField(desc="fraction (out of 1.0) of system response covered by the ground truth")


class AnswerCompleteness(Signature):
    """
    Estimate the completeness of a system's responses, against the ground truth.
    You will first enumerate key ideas in each response, discuss their overlap, and then report completeness.
    """

    question: str = InputField()
    ground_truth: str = InputField()
    system_response: str = InputField()
    ground_truth_key_ideas: str = OutputField(desc="enumeration of key ideas in the ground truth")
    system_response_key_ideas: str = OutputField(desc="enumeration of key ideas in the system response")
    discussion: str = OutputField(desc="discussion of the overlap between ground truth and system response")
    completeness: float = OutputField(desc="fraction (out of 1.0) of ground truth covered by the system response")


class AnswerGroundedness(Signature):
    """
    Estimate the groundedness of a system's responses, against real retrieved documents written by people.
    You will first enumerate whatever non-trivial or check-worthy claims are made in the system response, and then
    discuss the extent to which some or all of them can be deduced from the retrieved context and basic commonsense.
    """

    question: str = InputField()
    retrieved_context: str = InputField()
    system_response: str = InputField()
    system_response_claims: str = OutputField(
        desc="enumeration of non-trivial or check-worthy claims in the system response"
    )
    discussion: str = OutputField(desc="discussion of how supported the claims are by the retrieved context")
    groundedness: float = OutputField(
        desc="fraction (out of 1.0) of system response supported by the retrieved context"
    )


class SemanticF1(Module):
    """DSPy's LM-judged semantic F1 of ``pred.response`` against ``example.response`` (the judge is the
    configured LM unless ``set_lm`` gives it one). ``threshold`` turns the score into a pass when traced."""

    def __init__(self, threshold: float = 0.66, decompositional: bool = False) -> None:
        from .modules.chain_of_thought import ChainOfThought

        self.threshold = threshold
        signature = DecompositionalSemanticRecallPrecision if decompositional else SemanticRecallPrecision
        self.module = ChainOfThought(signature)

    async def aforward(self, example: Any, pred: Any, trace: Any = None) -> Prediction:  # type: ignore[override]
        scores = await self.module.acall(
            question=example.question, ground_truth=example.response, system_response=pred.response
        )
        score = _clamped_f1(scores.precision, scores.recall)
        return Prediction(score=score if trace is None else score >= self.threshold)


class CompleteAndGrounded(Module):
    """DSPy's LM-judged F1 of completeness (against ``example.response``) and groundedness (in
    ``pred.context``) of ``pred.response``."""

    def __init__(self, threshold: float = 0.66) -> None:
        from .modules.chain_of_thought import ChainOfThought

        self.threshold = threshold
        self.completeness_module = ChainOfThought(AnswerCompleteness)
        self.groundedness_module = ChainOfThought(AnswerGroundedness)

    async def aforward(self, example: Any, pred: Any, trace: Any = None) -> Prediction:  # type: ignore[override]
        completeness = await self.completeness_module.acall(
            question=example.question, ground_truth=example.response, system_response=pred.response
        )
        groundedness = await self.groundedness_module.acall(
            question=example.question, retrieved_context=pred.context, system_response=pred.response
        )
        score = _clamped_f1(groundedness.groundedness, completeness.completeness)
        return Prediction(score=score if trace is None else score >= self.threshold)


class JudgeSignature(Signature):
    """Judge whether the response meets the criteria, given the task inputs and the reference answer.
    Give a score between 0.0 (fails completely) and 1.0 (fully meets the criteria)."""

    criteria: str = InputField(desc="what a good response must do")
    task_inputs: str = InputField(desc="the inputs the response was produced from")
    reference: str = InputField(desc="a reference (gold) output; may be empty")
    response: str = InputField(desc="the response to judge")
    score: float = OutputField(desc="a number from 0.0 to 1.0")


FEEDBACK_FIELD = "feedback"
FEEDBACK_DESC = "why the response gets this score: what it does right or wrong against the criteria"


class LLMJudge:
    """Score predictions with a separate judge LM.

    ``LLMJudge("The answer is factually consistent with the reference.", lm=judge_lm)`` uses a built-in
    judging signature; pass a Signature instead to judge your own way (its inputs are filled from the
    example and the prediction by name, its first float/bool output is the score).

    With ``feedback=True`` the judge explains its verdict and the metric returns
    ``Prediction(score=..., feedback=...)`` (DSPy's feedback convention, which GEPA's reflection reads): the
    feedback is the judge's text outputs, or a ``feedback`` output added before the score when its
    signature has none.
    """

    def __init__(
        self,
        criteria_or_signature: Any = "The response correctly and fully answers the task.",
        *,
        lm: Any = None,
        fields: list[str] | None = None,
        feedback: bool = False,
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
        outputs = self.signature.output_fields
        score_fields = [n for n, f in outputs.items() if f.annotation in (float, int, bool)]
        if not score_fields:
            raise DsrError(
                f"LLMJudge: the signature {self.signature.signature} has no float/int/bool output to use as score"
            )
        self.score_field = score_fields[0]
        self.feedback = feedback
        self.feedback_fields: list[str] = []
        if feedback:
            self.feedback_fields = [n for n, f in outputs.items() if n != self.score_field and f.annotation is str]
            if not self.feedback_fields:  # the verdict comes before the score, so the score follows from it
                self.signature = self.signature.prepend(FEEDBACK_FIELD, OutputField(desc=FEEDBACK_DESC))
                self.feedback_fields = [FEEDBACK_FIELD]
        self.predict = Predict(self.signature)
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

    async def __call__(self, example: Any, prediction: Any, trace: Any = None) -> float | Prediction:
        judged = await self.predict.acall(**self._inputs(example, prediction), **({"lm": self.lm} if self.lm else {}))
        value = judged[self.score_field]
        score = min(1.0, max(0.0, float(value)))
        if not self.feedback:
            return score
        texts = [(name, judged[name]) for name in self.feedback_fields if judged.get(name) not in (None, "")]
        if len(texts) == 1:
            text = str(texts[0][1])
        else:
            text = "\n".join(f"{name}: {value}" for name, value in texts)
        return Prediction(score=score, feedback=text)


def _render(values: dict[str, Any]) -> str:
    return "\n".join(f"{k}: {v}" for k, v in values.items())


BUILTIN_METRICS = {"exact_match": exact_match, "f1": f1}
