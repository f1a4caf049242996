"""Prices nobody typed into code: the genai-prices catalogue (a maintained, MIT-licensed
price list of the main providers, shipped as a snapshot inside the package), and price
overrides from a file or the server's config.

Used when a model has no price in its own `PriceBook`: an OpenAI-compatible model then
has a known cost from its name and endpoint. Only the bundled snapshot is read — nothing
is fetched at run time — and a model the catalogue does not know still costs `None`,
never 0. Optional: without `waypoint[prices]` installed, or with
`WAYPOINT_PRICE_CATALOG=off`, costs come from price books and overrides only.

Overrides (a negotiated price, a model the catalogue lacks, a self-hosted model at 0) need
no code: a JSON or YAML file named by `WAYPOINT_PRICES`, and/or the server config's
`"prices"` (`use_prices`), mapping model names to USD per million tokens. They win over
the catalogue; a model's own `PriceBook` still wins over them.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..usage import Usage
from .pricing import Price

PRICES_ENV = "WAYPOINT_PRICES"
_LOCK = threading.Lock()
_CONFIGURED: dict[str, Price] = {}  # from use_prices (the server's config)


def _enabled() -> bool:
    return os.environ.get("WAYPOINT_PRICE_CATALOG", "on").lower() not in ("off", "0", "false")


@functools.lru_cache(maxsize=256)
def _known(model: str, api_url: str | None) -> bool:
    """Whether the catalogue prices this model (misses are remembered: a lookup that fails
    scans every provider)."""
    return _calc(model, api_url, Usage(1, 1)) is not None


def _calc(model: str, api_url: str | None, usage: Usage) -> float | None:
    try:
        from genai_prices import Usage as CatalogUsage
        from genai_prices import calc_price
    except ImportError:
        return None
    try:
        found: Any = calc_price(CatalogUsage(input_tokens=usage.input_tokens,
                                             output_tokens=usage.output_tokens),
                                model_ref=model, provider_api_url=api_url)
    except LookupError:
        return None
    return float(found.total_price)


def catalog_cost(model: str, usage: Usage, api_url: str | None = None) -> float | None:
    """USD for `usage` on `model` (served at `api_url`, which names the provider), from the
    overrides, else the catalogue; None when neither knows the model."""
    price = override_price(model)
    if price is not None:
        return price.cost(usage)
    if not _enabled() or not _known(model, api_url):
        return None
    return _calc(model, api_url, usage)


# -- overrides ------------------------------------------------------------------------------


class PriceFileError(ValueError):
    """A price file or config entry is wrong: the message names the model and why."""


def parse_prices(data: Any, where: str = "prices") -> dict[str, Price]:
    """`{"model": {"input_per_mtok": 0.5, "output_per_mtok": 1.5}}` (or `[0.5, 1.5]`) as
    prices; anything else is refused with the model it is about."""
    if not isinstance(data, Mapping):
        raise PriceFileError(f"{where}: expected an object mapping model names to prices")
    prices: dict[str, Price] = {}
    for model, entry in data.items():
        if isinstance(entry, Mapping):
            unknown = set(entry) - {"input_per_mtok", "output_per_mtok"}
            if unknown or len(entry) != 2:
                raise PriceFileError(f"{where}: model {model!r}: give exactly "
                                     f"input_per_mtok and output_per_mtok (USD per million "
                                     f"tokens), got {sorted(entry)}")
            pair = (entry["input_per_mtok"], entry["output_per_mtok"])
        elif isinstance(entry, (list, tuple)) and len(entry) == 2:
            pair = (entry[0], entry[1])
        else:
            raise PriceFileError(f"{where}: model {model!r}: expected {{input_per_mtok, "
                                 f"output_per_mtok}} or [input, output], got {entry!r}")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair):
            raise PriceFileError(f"{where}: model {model!r}: prices must be numbers")
        try:
            prices[str(model)] = Price(float(pair[0]), float(pair[1]))
        except ValueError as exc:
            raise PriceFileError(f"{where}: model {model!r}: {exc}") from None
    return prices


def load_price_file(path: str | Path) -> dict[str, Price]:
    """Prices from a JSON file, or YAML (`.yaml` / `.yml`, needs PyYAML)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise PriceFileError(f"price file {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except ImportError:
        raise PriceFileError(f"price file {path}: YAML needs PyYAML (pip install pyyaml), "
                             f"or write it as JSON") from None
    except Exception as exc:  # json.JSONDecodeError, yaml.YAMLError
        raise PriceFileError(f"price file {path} does not parse: {exc}") from None
    return parse_prices(data, f"price file {path}")


@functools.lru_cache(maxsize=8)
def _env_prices(path: str) -> dict[str, Price]:
    return load_price_file(path)


def use_prices(prices: Mapping[str, Any] | str | Path | None,
               base_dir: str | Path | None = None) -> dict[str, Price]:
    """Install process-wide overrides: a mapping, or the path of a price file (relative to
    `base_dir`); None clears them. Returns what was installed. Entries here win over the
    `WAYPOINT_PRICES` file's."""
    if prices is None:
        parsed: dict[str, Price] = {}
    elif isinstance(prices, (str, Path)):
        path = Path(prices)
        parsed = load_price_file(path if path.is_absolute() or base_dir is None
                                 else Path(base_dir) / path)
    else:
        parsed = parse_prices(prices)
    with _LOCK:
        _CONFIGURED.clear()
        _CONFIGURED.update(parsed)
    return dict(parsed)


def override_price(model: str) -> Price | None:
    """The overriding price of `model`: from `use_prices`, else the `WAYPOINT_PRICES` file."""
    price = _CONFIGURED.get(model)
    if price is not None:
        return price
    path = os.environ.get(PRICES_ENV, "").strip()
    return _env_prices(path).get(model) if path else None
