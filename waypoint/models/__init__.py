"""The LLM seam: a chat-model protocol, providers, and what every call passes through."""

from ..usage import Usage, UsageLedger, UsageRecord, UsageTotal
from .base import ChatModel, ModelDelta, ModelRequest, ModelResponse
from .cache import ResponseCache, SqliteResponseCache
from .errors import (
    ModelConfigError,
    ModelError,
    ModelTimeout,
    ModelUnavailable,
    PermanentModelError,
    RateLimited,
    StructuredOutputError,
    TransientModelError,
)
from .gateway import AllModelsFailed, Gateway
from .local import LocalModel
from .openai_compat import OpenAICompatible
from .pricing import Price, PriceBook
from .ratelimit import RateLimit, RateLimitExceeded
from .scripted import Reply, ScriptedChatModel, ScriptedModel
from .structured import choose_tool
from .weights import ensure_weights

__all__ = [
    "AllModelsFailed",
    "ChatModel",
    "Gateway",
    "LocalModel",
    "ModelConfigError",
    "ModelDelta",
    "ModelError",
    "ModelRequest",
    "ModelResponse",
    "ModelTimeout",
    "ModelUnavailable",
    "OpenAICompatible",
    "PermanentModelError",
    "Price",
    "PriceBook",
    "RateLimit",
    "RateLimitExceeded",
    "RateLimited",
    "Reply",
    "ResponseCache",
    "ScriptedChatModel",
    "ScriptedModel",
    "SqliteResponseCache",
    "StructuredOutputError",
    "TransientModelError",
    "Usage",
    "UsageLedger",
    "UsageRecord",
    "UsageTotal",
    "choose_tool",
    "ensure_weights",
]
