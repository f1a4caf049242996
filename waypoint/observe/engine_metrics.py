"""Prometheus metrics of what runs do inside: node attempts, retries, timeouts, model
calls with their tokens and cost, tool calls.

An engine observer (waypoint/engine/observers.py) that counts as scopes close. A server
or worker process registers one while it runs, into its own registry, so `/metrics`
shows the steps and model spend of the runs this process executed. Labels are graph,
node, model and tool names: bounded by the graphs deployed, never ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from ..engine.observers import Observer, Scope

_STEP_SECONDS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


def _graph_of(scope: Scope) -> str:
    run = scope.parent
    while run is not None and run.kind != "run":
        run = run.parent
    return str(run.attrs.get("graph") or run.name) if run is not None else ""


class EngineMetrics(Observer):
    """Counts what the runs of this process do; see docs/observability.md for names."""

    def __init__(self, registry: CollectorRegistry) -> None:
        reg = registry
        self.attempts = Counter(
            "waypoint_node_attempts", "Node attempts, by how they ended (ok, retry, error, "
            "interrupted).", ["graph", "node", "outcome"], registry=reg)
        self.step_duration = Histogram(
            "waypoint_node_duration_seconds", "How long one attempt of a node ran.",
            ["graph", "node"], buckets=_STEP_SECONDS, registry=reg)
        self.retries = Counter("waypoint_node_retries", "Node attempts that failed and were "
                               "retried.", ["graph", "node"], registry=reg)
        self.timeouts = Counter("waypoint_node_timeouts", "Node attempts stopped by a time "
                                "limit.", ["graph", "node"], registry=reg)
        self.model_calls = Counter("waypoint_model_calls", "Model calls, by outcome.",
                                   ["model", "outcome"], registry=reg)
        self.model_tokens = Counter("waypoint_model_tokens", "Tokens of model calls, by "
                                    "direction (input, output).", ["model", "direction"],
                                    registry=reg)
        self.model_cost = Counter("waypoint_model_cost_usd", "Cost of model calls whose "
                                  "price is known, in USD.", ["model"], registry=reg)
        self.model_unpriced = Counter("waypoint_model_unpriced_calls", "Model calls whose "
                                      "price is unknown (not in the cost).", ["model"],
                                      registry=reg)
        self.model_duration = Histogram(
            "waypoint_model_duration_seconds", "Latency of model calls.", ["model"],
            buckets=_STEP_SECONDS, registry=reg)
        self.tool_calls = Counter("waypoint_tool_calls", "Tool calls, by outcome.",
                                  ["tool", "outcome"], registry=reg)
        self.runs = Counter("waypoint_graph_runs", "Graph runs (and subgraph runs) this "
                            "process executed, by how they ended.", ["graph", "status"],
                            registry=reg)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, kept: labels are bounded names (graphs, nodes), and
        the library's lookup (a lock and validation per call) shows in a server's profile."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def scope_ended(self, scope: Scope, handle: Any) -> None:
        kind, attrs = scope.kind, scope.attrs
        if kind == "attempt":
            graph, node = _graph_of(scope), scope.name
            outcome = str(attrs.get("outcome") or "ok")
            self._child(self.attempts, graph, node, outcome).inc()
            self._child(self.step_duration, graph, node).observe(scope.elapsed)
            if outcome == "retry":
                self.retries.labels(graph, node).inc()
            if attrs.get("timeout"):
                self.timeouts.labels(graph, node).inc()
        elif kind == "model":
            self._model(scope.name, attrs, scope.elapsed)
        elif kind == "tool":
            self.tool_calls.labels(scope.name, str(attrs.get("outcome") or "ok")).inc()
        elif kind == "run":
            self._child(self.runs, str(attrs.get("graph") or scope.name),
                        str(attrs.get("status") or "success")).inc()

    def _model(self, name: str, attrs: Mapping[str, Any], elapsed: float) -> None:
        model = str(attrs.get("response_model") or name)
        self.model_calls.labels(model, str(attrs.get("outcome") or "ok")).inc()
        self.model_duration.labels(model).observe(attrs.get("latency_s") or elapsed)
        for direction in ("input", "output"):
            tokens = attrs.get(f"{direction}_tokens")
            if tokens:
                self.model_tokens.labels(model, direction).inc(tokens)
        cost = attrs.get("cost_usd")
        if cost is not None:
            self.model_cost.labels(model).inc(cost)
        elif attrs.get("outcome") == "ok":
            self.model_unpriced.labels(model).inc()
