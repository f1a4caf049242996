"""Prometheus metrics of a waypoint server or worker process (`GET /metrics`).

Two kinds: counters and histograms this process observes as it works (runs it finished
and how long they waited and ran, takeovers, fenced attempts, database outages), and
gauges read from the database at scrape time (the queue, runs by status, pending
approvals), which any process reports the same way since they describe the fleet. Each
process has its own registry, so several servers in one Python process (the tests) do not
collide, and Prometheus sums what each process counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from .engine_metrics import EngineMetrics

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)


@dataclass(frozen=True, slots=True)
class FleetSnapshot:
    """What the database says about the whole fleet at one moment."""

    runs_by_status: dict[str, int] = field(default_factory=dict)
    queue_due: int = 0
    queue_oldest_seconds: float = 0.0
    approvals_pending: int = 0
    approvals_oldest_seconds: float = 0.0
    running_here: int = 0


class _FleetCollector:
    def __init__(self, read: Callable[[], FleetSnapshot]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        snap = self._read()
        runs = GaugeMetricFamily("waypoint_runs", "Runs in the queue table, by status.",
                                 labels=["status"])
        for status, count in sorted(snap.runs_by_status.items()):
            runs.add_metric([status], count)
        yield runs
        yield GaugeMetricFamily("waypoint_queue_depth", "Pending runs that are due now.",
                                value=snap.queue_due)
        yield GaugeMetricFamily("waypoint_queue_oldest_wait_seconds", "How long the oldest "
                                "due pending run has waited.", value=snap.queue_oldest_seconds)
        yield GaugeMetricFamily("waypoint_approvals_pending", "Approvals waiting for a "
                                "decision.", value=snap.approvals_pending)
        yield GaugeMetricFamily("waypoint_approvals_oldest_age_seconds", "Age of the oldest "
                                "pending approval.", value=snap.approvals_oldest_seconds)
        yield GaugeMetricFamily("waypoint_worker_leases", "Runs this process holds a lease "
                                "on (running here).", value=snap.running_here)


class ServiceMetrics:
    """The metrics of one process; `render()` is what `/metrics` answers."""

    def __init__(self, read_fleet: Callable[[], FleetSnapshot]) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self.queue_wait = Histogram(
            "waypoint_run_queue_wait_seconds", "From a run falling due to a worker claiming "
            "it (first attempt).", ["graph"], buckets=_SECONDS, registry=reg)
        self.run_duration = Histogram(
            "waypoint_run_attempt_duration_seconds", "From claim to end of one attempt of a "
            "run, by how it ended.", ["graph", "status"], buckets=_SECONDS, registry=reg)
        self.runs_ended = Counter("waypoint_runs_ended", "Runs this process ended, by status.",
                                  ["graph", "status"], registry=reg)
        self.takeovers = Counter("waypoint_run_takeovers", "Runs taken back from a worker "
                                 "whose lease lapsed.", registry=reg)
        self.poison_runs = Counter("waypoint_poison_runs", "Runs failed after too many "
                                   "takeovers.", registry=reg)
        self.fenced = Counter("waypoint_fenced_attempts", "Attempts stopped here because "
                              "another worker took their run over.", registry=reg)
        self.outage_retries = Counter("waypoint_run_outage_retries", "Runs put back in the "
                                      "queue after their database went away.", registry=reg)
        reg.register(_FleetCollector(read_fleet))
        self.engine = EngineMetrics(reg)  # what runs do inside, once registered as observer

    def claimed(self, graph: str, attempt: int, due: float, at: float | None = None) -> None:
        if attempt == 1:
            self.queue_wait.labels(graph).observe(max(0.0, (at or time.time()) - due))

    def ended(self, graph: str, status: str, started: float) -> None:
        self.run_duration.labels(graph, status).observe(max(0.0, time.time() - started))
        self.runs_ended.labels(graph, status).inc()

    def render(self) -> tuple[bytes, str]:
        """The text exposition format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def oldest_age(times: list[Any], now: float) -> float:
    known = [t for t in times if t]
    return max(0.0, now - min(known)) if known else 0.0
