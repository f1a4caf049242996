"""Delta encoding of checkpoints, shared by every store.

A stored checkpoint is either a snapshot (every channel's value) or a delta against its
parent (only the channels the step changed). A change is `("=", value)`, or
`("+", items)` when a list channel only grew at the end — the common case of reducers
such as `operator.add` and `add_messages` — so storage grows with the bytes a run
writes, not with steps times state size. Every `snapshot_every` steps a full snapshot
bounds how many deltas a read replays. Decoding needs no reducers: the store stays
ignorant of graphs.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from ..errors import SerializationError
from . import serde
from .base import Checkpoint
from .crypto import Cipher

SNAPSHOT = 0
DELTA = 1
DEFAULT_SNAPSHOT_EVERY = 64
# Bodies above this size are stored zlib-compressed (level 1: cheap, and snapshots of
# chat histories shrink several times); the first byte says which form a body has.
COMPRESS_ABOVE = 2048
_RAW, _ZLIB, _SEALED = b"m", b"z", b"e"
_MISSING = object()


def channel_changes(before: dict[str, Any], values: dict[str, Any],
                    updated: Sequence[str]) -> dict[str, tuple[str, Any]]:
    """What each updated channel became, as the smallest change that rebuilds it."""
    changes: dict[str, tuple[str, Any]] = {}
    for key in updated:
        new = values[key]
        old = before.get(key, _MISSING)
        grew = (
            type(new) is list and type(old) is list and new is not old
            and len(new) >= len(old)
            and (all(a is b for a, b in zip(old, new, strict=False)) or new[: len(old)] == old)
        )
        if grew:
            changes[key] = ("+", new[len(old):])
        else:
            changes[key] = ("=", new)
    return changes


def encode(checkpoint: Checkpoint, parent_depth: int | None,
           snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
           cipher: Cipher | None = None) -> tuple[int, int, bytes]:
    """(kind, depth, body) for a checkpoint whose parent record has `parent_depth`."""
    tail = [checkpoint.next_tasks, checkpoint.barriers, list(checkpoint.ran),
            list(checkpoint.updated)]
    if parent_depth is None or parent_depth + 1 >= snapshot_every:
        return SNAPSHOT, 0, seal([checkpoint.values, *tail], cipher, checkpoint.values)
    changes = checkpoint.changes
    if changes is None:
        changes = {k: ("=", checkpoint.values[k]) for k in checkpoint.updated
                   if k in checkpoint.values}
    return DELTA, parent_depth + 1, seal([changes, *tail], cipher, checkpoint.values)


def seal(value: Any, cipher: Cipher | None = None, state: Any = None) -> bytes:
    """Serialize for storage: compressed when large, encrypted when a cipher is given.

    `state`, when given, is where a value that cannot be stored is looked for, so the
    error names its path in the state rather than in the stored record."""
    data = serde.dumps(value) if state is None else serde.dumps(value, explain=state)
    body = _ZLIB + zlib.compress(data, 1) if len(data) > COMPRESS_ABOVE else _RAW + data
    return _SEALED + cipher.encrypt(body) if cipher is not None else body


def unseal(body: bytes, cipher: Cipher | None = None) -> Any:
    """Read back what `seal` stored."""
    tag, data = body[:1], body[1:]
    if tag == _SEALED:
        if cipher is None:
            raise SerializationError(
                "stored checkpoint data is encrypted: set WAYPOINT_ENCRYPTION_KEY to its key"
            )
        tag, data = (plain := cipher.decrypt(data))[:1], plain[1:]
    if tag == _ZLIB:
        return serde.loads(zlib.decompress(data))
    if tag == _RAW:
        return serde.loads(data)
    raise SerializationError(f"stored checkpoint body has unknown form {tag!r}")


def decode(checkpoint_id: str, step: int, ts: str,
           chain: Sequence[tuple[int, bytes]], cipher: Cipher | None = None) -> Checkpoint:
    """Rebuild a checkpoint from its records, oldest (a snapshot) to newest (itself)."""
    if not chain or chain[0][0] != SNAPSHOT:
        raise SerializationError(
            f"checkpoint {checkpoint_id}: its delta chain does not start at a snapshot"
        )
    values: dict[str, Any] = {}
    tail: list[Any] = []
    grown: set[str] = set()  # lists already copied here, so later deltas extend in place
    for kind, body in chain:
        head, *tail = unseal(body, cipher)
        if kind == SNAPSHOT:
            values = dict(head)
            grown.clear()
            continue
        for key, (op, payload) in head.items():
            if op == "=":
                values[key] = payload
                grown.discard(key)
            elif op == "+":
                current = values.get(key, [])
                if not isinstance(current, list):
                    raise SerializationError(
                        f"checkpoint {checkpoint_id}: channel {key!r} extends a non-list"
                    )
                if key in grown:
                    current.extend(payload)
                else:
                    values[key] = current + list(payload)
                    grown.add(key)
            else:
                raise SerializationError(f"checkpoint {checkpoint_id}: unknown change {op!r}")
    next_tasks, barriers, ran, updated = tail
    return Checkpoint(
        id=checkpoint_id, step=step, ts=ts, values=values,
        next_tasks=[tuple(t) for t in next_tasks], barriers=dict(barriers),
        ran=tuple(ran), updated=tuple(updated),
    )
