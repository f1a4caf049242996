"""The service's metrics: a `ServiceMetrics` per process, fed by the workers, and the
fleet's gauges read from the database when Prometheus scrapes (`GET /metrics`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..observe.metrics import FleetSnapshot, ServiceMetrics, oldest_age
from .tables import runs as run_table

if TYPE_CHECKING:
    from .context import Service


def read_fleet(service: Service) -> FleetSnapshot:
    """Runs by status, the due queue and pending approvals (blocking: run in a thread)."""
    at = time.time()
    counts, (due, oldest) = service.db.run(
        lambda tx: (run_table.status_counts(tx), run_table.queue_stats(tx, at)))
    pending = service.saver.list_pending_approvals()
    return FleetSnapshot(
        runs_by_status=counts, queue_due=due,
        queue_oldest_seconds=max(0.0, at - oldest) if oldest else 0.0,
        approvals_pending=len(pending),
        approvals_oldest_seconds=oldest_age([a.created_at for a in pending], at),
        running_here=len(service.pool.active) if service.pool is not None else 0)


def service_metrics(service: Service) -> ServiceMetrics:
    return ServiceMetrics(lambda: read_fleet(service))
