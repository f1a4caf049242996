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
from . import read_cache, serde
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


def _stored_alike(a: Any, b: Any) -> bool:
    """Whether two items store as the same bytes. `==` is not enough: 1 == 1.0 == True,
    and messages compare equal whatever their metadata, so a reducer that replaced an item
    by an equal-looking one would otherwise be recorded as no change at all."""
    if a is b:
        return True
    if type(a) is not type(b) or a != b:
        return False
    try:
        return serde.dumps(a) == serde.dumps(b)
    except SerializationError:  # stored whole, so the error names its path
        return False


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
            and (all(a is b for a, b in zip(old, new, strict=False))
                 or all(_stored_alike(a, b) for a, b in zip(old, new, strict=False)))
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
    """Rebuild a checkpoint from its records, oldest (a snapshot) to newest (itself).

    The longest prefix of the chain already decoded in this process (same stored bytes) is
    taken from the read memo (read_cache.py), so only the records after it are decoded."""
    if not chain or chain[0][0] != SNAPSHOT:
        raise SerializationError(
            f"checkpoint {checkpoint_id}: its delta chain does not start at a snapshot"
        )
    bodies = [body if type(body) is bytes else bytes(body) for _, body in chain]
    scope = read_cache.memo.scope(cipher) if read_cache.memo.enabled else None
    found = read_cache.memo.find(scope, bodies) if scope is not None else None
    start, values, tail = found if found is not None else (0, {}, [])
    for index in range(start, len(bodies)):
        head, *tail = unseal(bodies[index], cipher)
        if chain[index][0] == SNAPSHOT:
            values = dict(head)  # freshly decoded: this read owns its lists
            if scope is not None and index == 0 and len(bodies) > 1:  # history reads
                read_cache.memo.remember(scope, bodies[:1], values, tail)  # resume here
            continue
        for key, (op, payload) in head.items():
            if op == "=":
                values[key] = payload
            elif op == "+":
                current = values.get(key, [])
                if not isinstance(current, list):
                    raise SerializationError(
                        f"checkpoint {checkpoint_id}: channel {key!r} extends a non-list"
                    )
                if type(current) is list and key in values:
                    current.extend(payload)  # owned: decoded here or copied from the memo
                else:
                    values[key] = [*current, *payload]
            else:
                raise SerializationError(f"checkpoint {checkpoint_id}: unknown change {op!r}")
    if scope is not None and start < len(bodies):
        read_cache.memo.remember(scope, bodies, values, tail, replaces=start)
    next_tasks, barriers, ran, updated = tail
    return Checkpoint(
        id=checkpoint_id, step=step, ts=ts, values=values,
        next_tasks=[tuple(t) for t in next_tasks], barriers=dict(barriers),
        ran=tuple(ran), updated=tuple(updated),
    )
