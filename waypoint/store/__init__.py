"""Long-term memory shared across threads and runs: LangGraph's Store API, tenant-scoped.

    from waypoint.store import InMemoryStore, SqliteStore, PostgresStore, get_store

Semantic search: `InMemoryStore(index={"embed": "local", "fields": ["text"]})` (see index.py;
`LocalEmbeddings` is the bundled model, loaded on first use).
"""

from .base import (
    NOT_GIVEN,
    NOT_PROVIDED,
    BaseStore,
    Item,
    NamespacePath,
    SearchItem,
    SemanticSearchUnsupported,
    TTLConfig,
)
from .current import get_store
from .embeddings import LocalEmbeddings
from .index import IndexConfig
from .memory import InMemoryStore
from .sqlite import SqliteStore

__all__ = ["NOT_GIVEN", "NOT_PROVIDED", "BaseStore", "InMemoryStore", "IndexConfig", "Item",
           "LocalEmbeddings", "NamespacePath", "PostgresStore", "SearchItem",
           "SemanticSearchUnsupported", "SqliteStore", "TTLConfig", "get_store"]


def __getattr__(name: str) -> object:
    """PostgresStore on first use, so psycopg stays an optional extra."""
    if name == "PostgresStore":
        from .postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
