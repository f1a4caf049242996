"""The server's settings: a `langgraph.json`-style file, environment and flags, in one object.

The file keeps LangGraph's keys (`graphs`, `env`, `dependencies`, `http.cors`,
`checkpointer.ttl`, `store.ttl`, `store.index`) so a project made for `langgraph dev`
starts as it is, and adds waypoint's own under `"waypoint"` (auth, database, workers, limits,
price overrides).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class ConfigError(Exception):
    """The config file or a flag is wrong: the message says which key and why."""


class CorsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    allow_origins: list[str] = Field(default_factory=list)
    allow_origin_regex: str | None = None
    allow_methods: list[str] = Field(default_factory=lambda: ["GET", "POST", "PUT", "PATCH",
                                                               "DELETE", "OPTIONS"])
    allow_headers: list[str] = Field(default_factory=lambda: ["*"])
    allow_credentials: bool = False
    expose_headers: list[str] = Field(default_factory=lambda: [
        "content-location", "location", "x-pagination-total"])
    max_age: int = 600


class ApiKeySetting(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(min_length=8)
    tenant: str = Field(min_length=1, max_length=128)
    role: str = Field(default="member", pattern="^(admin|member)$")
    user_id: str | None = None


class Settings(BaseModel):
    """Everything `create_app` needs; built by `load_settings` from file, env and flags."""

    model_config = ConfigDict(extra="forbid")
    graphs: dict[str, str] = Field(default_factory=dict)
    base_dir: Path = Field(default_factory=Path.cwd)
    env: dict[str, str] = Field(default_factory=dict)
    db: Path = Path(".waypoint/server.db")
    postgres: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=2024, ge=0, le=65535)
    workers: int = Field(default=32, ge=0, le=1024)
    api_keys: list[ApiKeySetting] = Field(default_factory=list)
    auth_function: str | None = None
    insecure_no_auth: bool = False
    # Wrong keys from one address: this many within the window block it for the window
    # (429 with Retry-After; keys it used successfully still pass). 0 turns it off.
    auth_failure_limit: int = Field(default=10, ge=0)
    auth_failure_window_seconds: float = Field(default=60.0, gt=0, le=86400)
    cors: CorsSettings | None = None
    thread_ttl_minutes: float | None = Field(default=None, gt=0)
    store_ttl_minutes: float | None = Field(default=None, gt=0)
    store_index: dict[str, Any] | None = None  # the store's IndexConfig (store_index_config)
    sweep_interval_minutes: float = Field(default=5.0, gt=0)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    tenant_max_active_runs: int | None = Field(default=None, ge=1)
    max_running_runs: int | None = Field(default=None, ge=1)
    tenant_max_running_runs: int | None = Field(default=None, ge=1)
    graph_versions: dict[str, str] = Field(default_factory=dict)
    drain_timeout: float = Field(default=30.0, ge=0)
    lease_seconds: float = Field(default=30.0, gt=0)
    poll_interval: float = Field(default=1.0, gt=0)
    max_takeovers: int = Field(default=5, ge=1)
    event_retention_hours: float = Field(default=24.0, gt=0)
    webhook_attempts: int = Field(default=5, ge=1, le=20)
    # Model prices over the genai-prices catalogue: {"model": {"input_per_mtok",
    # "output_per_mtok"}} inline, or the path of a JSON/YAML file (relative to the config).
    prices: dict[str, Any] | str | None = None

    @field_validator("graphs")
    @classmethod
    def _graphs(cls, value: dict[str, str]) -> dict[str, str]:
        for name, target in value.items():
            if not isinstance(target, str) or ":" not in target:
                raise ValueError(f"graph {name!r}: expected 'path.py:attr' or 'module:attr'")
        return value

    @property
    def durable_url(self) -> str:
        return self.postgres or str(self.db)


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a JSON object")
    return data


def _from_file(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """LangGraph's keys and waypoint's section as Settings fields."""
    known = {"graphs", "env", "dependencies", "http", "checkpointer", "store", "waypoint",
             "python_version", "dockerfile_lines", "pip_config_file", "image_distro", "auth",
             "$schema", "node_version", "ui", "keep_pkg_tools"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) in config: {', '.join(unknown)}")
    out: dict[str, Any] = {"graphs": data.get("graphs") or {}, "base_dir": base}
    env = data.get("env")
    if isinstance(env, str):
        out["env"] = _dotenv(base / env)
    elif isinstance(env, dict):
        out["env"] = {str(k): str(v) for k, v in env.items()}
    elif env is not None:
        raise ConfigError("'env' must be a path to a .env file or an object")
    cors = (data.get("http") or {}).get("cors")
    if cors is not None:
        out["cors"] = cors
    ttl = (data.get("checkpointer") or {}).get("ttl") or {}
    if ttl.get("default_ttl") is not None:
        out["thread_ttl_minutes"] = ttl["default_ttl"]
    if ttl.get("sweep_interval_minutes") is not None:
        out["sweep_interval_minutes"] = ttl["sweep_interval_minutes"]
    store_ttl = (data.get("store") or {}).get("ttl") or {}
    if store_ttl.get("default_ttl") is not None:
        out["store_ttl_minutes"] = store_ttl["default_ttl"]
    store_index = (data.get("store") or {}).get("index")
    if store_index is not None:
        if not isinstance(store_index, dict):
            raise ConfigError("'store.index' must be an object (dims, embed, fields)")
        out["store_index"] = store_index
    own = data.get("waypoint") or {}
    if not isinstance(own, dict):
        raise ConfigError("'waypoint' must be an object")
    for key, value in own.items():
        if key == "db":
            value = str(base / value)
        out[key] = value
    return out


def _dotenv(path: Path) -> dict[str, str]:
    from dotenv import dotenv_values

    if not path.is_file():
        raise ConfigError(f"env file {path} does not exist")
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def load_settings(config_path: str | Path | None = None, **flags: Any) -> Settings:
    """Settings from a config file (optional), with flags (not None) taking precedence."""
    fields: dict[str, Any] = {}
    if config_path is not None:
        path = Path(config_path).resolve()
        fields.update(_from_file(_read_file(path), path.parent))
    for key, value in flags.items():
        if value is None:
            continue
        if key == "graphs":
            fields["graphs"] = {**fields.get("graphs", {}), **value}
        else:
            fields[key] = value
    if not fields.get("postgres") and os.environ.get("WAYPOINT_POSTGRES_URL"):
        fields["postgres"] = os.environ["WAYPOINT_POSTGRES_URL"]
    try:
        settings = Settings(**fields)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in exc.errors())
        raise ConfigError(f"invalid settings: {problems}") from None
    install_prices(settings)
    return settings


def install_prices(settings: Settings) -> None:
    """Make `prices` (and a `WAYPOINT_PRICES` file) this process's price overrides, checked
    now: a wrong price fails the start, not a run after its model call."""
    from ..models.price_catalog import (
        PRICES_ENV,
        PriceFileError,
        load_price_file,
        use_prices,
    )

    where = PRICES_ENV
    try:
        if os.environ.get(PRICES_ENV, "").strip():
            load_price_file(os.environ[PRICES_ENV].strip())
        where = "waypoint.prices"
        use_prices(settings.prices, settings.base_dir)
    except PriceFileError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def store_index_config(settings: Settings) -> dict[str, Any] | None:
    """`store.index` for the store's `index=`, its `embed` resolved: "local" stays as it is
    (the bundled model); "path.py:fn" or "module:fn" is imported, as graphs are."""
    if settings.store_index is None:
        return None
    config = dict(settings.store_index)
    embed = config.get("embed")
    if isinstance(embed, str) and ":" in embed and embed != "waypoint:local":
        from .graphs import _import_target

        try:
            config["embed"] = _import_target(embed, settings.base_dir)
        except Exception as exc:
            raise ConfigError(f"store.index.embed {embed!r}: {exc}") from exc
    return config


def parse_graph_flags(values: list[str]) -> dict[str, str]:
    """`--graph name=module:attr` flags as a graphs mapping."""
    graphs: dict[str, str] = {}
    for value in values:
        name, sep, target = value.partition("=")
        if not sep or not name or ":" not in target:
            raise ConfigError(f"--graph takes name=module:attr or name=./file.py:attr, got "
                              f"{value!r}")
        graphs[name] = target
    return graphs
