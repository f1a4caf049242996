"""`/usage`: what model and tool calls cost, from the durable usage ledger (a waypoint
addition; the Agent Server leaves this to its paid tracing service).

Every model and tool call a run makes is a row in the ledger beside the checkpoints,
tagged with tenant, user, assistant, thread, run, node and model. This route sums them
by whatever the caller groups by. A member key sees its own tenant's usage only; an admin
may filter by tenant or see them all.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Query

from ...checkpoint.usage_ledger import GROUP_DIMS, UsageGroup, total_of
from ...usage import parse_moment
from ..auth import Identity, current_identity
from ..context import Service
from ..errors import Unprocessable
from .deps import GUARDS, get_service

router = APIRouter(tags=["usage"], dependencies=GUARDS)


def _epoch(value: str | None, name: str) -> float | None:
    if not value:
        return None
    try:
        return parse_moment(value)
    except ValueError as exc:
        raise Unprocessable(f"{name}: {exc}") from None


@router.get("/usage", summary="Usage and Cost")
async def usage(group_by: list[str] = Query(default=[]),
                since: str | None = None, until: str | None = None,
                run_id: str | None = None, thread_id: str | None = None,
                assistant_id: str | None = None, node: str | None = None,
                model: str | None = None, tool: str | None = None,
                kind: str | None = Query(default=None, pattern="^(model|tool)$"),
                outcome: str | None = Query(default=None, pattern="^(ok|error)$"),
                user_id: str | None = None, tenant: str | None = None,
                service: Service = Depends(get_service),
                who: Identity = Depends(current_identity)) -> dict[str, Any]:
    """Totals of calls, tokens and cost (`cost_usd` null when a call's price is unknown),
    grouped by any of run_id, thread_id, node, model, tool, kind, outcome, tenant,
    user_id, assistant_id and day; `total` sums every group."""
    dims = [d for item in group_by for d in item.split(",") if d]
    unknown = sorted(set(dims) - set(GROUP_DIMS))
    if unknown:
        raise Unprocessable(f"cannot group usage by {', '.join(unknown)} (choose from "
                            f"{', '.join(GROUP_DIMS)})")
    bounds = {"since": _epoch(since, "since"), "until": _epoch(until, "until")}
    if not who.is_admin:
        if tenant is not None and tenant != who.tenant:  # not yours: as if it had none
            empty = UsageGroup({}).to_json()
            return {"group_by": dims, "groups": [], "total": empty}
        tenant = who.tenant
    filters = {"run_id": run_id, "thread_id": thread_id, "assistant_id": assistant_id,
               "node": node, "model": model, "tool": tool, "kind": kind, "outcome": outcome,
               "user_id": user_id, "tenant": tenant}
    groups = await asyncio.to_thread(service.saver.usage_totals, dims, **bounds, **filters)
    return {"group_by": dims, "groups": [g.to_json() for g in groups],
            "total": total_of(groups).to_json()}
