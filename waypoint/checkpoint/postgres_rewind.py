"""PostgresSaver.rewind: undo what a thread recorded after one of its checkpoints.

Kept apart from postgres.py (already long); it is one more retention plan in the same
style: lock the thread's rows, then change them in one transaction.
"""

from __future__ import annotations

import time
from typing import Any

from .base import state_of_stored


class PostgresRewind:
    """Mixed into PostgresSaver."""

    def _rewind_plan(self, thread_id: str, checkpoint_id: str) -> Any:
        from .postgres import _Last, _Stmt

        saver: Any = self
        args: dict[str, Any] = {"t": str(thread_id), "c": checkpoint_id, "now": time.time()}
        _, found = yield [
            saver._lock_thread(args),
            _Stmt(saver._sql("SELECT body, writes FROM {checkpoints} WHERE thread_id = %(t)s "
                             "AND ns = '' AND id = %(c)s"), args),
        ]
        if not found:
            raise KeyError(f"no checkpoint {checkpoint_id!r} in thread {thread_id!r}")
        args["state"] = state_of_stored(bytes(found[0][0]), bytes(found[0][1])
                                        if found[0][1] is not None else None, saver.cipher)
        removed, *_ = yield _Last([
            _Stmt(saver._sql("WITH gone AS (DELETE FROM {checkpoints} WHERE thread_id = %(t)s "
                             "AND id COLLATE \"C\" > %(c)s RETURNING 1) "
                             "SELECT count(*) FROM gone"), args),
            _Stmt(saver._sql("DELETE FROM {threads} t WHERE thread_id = %(t)s AND NOT EXISTS "
                             "(SELECT 1 FROM {checkpoints} c WHERE c.thread_id = t.thread_id "
                             "AND c.ns = t.ns)"), args),
            _Stmt(saver._sql("UPDATE {threads} t SET touched_at = %(now)s, state = %(state)s, "
                             "head = (SELECT max(id COLLATE \"C\") FROM {checkpoints} c WHERE "
                             "c.thread_id = t.thread_id AND c.ns = t.ns) "
                             "WHERE thread_id = %(t)s"), args),
        ])
        return removed[0][0]

    def rewind(self, thread_id: str, checkpoint_id: str) -> int:
        saver: Any = self
        removed = saver._run(self._rewind_plan(thread_id, checkpoint_id), tx=True)
        saver._depths.clear()
        return removed
