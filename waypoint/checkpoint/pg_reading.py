"""PostgresSaver's reads: a thread's head, one checkpoint, a listing.

A checkpoint is stored as a delta on its parent (or a snapshot); one recursive query reads
the selected records and their ancestors back to the nearest snapshot, in one round trip.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from .base import CheckpointTuple, make_config, thread_of
from .crypto import Cipher
from .pg_driver import _Last, _Plan, _Stmt
from .pg_sql import _CHAINS, _SEL_KEYS, _SEL_ONE
from .records import SNAPSHOT, decode, unseal

_FILTER_PAGE = 500  # rows of metadata read per round trip when list() filters in Python


def _build_tuples(rows: list[tuple[Any, ...]], cipher: Cipher | None) -> list[CheckpointTuple]:
    """CheckpointTuples for the selected rows (ord not NULL), in ord order."""
    records = {(r[0], r[1], r[2]): r for r in rows}
    found: list[CheckpointTuple] = []
    for row in sorted((r for r in rows if r[8] is not None), key=lambda r: r[8]):
        thread_id, ns, cid, parent_id, step, ts = row[:6]
        chain, current = [], row
        while True:
            chain.append((current[6], current[7]))
            if current[6] == SNAPSHOT or current[3] is None:
                break
            current = records.get((thread_id, ns, current[3]))
            if current is None:
                break  # decode reports the broken chain
        chain.reverse()
        writes = [tuple(w) for w in unseal(row[10], cipher)] if row[10] else []
        found.append(CheckpointTuple(
            make_config(thread_id, ns, cid), decode(cid, step, ts, chain, cipher),
            unseal(row[9], cipher),
            make_config(thread_id, ns, parent_id) if parent_id else None,
            writes,  # type: ignore[arg-type]
        ))
    return found


class PostgresReading:
    """Mixed into PostgresSaver."""


    def _head_plan(self, thread_id: str, ns: str) -> _Plan:
        (rows,) = yield _Last([_Stmt(self._sql(
            "SELECT head FROM {threads} WHERE thread_id = %s AND ns = %s"), [str(thread_id), ns])])
        return rows[0][0] if rows else None

    def head_id(self, thread_id: str, ns: str = "") -> str | None:
        return self._run(self._head_plan(thread_id, ns))

    async def ahead_id(self, thread_id: str, ns: str = "") -> str | None:
        return await self._arun(self._head_plan(thread_id, ns))

    def _get_plan(self, config: dict[str, Any]) -> _Plan:
        thread_id, ns, checkpoint_id = thread_of(config)
        args = {"t": thread_id, "ns": ns, "id": checkpoint_id or None}
        (rows,) = yield _Last([_Stmt(self._sql(_CHAINS.format(
            pre="", sel=_SEL_ONE, checkpoints="{checkpoints}")), args)])
        found = _build_tuples(rows, self.cipher)
        return found[0] if found else None

    def get_tuple(self, config: dict[str, Any]) -> CheckpointTuple | None:
        return self._run(self._get_plan(config))

    async def aget_tuple(self, config: dict[str, Any]) -> CheckpointTuple | None:
        return await self._arun(self._get_plan(config))

    def _list_plan(self, config: dict[str, Any] | None, filter: dict[str, Any] | None,
                   before: dict[str, Any] | None, limit: int | None) -> _Plan:
        before_id = ((before or {}).get("configurable") or {}).get("checkpoint_id")
        args: dict[str, Any] = {"before": before_id, "limit": limit}
        where = ["c.id < %(before)s"] if before_id is not None else []
        if config is None:
            source = ("{checkpoints} c JOIN (SELECT thread_id, ns, seq, min(seq) OVER "
                      "(PARTITION BY thread_id) AS tseq FROM {threads}) t "
                      "ON t.thread_id = c.thread_id AND t.ns = c.ns")
            order = "t.tseq, t.seq, c.seq DESC"  # threads, then namespaces, as created
        else:
            args["t"], args["ns"], checkpoint_id = thread_of(config)
            source, order = "{checkpoints} c", "c.seq DESC"
            where[:0] = ["c.thread_id = %(t)s", "c.ns = %(ns)s"]
            if checkpoint_id:
                where.append("c.id = %(cid)s")
                args["cid"] = checkpoint_id
        if limit is not None and limit <= 0:
            return []
        select = (f"SELECT c.thread_id, c.ns, c.id, row_number() OVER (ORDER BY {order}) AS ord"
                  "{extra} FROM " + source + (" WHERE " + " AND ".join(where) if where else "")
                  + " ORDER BY ord")
        if not filter:
            sel = select.replace("{extra}", "") + " LIMIT %(limit)s"
            (rows,) = yield _Last([_Stmt(self._sql(_CHAINS.format(
                pre="", sel=sel, checkpoints="{checkpoints}")), args)])
            return _build_tuples(rows, self.cipher)
        # Metadata is stored sealed (serialized, maybe encrypted), and MemorySaver's filter
        # is Python equality (a missing key equals None), so filtering happens here, page by
        # page, inside one
        # repeatable-read snapshot so the chains read afterwards are the ones filtered.
        page_sql = self._sql(select.replace("{extra}", ", c.metadata")
                             + " LIMIT %(page)s OFFSET %(offset)s")
        keys: list[tuple[str, str, str]] = []
        batch: list[_Stmt] = [_Stmt("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
                                    prepare=False)]
        offset, page = 0, _FILTER_PAGE if limit is not None else None
        while True:
            batch.append(_Stmt(page_sql, {**args, "page": page, "offset": offset}))
            rows = (yield batch)[-1]
            batch = []
            for thread_id, ns, cid, _, metadata in rows:
                meta = unseal(metadata, self.cipher)
                if all(meta.get(k) == v for k, v in filter.items()):
                    keys.append((thread_id, ns, cid))
                    if limit is not None and len(keys) >= limit:
                        break
            if page is None or len(rows) < page or (limit is not None and len(keys) >= limit):
                break
            offset += page
        if not keys:
            return []
        args = {"sel_t": [k[0] for k in keys], "sel_ns": [k[1] for k in keys],
                "sel_id": [k[2] for k in keys]}
        (rows,) = yield _Last([_Stmt(self._sql(_CHAINS.format(
            pre="", sel=_SEL_KEYS, checkpoints="{checkpoints}")), args)])
        return _build_tuples(rows, self.cipher)

    def list(
        self,
        config: dict[str, Any] | None,
        *,
        filter: dict[str, Any] | None = None,
        before: dict[str, Any] | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Newest first; read in full on first iteration, so no connection stays borrowed."""
        yield from self._run(self._list_plan(config, filter, before, limit), tx=bool(filter))

    async def alist(
        self,
        config: dict[str, Any] | None,
        *,
        filter: dict[str, Any] | None = None,
        before: dict[str, Any] | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        found = await self._arun(self._list_plan(config, filter, before, limit),
                                 tx=bool(filter))
        for item in found:
            yield item
