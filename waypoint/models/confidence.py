"""How sure the model was of a field it filled: the probability of the tokens that spell it.

A label from constrained decoding always looks certain: the grammar only lets a valid
choice through. The model's own token log-probabilities (reported by OpenAI-compatible
servers and llama.cpp before the grammar filters them) say how much of its probability
went to the label it wrote, which is what a confidence threshold or an out-of-
distribution check needs. The figure is `exp(sum of the logprobs of the tokens that
overlap the field's value in the answer)`: 1.0 when no other spelling was likely.
Thresholds are calibrated on an eval set (`calibrate_threshold`), not assumed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

if TYPE_CHECKING:
    from .base import ChatModel, ModelResponse

SchemaT = TypeVar("SchemaT", bound=BaseModel)


def value_span(text: str, field: str) -> tuple[int, int] | None:
    """Where the value of top-level key `field` sits in the JSON `text` (first match)."""
    match = re.search(r'"' + re.escape(field) + r'"\s*:\s*', text)
    if match is None:
        return None
    start = match.end()
    try:
        _, end = json.JSONDecoder(strict=False).raw_decode(text, start)
    except ValueError:
        return None
    return start, end


def span_confidence(logprobs: Sequence[dict[str, Any]], span: tuple[int, int]) -> float | None:
    """exp(sum of logprobs) over the tokens overlapping `span` of their joined text."""
    total, position, seen = 0.0, 0, False
    start, end = span
    for entry in logprobs:
        token = str(entry.get("token", ""))
        token_end = position + len(token)
        if token_end > start and position < end:
            total += float(entry["logprob"])
            seen = True
        position = token_end
        if position >= end:
            break
    return math.exp(total) if seen else None


def field_confidences(response: ModelResponse, fields: Sequence[str]) -> dict[str, float | None]:
    """The confidence of each of `fields` in a structured answer; None where the provider
    gave no logprobs or the field is not in the answer."""
    text = response.message.text
    logprobs = response.logprobs or []
    joined = "".join(str(e.get("token", "")) for e in logprobs)
    out: dict[str, float | None] = {}
    for name in fields:
        span = value_span(text, name)
        # Token offsets are only meaningful when the tokens spell the answer's text.
        out[name] = (span_confidence(logprobs, span)
                     if span is not None and logprobs and joined == text else None)
    return out


def structured_with_confidence(model: ChatModel, messages: Any, schema: type[SchemaT], *,
                               fields: Sequence[str] | None = None, **options: Any
                               ) -> tuple[SchemaT, dict[str, float | None]]:
    """`model.structured(...)` plus the confidence of `fields` (default: every field)."""
    from .structured import structured_response

    options.setdefault("logprobs", True)
    value, response = structured_response(model, messages, schema, **options)
    names = list(fields) if fields is not None else list(type(value).model_fields)
    return value, field_confidences(response, names)


async def astructured_with_confidence(model: ChatModel, messages: Any, schema: type[SchemaT],
                                      *, fields: Sequence[str] | None = None, **options: Any
                                      ) -> tuple[SchemaT, dict[str, float | None]]:
    from .structured import astructured_response

    options.setdefault("logprobs", True)
    value, response = await astructured_response(model, messages, schema, **options)
    names = list(fields) if fields is not None else list(type(value).model_fields)
    return value, field_confidences(response, names)


def calibrate_threshold(scored: Sequence[tuple[float | None, bool]], *,
                        min_precision: float = 0.9) -> float:
    """The lowest confidence threshold at which the answers kept (confidence ≥ threshold)
    are right at least `min_precision` of the time, from `(confidence, was_right)` pairs
    of a labelled set. Answers under it go to a person. 1.0 when no threshold reaches
    the precision (send everything to a person); a missing confidence counts as 0."""
    if not 0 < min_precision <= 1:
        raise ValueError(f"min_precision must be in (0, 1], got {min_precision!r}")
    pairs = sorted(((c or 0.0, ok) for c, ok in scored), reverse=True)
    best = 1.0
    right = 0
    for kept, (confidence, ok) in enumerate(pairs, start=1):
        right += ok
        next_lower = pairs[kept][0] if kept < len(pairs) else -1.0
        if right / kept >= min_precision and next_lower < confidence:
            best = confidence
    return best
