"""The embedded local model's server: llama.cpp (through xllamacpp) inside this process,
answering OpenAI's chat-completions API on a loopback port.

Serving over HTTP rather than calling the engine directly keeps one code path for every
model (`OpenAICompatible`), lets sync and async callers, threads and graph branches share
one loaded model (llama.cpp queues or batches their requests), and makes a call's
timeout work by simply closing its connection (the server then cancels the generation).

A model loads once per process: `shared_server()` keeps one server per (model file,
settings) and stops them at exit. The server listens on 127.0.0.1 on a free port and
requires an API key generated per process, so other users of the machine cannot use it.
"""

from __future__ import annotations

import atexit
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .errors import ModelConfigError, ModelUnavailable
from .openai_compat import _Secret

THREADS_ENV = "WAYPOINT_LOCAL_THREADS"


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(os.cpu_count() or 1, 1)


@dataclass(frozen=True, slots=True)
class LlamaSettings:
    """How a model is served. `threads=None`: `$WAYPOINT_LOCAL_THREADS`, else every
    available core. `n_ctx` is the context (prompt + answer) of all parallel slots
    together: each of `n_parallel` slots gets `n_ctx / n_parallel` tokens."""

    n_ctx: int = 4096
    threads: int | None = None
    n_parallel: int = 1
    verbose: bool = False

    def __post_init__(self) -> None:
        if self.n_ctx < 256:
            raise ValueError(f"n_ctx must be at least 256 tokens, got {self.n_ctx}")
        if self.n_parallel < 1:
            raise ValueError(f"n_parallel must be at least 1, got {self.n_parallel}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")

    def thread_count(self) -> int:
        if self.threads is not None:
            return self.threads
        env = os.environ.get(THREADS_ENV)
        if env:
            try:
                return max(int(env), 1)
            except ValueError:
                raise ValueError(f"{THREADS_ENV} must be a whole number, got {env!r}") from None
        return available_cores()


def _xllamacpp(extra: str = "local") -> Any:
    try:
        import xllamacpp
    except ImportError as exc:
        raise ModelConfigError(
            f"local models run on the xllamacpp package, which is not installed ({exc}): "
            f"pip install -e '.[{extra}]'") from None
    return xllamacpp


class LlamaServer:
    """One llama.cpp HTTP server in this process. Prefer `shared_server()`, which loads each
    model once per process."""

    def __init__(self, model_path: str | os.PathLike[str],
                 settings: LlamaSettings | None = None) -> None:
        self.model_path = Path(model_path)
        self.settings = settings or LlamaSettings()
        self._api_key = _Secret(secrets.token_urlsafe(32))
        self._server: Any = None
        self._address: str | None = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, e.g. `http://127.0.0.1:41234/v1`."""
        if self._address is None:
            raise ModelUnavailable(f"the llama.cpp server for {self.model_path.name} is not "
                                   "running")
        return f"{self._address}/v1"

    @property
    def api_key(self) -> str:
        return self._api_key.reveal()

    def start(self, ready_timeout: float = 120.0) -> LlamaServer:
        """Load the model and serve it; returns once the server answers. Idempotent."""
        with self._lock:
            if self._server is not None:
                return self
            xllamacpp = _xllamacpp()
            if not self.model_path.is_file():
                raise ModelConfigError(f"model file {self.model_path} does not exist")
            params = xllamacpp.CommonParams()
            params.model.path = str(self.model_path)
            params.n_ctx = self.settings.n_ctx
            params.n_parallel = self.settings.n_parallel
            threads = self.settings.thread_count()
            params.cpuparams.n_threads = threads
            params.cpuparams_batch.n_threads = threads
            params.hostnames = ["127.0.0.1"]
            params.port = 0  # a free port, chosen by the OS
            params.api_keys = [self._api_key.reveal()]
            params.verbosity = 3 if self.settings.verbose else -1
            try:
                server = xllamacpp.Server(params)
            except RuntimeError as exc:
                raise ModelConfigError(
                    f"llama.cpp could not load {self.model_path} ({exc}); is it a GGUF "
                    "model file?") from None
            address = str(server.listening_address).rstrip("/")
            try:
                _wait_ready(address, ready_timeout)
            except BaseException:
                del server
                raise
            self._server, self._address = server, address
            return self

    def stop(self) -> None:
        """Stop serving and free the model (waits for the server's loop to exit)."""
        with self._lock:
            server, self._server, self._address = self._server, None, None
        del server  # the native server shuts down when its last reference goes

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self._address if self._address else "stopped"
        return f"LlamaServer({self.model_path.name!r}, {state})"


def _wait_ready(address: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    with httpx.Client(timeout=5.0) as client:
        while time.monotonic() < deadline:
            try:
                response = client.get(f"{address}/health")
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.05)
    raise ModelUnavailable(f"the llama.cpp server at {address} was not ready within "
                           f"{timeout:g}s ({last})")


# -- one server per model per process ------------------------------------------------------

_registry_lock = threading.Lock()
_servers: dict[tuple[str, LlamaSettings], LlamaServer] = {}
_inherited: list[LlamaServer] = []  # servers of a parent process: never touched in a child


def shared_server(model_path: str | os.PathLike[str],
                  settings: LlamaSettings | None = None) -> LlamaServer:
    """The running server for this model file and settings, started on first use."""
    settings = settings or LlamaSettings()
    key = (str(Path(model_path).resolve()), settings)
    with _registry_lock:
        server = _servers.get(key)
        if server is None or not server.running:
            server = LlamaServer(model_path, settings).start()
            _servers[key] = server
        return server


def running_servers() -> list[LlamaServer]:
    with _registry_lock:
        return [s for s in _servers.values() if s.running]


def stop_shared_servers() -> None:
    """Stop every shared server of this process (also done at exit)."""
    with _registry_lock:
        servers = list(_servers.values())
        _servers.clear()
    for server in servers:
        server.stop()


def _after_fork_in_child() -> None:
    # The native server's threads do not exist in a forked child: keep the copies alive
    # (destroying them would wait for those threads forever) and start afresh if needed.
    global _registry_lock
    _registry_lock = threading.Lock()
    _inherited.extend(_servers.values())
    _servers.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(stop_shared_servers)
