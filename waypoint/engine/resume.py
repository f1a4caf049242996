"""Resume values: matching a `Command(resume=...)` to the interrupts that wait for it.

Pure functions over the pending records of a checkpoint (task id -> channel -> value):
no run, no store. The loop calls them when a run resumes; nodes read the answers through
their task runtime (`interrupt()` in context.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from ..constants import INTERRUPT
from ..errors import InvalidResumeError
from ..types import Interrupt
from .budget import apply_answer, is_budget_question

NO_RESUME: Any = object()


class ResumeMap(dict):  # type: ignore[type-arg]
    """Resume values keyed by interrupt id, handed down to a nested graph."""


class OwnAnswer:
    """The answer to a task's single pending interrupt, given by that interrupt's id."""

    __slots__ = ("interrupt_id", "value")

    def __init__(self, interrupt_id: str, value: Any) -> None:
        self.interrupt_id = interrupt_id
        self.value = value


def interrupt_id(task_id: str, index: int) -> str:
    """The stable id of a task's `index`-th interrupt (the same on every re-run)."""
    return hashlib.blake2b(f"{task_id}:{index}".encode(), digest_size=16).hexdigest()


def take_budget_answers(pending: dict[str, dict[str, Any]], guard: Any, resume: Any
                        ) -> tuple[Any, BaseException | None]:
    """Answers to budget questions are for the run, not for a node: apply them to `guard`.

    Removes the questions from `pending`. Returns (what is left of `resume` for the nodes'
    own interrupts, NO_RESUME if none; the error that stops the run if a person said so).
    """
    questions: dict[str, Interrupt] = {}
    others = 0
    for record in pending.values():
        items = record.get(INTERRUPT)
        if not items:
            continue
        kept = [i for i in items if not is_budget_question(i)]
        questions.update((i.id, i) for i in items if is_budget_question(i))
        others += len(kept)
        record[INTERRUPT] = kept
    if not questions:
        return resume, None
    if isinstance(resume, dict) and any(k in questions for k in resume):
        answers = [(resume[k], questions[k]) for k in resume if k in questions]
        resume = {k: v for k, v in resume.items() if k not in questions} or NO_RESUME
    elif others == 0:
        answers = [(resume, q) for q in questions.values()]
        resume = NO_RESUME
    else:
        raise InvalidResumeError(
            f"a budget question and {others} other interrupt(s) are pending: answer them "
            f"with Command(resume={{interrupt_id: value, ...}}) (budget question ids: "
            f"{', '.join(questions)})"
        )
    if guard is None:
        raise InvalidResumeError("this run has no budget to raise: it was removed")
    stopped: BaseException | None = None
    for answer, question in answers:
        stop = apply_answer(guard, answer, question)
        if stop is not None:
            stopped = stop
    return resume, stopped


def assign_resume(pending: dict[str, dict[str, Any]], resume: Any,
                  by_task: dict[str, Any], first_task: str | None, thread_id: Any) -> None:
    """File `resume` under the task(s) whose interrupts it answers, in `by_task`.

    A dict of interrupt ids answers several interrupts; anything else answers the only
    pending one (or, with none pending, the first task: `first_task`).
    """
    owners: dict[str, str] = {}
    waiting: dict[str, list[Interrupt]] = {}
    for task_id, record in pending.items():
        for item in record.get(INTERRUPT, ()):
            owners[item.id] = task_id
            waiting.setdefault(task_id, []).append(item)
    if isinstance(resume, dict) and resume and (
        any(k in owners for k in resume) or all(_looks_like_id(k) for k in resume)
    ):
        unknown = [k for k in resume if k not in owners]
        if unknown:
            raise InvalidResumeError(
                f"resume map names interrupt id(s) {unknown} that are not pending "
                f"(pending: {sorted(owners)})"
            )
        for answered, value in resume.items():
            task_id = owners[answered]
            if len(waiting[task_id]) == 1 and waiting[task_id][0].id == answered and (
                task_id not in by_task
            ):
                by_task[task_id] = OwnAnswer(answered, value)
            else:
                current = by_task.get(task_id)
                merged = ResumeMap() if not isinstance(current, ResumeMap) else current
                if isinstance(current, OwnAnswer):
                    merged[current.interrupt_id] = current.value
                merged[answered] = value
                by_task[task_id] = merged
        return
    if len(waiting) > 1 or (len(waiting) == 1 and len(next(iter(waiting.values()))) > 1):
        raise InvalidResumeError(
            f"{len(owners)} interrupts are pending ({', '.join(sorted(owners))}); resume "
            f"them with Command(resume={{interrupt_id: value, ...}})"
        )
    if waiting:
        by_task[next(iter(waiting))] = resume
        return
    if first_task is None:
        raise InvalidResumeError(
            f"thread {thread_id!r} has no pending task: there is nothing to resume"
        )
    by_task[first_task] = resume


def _looks_like_id(key: Any) -> bool:
    return isinstance(key, str) and len(key) == 32 and all(c in "0123456789abcdef" for c in key)


def group_pending(writes: Iterable[tuple[str, str, Any]]) -> dict[str, dict[str, Any]]:
    """A checkpoint's pending writes as task id -> channel -> value."""
    grouped: dict[str, dict[str, Any]] = {}
    for task_id, channel, value in writes:
        grouped.setdefault(task_id, {})[channel] = value
    return grouped
