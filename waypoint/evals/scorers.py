"""Scorers: how right a row's outcome is, as a number in [0, 1].

A scorer is any callable `(case, outcome) -> float | Score | None`. None means "this row
gives me nothing to check" (e.g. `path` on a row without `expected_path`): the scorer is
skipped for that row rather than scored 0, so one scorer list serves a mixed dataset.
A row's score is the mean of the scorers that applied; a scorer that raises scores 0
for that row, its error in the detail.
"""

from __future__ import annotations

import importlib
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .dataset import EvalCase
from .normalize import is_number, plain, same, short
from .outcome import RowOutcome

Scorer = Callable[[EvalCase, RowOutcome], "float | Score | None"]
DEFAULT_SCORERS = ("fields",)


@dataclass(frozen=True, slots=True)
class Score:
    """A scorer's verdict on one row: `value` in [0, 1] and why, in a few words."""

    value: float
    detail: str = ""

    def __post_init__(self) -> None:
        value = self.value
        if isinstance(value, bool) or not is_number(value) or not 0.0 <= value <= 1.0 \
                or math.isnan(value):
            raise ValueError(f"a score must be a number in [0, 1], got {value!r}")
        object.__setattr__(self, "value", float(value))


def as_score(result: Any) -> Score | None:
    """A scorer's return value as a Score (None stays None: the scorer was skipped)."""
    if result is None or isinstance(result, Score):
        return result
    return Score(result)


# -- the built-in scorers ------------------------------------------------------------------


def fields(case: EvalCase, outcome: RowOutcome) -> Score | None:
    """Every key of `expected` equals the final state's, after JSON normalisation; the
    score is the fraction of keys right."""
    if not case.expected:
        return None
    got = plain(outcome.values)
    wrong: list[str] = []
    for key, want in case.expected.items():
        if key not in got:
            wrong.append(f"{key}: expected {short(want, 60)}, missing")
        elif not same(plain(want), got[key]):
            wrong.append(f"{key}: expected {short(want, 60)}, got {short(got[key], 60)}")
    right = len(case.expected) - len(wrong)
    return Score(right / len(case.expected), "; ".join(wrong))


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def path(case: EvalCase, outcome: RowOutcome) -> Score | None:
    """`expected_path` against the nodes run: 1.0 when equal, else the longest common
    subsequence over the longer of the two (nodes in the right order earn credit)."""
    if case.expected_path is None:
        return None
    want, got = list(case.expected_path), list(outcome.path)
    if want == got:
        return Score(1.0)
    longest = max(len(want), len(got))
    return Score(_lcs(want, got) / longest if longest else 1.0,
                 f"expected {' → '.join(want) or '(none)'}, got {' → '.join(got) or '(none)'}")


def _args_match(want: dict[str, Any] | None, got: dict[str, Any]) -> bool:
    if want is None:
        return True
    got = plain(got)
    return all(k in got and same(plain(v), got[k]) for k, v in want.items())


def tools(case: EvalCase, outcome: RowOutcome) -> Score | None:
    """`expected_tools` against the AI messages' tool calls, in any order: each expected
    call is matched to one unused call of that name whose args hold the given ones (args
    not given are not checked); the score is matched / max(expected, made)."""
    if case.expected_tools is None:
        return None
    made = list(outcome.tool_calls)
    unused = list(range(len(made)))
    missing: list[str] = []
    for want in case.expected_tools:
        hit = next((i for i in unused if made[i].get("name") == want["name"]
                    and _args_match(want.get("args"), made[i].get("args") or {})), None)
        if hit is None:
            missing.append(short(want, 80))
        else:
            unused.remove(hit)
    longest = max(len(case.expected_tools), len(made))
    matched = len(case.expected_tools) - len(missing)
    notes = []
    if missing:
        notes.append(f"missing {', '.join(missing)}")
    if unused:
        notes.append(f"unexpected {', '.join(short(made[i], 80) for i in unused)}")
    return Score(matched / longest if longest else 1.0, "; ".join(notes))


def _tolerances(case: EvalCase) -> tuple[float, float]:
    tol = case.tolerance
    if tol is None:
        return 1e-9, 0.0
    if isinstance(tol, dict):
        return tol.get("rel", 0.0), tol.get("abs", 0.0)
    return float(tol), 0.0


def numeric(case: EvalCase, outcome: RowOutcome) -> Score | None:
    """The numeric keys of `expected` within `tolerance`, as `math.isclose` decides:
    a number is relative (`|got - expected| <= tol * max(|got|, |expected|)`), an object
    `{"rel": r, "abs": a}` passes when either bound holds; default: rel 1e-9. Score: the
    fraction of numeric keys within tolerance."""
    wanted = {k: v for k, v in case.expected.items() if is_number(v)}
    if not wanted:
        return None
    rel, absolute = _tolerances(case)
    got = plain(outcome.values)
    wrong: list[str] = []
    for key, want in wanted.items():
        value = got.get(key)
        if not is_number(value):
            wrong.append(f"{key}: expected {want}, got {short(value, 40)}")
        elif not math.isclose(value, want, rel_tol=rel, abs_tol=absolute):
            wrong.append(f"{key}: expected {want}, got {value} (off by {abs(value - want):.4g})")
    return Score((len(wanted) - len(wrong)) / len(wanted), "; ".join(wrong))


@lru_cache(maxsize=16)
def _graph_output_schema(graph: Any) -> dict[str, Any]:
    from ..graph.json_schema import graph_schemas

    return graph_schemas(graph)["output_schema"]


def _schema_errors(schema: dict[str, Any], data: Any) -> list[str]:
    import jsonschema

    validator_cls = jsonschema.validators.validator_for(schema, jsonschema.Draft202012Validator)
    found = sorted(validator_cls(schema).iter_errors(data), key=lambda e: list(e.path))
    return [f"{'.'.join(str(p) for p in e.path) or '(root)'}: {e.message}" for e in found]


class SchemaScorer:
    """The final state validates against the graph's output schema (the JSON Schema the
    server publishes: a pydantic schema's required fields are required, TypedDict keys
    are not) and against the row's `expected_schema` when it has one. 1.0 or 0.0."""

    name = "schema"

    def prepare(self) -> None:
        try:
            import jsonschema  # noqa: F401
        except ImportError:
            raise ValueError("the schema scorer needs jsonschema: pip install jsonschema "
                             "(or waypoint[server])") from None

    def __call__(self, case: EvalCase, outcome: RowOutcome) -> Score | None:
        graph = outcome.graph
        if graph is None and case.expected_schema is None:
            return None
        problems: list[str] = []
        if graph is not None:
            keys = getattr(getattr(graph, "spec", None), "output_keys", None)
            output = {k: v for k, v in outcome.values.items() if not keys or k in keys}
            problems += [f"output schema: {p}" for p in _schema_errors(
                _graph_output_schema(graph), plain(output))]
        if case.expected_schema is not None:
            problems += [f"expected_schema: {p}" for p in _schema_errors(
                case.expected_schema, plain(outcome.values))]
        if not problems:
            return Score(1.0)
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        return Score(0.0, "; ".join(problems[:3]) + more)


class _DefaultJudge:
    """`judge` by name: an LLMJudge on the local model, loaded on first use."""

    name = "judge"

    def __init__(self) -> None:
        self._judge: Any = None

    def prepare(self) -> None:
        if self._judge is None:
            from .judge import default_judge

            self._judge = default_judge()

    def __call__(self, case: EvalCase, outcome: RowOutcome) -> Score | None:
        self.prepare()
        return self._judge(case, outcome)


SCORERS: dict[str, Scorer] = {
    "fields": fields,
    "path": path,
    "tools": tools,
    "schema": SchemaScorer(),
    "numeric": numeric,
    "judge": _DefaultJudge(),
}


# -- choosing scorers ----------------------------------------------------------------------


def _import_scorer(spec: str) -> Scorer:
    module_name, _, attr = spec.partition(":")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"scorer {spec!r}: cannot import {module_name} ({exc})") from None
    found = getattr(module, attr, None)
    if not callable(found):
        raise ValueError(f"scorer {spec!r}: {module_name} has no function {attr!r}")
    return found


def scorer_name(scorer: Any) -> str:
    return str(getattr(scorer, "name", None) or getattr(scorer, "__name__", None)
               or type(scorer).__name__)


def resolve_scorers(chosen: Any = None) -> list[tuple[str, Scorer]]:
    """(name, scorer) pairs from names (built-in or `module:function`), callables, or a
    `{name: callable}` mapping; None means the default (`fields`). Raises ValueError for
    an unknown name, and lets each scorer check what it needs (`prepare()`) up front, so
    a missing dependency stops the eval before the first row rather than on every row."""
    if chosen is None:
        chosen = list(DEFAULT_SCORERS)
    elif isinstance(chosen, str) or callable(chosen):
        chosen = [chosen]
    items: list[tuple[str, Any]]
    if isinstance(chosen, Mapping):
        items = [(str(k), v) for k, v in chosen.items()]
    else:
        items = []
        for item in chosen:
            if isinstance(item, str):
                if item in SCORERS:
                    items.append((item, SCORERS[item]))
                elif ":" in item:
                    items.append((item, _import_scorer(item)))
                else:
                    raise ValueError(f"unknown scorer {item!r} (built-in: "
                                     f"{', '.join(SCORERS)}; or module:function)")
            elif callable(item):
                items.append((scorer_name(item), item))
            else:
                raise ValueError(f"a scorer is a name or a callable, got {item!r}")
    if not items:
        raise ValueError("no scorers given")
    names = [name for name, _ in items]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise ValueError(f"scorer name(s) given twice: {', '.join(doubled)}")
    for _, scorer in items:
        prepare = getattr(scorer, "prepare", None)
        if callable(prepare):
            prepare()
    return items


def apply_scorers(case: EvalCase, outcome: RowOutcome, scorers: list[tuple[str, Scorer]]
                  ) -> tuple[dict[str, float], dict[str, str]]:
    """Each applicable scorer's value and detail for one row (skipped ones are absent)."""
    values: dict[str, float] = {}
    details: dict[str, str] = {}
    for name, scorer in scorers:
        try:
            score = as_score(scorer(case, outcome))
        except Exception as exc:
            score = Score(0.0, f"scorer failed: {type(exc).__name__}: {exc}")
        if score is None:
            continue
        values[name] = score.value
        if score.detail:
            details[name] = score.detail
    return values, details
