"""Extract the destination city from a travel request: one predictor, a metric, nothing else.

The bundled 135M model answers in JSON far more reliably than in the ``[[ ## field ## ]]`` chat format
(llama.cpp constrains its reply to the output schema), so the predictor uses the JSONAdapter. Zero-shot it
often extracts the wrong city or the whole request; a few demos show it what "destination" means.
"""

from __future__ import annotations

import dsr_core as dsr


class FindDestination(dsr.Signature):
    """Extract the destination city from a travel request."""

    request: str = dsr.InputField()
    city: str = dsr.OutputField(desc="the city the traveller is going to")


class TravelDestination(dsr.Module):
    def __init__(self) -> None:
        self.extract = dsr.Predict(FindDestination, adapter=dsr.JSONAdapter())

    async def aforward(self, request: str) -> dsr.Prediction:
        return await self.extract.acall(request=request)


def city_match(example: dsr.Example, prediction: dsr.Prediction, trace: object = None) -> bool:
    """The predicted city is the labeled one (case, punctuation and articles ignored)."""
    return dsr.metrics.exact_match_score(prediction.city, example.city) == 1.0
