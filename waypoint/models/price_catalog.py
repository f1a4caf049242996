"""Prices nobody typed in: the genai-prices catalogue (a maintained, MIT-licensed price list
of the main providers, shipped as a snapshot inside the package).

Used when a model has no price in its own `PriceBook`: an OpenAI-compatible model then
has a known cost from its name and endpoint. Only the bundled snapshot is read — nothing
is fetched at run time — and a model the catalogue does not know still costs `None`,
never 0. Optional: without `waypoint[prices]` installed, or with
`WAYPOINT_PRICE_CATALOG=off`, costs come from price books only.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from ..usage import Usage


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
    catalogue; None when it does not know the model."""
    if not _enabled() or not _known(model, api_url):
        return None
    return _calc(model, api_url, usage)
