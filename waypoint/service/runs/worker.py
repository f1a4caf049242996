"""In-process workers: claim runs from the queue, execute them, record how they ended.

A dispatcher claims runs while a slot is free (woken at once when a run is created here
or NOTIFY says one was created elsewhere, and by a poll for runs that fall due later or
whose notification was lost). Each claim holds a lease that a renewer extends; a run whose
lease lapses (its worker died) is taken over by the next claim or poll of an idle worker
(the renewers look too, for workers with no free slot). Stopping a run (cancel, double
texting, drain) lets its current step finish and commit: a run never stops half way
through a step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any

from ...checkpoint.fencing import Fence, fenced
from ...errors import FencedOut
from ...observe.logs import log_context
from ..encoding import error_json
from ..tables import events as event_table
from ..tables import runs as run_table
from ..tables import threads as thread_table
from ..tables.runs import Run
from . import notices
from .broker import LiveRun, Outcome
from .execute import StoreOutage, execute, final_state

if TYPE_CHECKING:
    from ..context import Service

log = logging.getLogger("waypoint.service.runs")

class WorkerPool:
    def __init__(self, service: Service, concurrency: int) -> None:
        self.service = service
        self.concurrency = concurrency
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.active: dict[str, asyncio.Task[None]] = {}
        self.stop_reasons: dict[str, str] = {}
        self.finishing: set[str] = set()  # recording their end: never cancelled then
        self._slots = asyncio.Semaphore(concurrency) if concurrency else None
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._accepting = True
        settings = service.settings
        self.rules = run_table.ClaimRules(
            versions=service.graphs.versions(), max_running=settings.max_running_runs,
            tenant_max_running=settings.tenant_max_running_runs)

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self, *, recover_all: bool) -> None:
        """Put back runs that a dead process left running, then start claiming."""
        recovered, poisoned = await self.service.db.arun(
            lambda tx: run_table.recover_lapsed(tx, time.time(), everything=recover_all,
                                                max_takeovers=self.max_takeovers))
        await self._report_poisoned(poisoned)
        if recovered:
            self.service.metrics.takeovers.inc(len(recovered))
            log.warning("took back %d run(s) left running by a stopped server: %s",
                        len(recovered), ", ".join(recovered))
        if self.concurrency:
            self._tasks.append(asyncio.create_task(self._dispatch(), name="waypoint-dispatch"))
            self._tasks.append(asyncio.create_task(self._renew(), name="waypoint-leases"))
            if self.service.settings.postgres:  # API processes elsewhere mark cancels
                self._tasks.append(asyncio.create_task(self._watch_cancels(),
                                                       name="waypoint-cancels"))
                self._tasks.append(asyncio.create_task(self._listen(),
                                                       name="waypoint-listen"))

    @property
    def max_takeovers(self) -> int:
        return self.service.settings.max_takeovers

    async def _took_over(self, lapsed: list[str], poisoned: list[Any]) -> None:
        """Count and log the runs of dead workers put back in the queue (or failed)."""
        await self._report_poisoned(poisoned)
        if lapsed:
            self.service.metrics.takeovers.inc(len(lapsed))
            log.warning("took over %d run(s) whose worker stopped: %s", len(lapsed),
                        ", ".join(lapsed))

    async def _report_poisoned(self, runs: list[Any]) -> None:
        for run in runs:
            self.service.metrics.poison_runs.inc()
            log.error("run %s failed as a poison run: %s", run.run_id,
                      (run.error or {}).get("message"))
            await self.service.refresh_thread(run.thread_id, run.graph_id)

    def notify(self) -> None:
        """A run was created or freed a thread: look at the queue now."""
        self._wakeup.set()

    async def drain(self, timeout: float) -> None:
        """Stop claiming; ask running runs to stop at a step boundary; requeue them."""
        self._accepting = False
        for task in self._tasks:
            task.cancel()
        for run_id in list(self.active):
            self.stop(run_id, "drain")
        running = list(self.active.values())
        if running:
            _, pending = await asyncio.wait(running, timeout=timeout)
            if pending:
                log.warning("%d run(s) did not reach a step boundary within %.0f s; they are "
                            "resumed when a server starts again", len(pending), timeout)
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- stopping one run ------------------------------------------------------------------

    def stop(self, run_id: str, reason: str) -> bool:
        """Stop a run executing here at its next step boundary; False if it is not here."""
        task = self.active.get(run_id)
        if task is None or task.done() or run_id in self.finishing:
            return run_id in self.finishing
        if run_id in self.stop_reasons:  # already stopping: a second cancel() would cut
            return True                  # short the step it lets finish
        self.stop_reasons[run_id] = reason
        task.cancel()
        return True

    # -- claiming ------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        assert self._slots is not None
        settings = self.service.settings
        while self._accepting:
            await self._slots.acquire()
            try:
                claimed = await self.service.db.arun(self._claim)
            except Exception:
                self._slots.release()
                log.exception("claiming a run failed; trying again")
                await asyncio.sleep(settings.poll_interval)
                continue
            if claimed.lapsed or claimed.poisoned:
                try:
                    await self._took_over(claimed.lapsed, claimed.poisoned)
                except Exception:  # the claim stands; only its report failed
                    log.exception("reporting runs taken over failed")
            run = claimed.run
            if run is None:
                self._slots.release()
                await self._idle(settings.poll_interval, claimed.due)
                continue
            self.service.metrics.claimed(run.graph_id, run.attempt,
                                         max(run.created_at, run.not_before), run.updated_at)
            task = asyncio.create_task(self._execute(run), name=f"waypoint-run-{run.run_id}")
            self.active[run.run_id] = task
            task.add_done_callback(lambda _t, rid=run.run_id: self._done(rid))

    def _done(self, run_id: str) -> None:
        self.active.pop(run_id, None)
        self.stop_reasons.pop(run_id, None)
        self.finishing.discard(run_id)
        assert self._slots is not None
        self._slots.release()
        self.notify()  # the thread may have a queued run; a slot is free

    def _claim(self, tx: Any) -> run_table.Claimed:
        """Take back runs whose lease lapsed, then a run to start, or when the next one
        falls due (in one transaction)."""
        return run_table.claim_next(tx, self.worker_id, self.service.settings.lease_seconds,
                                    rules=self.rules, max_takeovers=self.max_takeovers)

    async def _idle(self, poll: float, due: float | None) -> None:
        wait = poll if due is None else max(0.0, min(poll, due - time.time()))
        try:
            await asyncio.wait_for(self._wakeup.wait(), wait)
        except TimeoutError:
            pass
        self._wakeup.clear()

    async def _listen(self) -> None:
        """LISTEN for other processes' runs and cancels, so a worker starts a run the API
        accepted at once; the polls stay as the fallback for a lost notification."""
        def handle(channel: str, payload: str) -> None:
            if channel == notices.CANCELS:
                self._cancel_marked(payload)
            else:
                self.notify()

        def connected() -> None:  # whatever was notified while nobody listened
            self.notify()
            self._cancel_marked(*self.active)

        await notices.listen(self.service.settings.postgres or "",
                             (notices.QUEUE, notices.CANCELS), handle, connected)

    def _cancel_marked(self, *run_ids: str) -> None:
        here = [run_id for run_id in run_ids if run_id in self.active]
        if here:
            self.service.spawn(self._stop_marked(here))

    async def _stop_marked(self, run_ids: list[str]) -> None:
        marked = await self.service.db.aread(
            lambda tx: run_table.cancel_requests(tx, run_ids))
        for marked_id, action in marked:
            self.stop(marked_id, action)

    async def _watch_cancels(self) -> None:
        """Stop runs executing here that another process asked to cancel: the API process
        marks the row and NOTIFYs (handled by `_listen` at once); this poll, every
        `poll_interval`, is the fallback for a notification lost to a reconnect."""
        while True:
            await asyncio.sleep(self.service.settings.poll_interval)
            ids = [run_id for run_id, task in self.active.items() if not task.done()]
            if not ids:
                continue
            try:
                marked = await self.service.db.aread(
                    lambda tx, ids=ids: run_table.cancel_requests(tx, ids))
            except Exception:
                log.exception("looking for cancelled runs failed")
                continue
            for run_id, action in marked:
                self.stop(run_id, action)

    async def _renew(self) -> None:
        """Extend this worker's leases, and take back runs whose worker stopped renewing
        (idle workers' claims do that first; this covers a fleet with no free slot)."""
        settings = self.service.settings
        while True:
            await asyncio.sleep(settings.lease_seconds / 3)
            try:
                lapsed, poisoned = await self.service.db.arun(
                    lambda tx: run_table.recover_lapsed(tx, time.time(),
                                                        max_takeovers=self.max_takeovers))
                await self._took_over(lapsed, poisoned)
            except Exception:
                log.exception("looking for lapsed leases failed")
                lapsed = []
            if lapsed:
                self.notify()
            ids = list(self.active)
            if not ids:
                continue
            until = time.time() + settings.lease_seconds
            # One transaction per lease on PostgreSQL: a renewal then holds one row lock at a
            # time, so it never deadlocks with commits that hold their runs' rows (fencing).
            batches = [[run_id] for run_id in ids] if settings.postgres else [ids]
            for batch in batches:
                try:
                    lost = await self.service.db.arun(
                        lambda tx, batch=batch, until=until: run_table.renew(
                            tx, self.worker_id, batch, until))
                except Exception:
                    log.exception("renewing leases failed")
                    continue
                for run_id in lost:
                    log.warning("run %s: its lease was taken over by another worker; it "
                                "stops here at its step boundary, and that step's commit "
                                "is refused", run_id)
                    self.stop(run_id, "lost")

    # -- executing -----------------------------------------------------------------------

    async def _execute(self, run: Run) -> None:
        service = self.service
        live = service.broker.open(run.run_id, run.attempt)
        reason: str | None = None
        try:
            with fenced(lease_fence(run)), log_context(  # commits check the lease; log
                    run_id=run.run_id, thread_id=run.thread_id,  # lines name the run
                    graph_id=run.graph_id, attempt=run.attempt, tenant=run.tenant):
                outcome = await execute(service, run, live)
        except asyncio.CancelledError:
            reason = self.stop_reasons.get(run.run_id)
            if reason is None:  # the server is going down without a drain
                reason = "drain"
            outcome = Outcome("interrupted")
        except StoreOutage as exc:
            log.warning("run %s lost its database (%s); it is retried from its last "
                        "checkpoint", run.run_id, exc)
            reason, outcome = "outage", Outcome("error", None, exc.error)
        except Exception as exc:  # a bug in the service, not in the graph
            log.exception("run %s crashed the worker", run.run_id)
            outcome = Outcome("error", None, error_json(exc))
        self.finishing.add(run.run_id)  # from here on a stop() must not cut it short
        if reason is None and (outcome.error or {}).get("error") == FencedOut.__name__:
            log.warning("run %s: its lease was taken over by another worker; this attempt "
                        "stops without committing", run.run_id)
            reason = "lost"
        if reason == "lost":
            service.metrics.fenced.inc()
        try:
            if reason == "outage":
                if await self._retry_later(run, live):
                    return
                reason = None  # retried too often: it fails with the database's error
            await self._finish(run, live, outcome, reason)
        except Exception:
            log.exception("recording the end of run %s failed", run.run_id)
            service.broker.close(live, outcome)

    async def _retry_later(self, run: Run, live: LiveRun) -> bool:
        """Put a run whose database went away back in the queue, once the database answers
        (trying for up to a lease; after that the lease lapses and it is taken over
        anyway). False when it was retried more than `max_takeovers` times already."""
        settings = self.service.settings
        deadline = time.time() + settings.lease_seconds
        events = self.service.broker.take_unsaved(run.run_id)

        def requeue(tx: Any) -> bool:
            event_table.append(tx, events, time.time())
            return run_table.retry_later(tx, run.run_id, run.attempt,
                                         time.time() + settings.poll_interval,
                                         self.max_takeovers)

        while True:
            try:
                requeued = await self.service.db.arun(requeue)
            except Exception:
                if time.time() > deadline:
                    raise
                await asyncio.sleep(0.5)
                continue
            if requeued:
                self.service.metrics.outage_retries.inc()
                self.service.broker.close(live, Outcome("pending"))
            return requeued

    async def _finish(self, run: Run, live: LiveRun, outcome: Outcome, reason: str | None
                      ) -> None:
        service = self.service
        if reason in ("drain", "lost"):
            events = service.broker.take_unsaved(run.run_id)

            def requeue(tx: Any) -> None:
                event_table.append(tx, events, time.time())
                if reason == "drain":
                    run_table.requeue(tx, run.run_id, attempt=run.attempt)

            await service.db.arun(requeue)
            service.broker.close(live, Outcome("pending"))
            return
        if reason == "rollback":
            await service.rollback(run)
            service.broker.take_unsaved(run.run_id)
            service.broker.close(live, Outcome("interrupted"))
            return
        summary = await final_state(service, run, outcome)
        if outcome.values is None and outcome.status == "success":
            outcome.values = _values_with_interrupts(summary)
        events = service.broker.take_unsaved(run.run_id)
        usage = await run_usage(service, run.run_id)

        def record(tx: Any) -> None:
            event_table.append(tx, events, time.time())
            spent = {"budget": summary["budget"]} if summary.get("budget") else {}
            if usage is not None:
                spent["usage"] = usage
            if not run_table.finish(tx, run.run_id, outcome.status, outcome.error, spent,
                                    attempt=run.attempt):
                return  # another worker holds the run now: its end is theirs to record
            others = [r for r in run_table.active_on_thread(tx, run.thread_id)
                      if r.run_id != run.run_id]
            status = "busy" if others else summary["status"]
            thread_table.record_state(tx, run.thread_id, status=status,
                                      values=summary["values"],
                                      interrupts=summary["interrupts"], error=summary["error"])

        await service.db.arun(record)
        service.metrics.ended(run.graph_id, outcome.status, run.updated_at)
        service.broker.close(live, outcome)  # a temporary thread goes with the next reaping
        webhook = run.kwargs.get("webhook")
        if webhook:
            service.webhooks.send(webhook, _webhook_body(run, outcome))


async def run_usage(service: Any, run_id: str) -> dict[str, Any] | None:
    """The run's calls, tokens and cost from the usage ledger (None: it made no calls),
    kept in its metadata so a client reading the run sees what it cost."""
    if service.settings.postgres:
        groups = await service.saver.ausage_totals((), run_id=run_id)
    else:  # an indexed read of a local file: cheaper on the loop than a thread hand-off
        groups = service.saver.usage_totals((), run_id=run_id)
    if not groups or not groups[0].calls:
        return None
    total = groups[0]
    return {"calls": total.calls, "input_tokens": total.input_tokens,
            "output_tokens": total.output_tokens, "cost_usd": total.cost_usd,
            "unpriced_calls": total.unpriced_calls, "errors": total.errors}


def lease_fence(run: Run) -> Fence:
    """Commits of this attempt count only while the run is running under this attempt:
    once another worker took it over (or it was requeued), they are refused."""
    return Fence("waypoint_runs", "run_id", run.run_id, "attempt", run.attempt,
                 "status", "running")


def _values_with_interrupts(summary: dict[str, Any]) -> Any:
    values = summary.get("values")
    interrupts = [i for items in (summary.get("interrupts") or {}).values() for i in items]
    if interrupts and isinstance(values, dict):
        return {**values, "__interrupt__": interrupts}
    return values


def _webhook_body(run: Run, outcome: Outcome) -> dict[str, Any]:
    body = run.to_api()
    body.update(status=outcome.status, values=outcome.values, error=outcome.error,
                run_started_at=None, run_ended_at=time.time())
    return body
