"""The LLM seam: a chat-model protocol, providers, and what every call passes through."""

from ..usage import Usage, UsageLedger, UsageRecord, UsageTotal
from .base import ChatModel, ModelDelta, ModelRequest, ModelResponse
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
from .pricing import Price, PriceBook
from .scripted import Reply, ScriptedChatModel, ScriptedModel

__all__ = [
    "ChatModel",
    "ModelConfigError",
    "ModelDelta",
    "ModelError",
    "ModelRequest",
    "ModelResponse",
    "ModelTimeout",
    "ModelUnavailable",
    "PermanentModelError",
    "Price",
    "PriceBook",
    "RateLimited",
    "Reply",
    "ScriptedChatModel",
    "ScriptedModel",
    "StructuredOutputError",
    "TransientModelError",
    "Usage",
    "UsageLedger",
    "UsageRecord",
    "UsageTotal",
]
