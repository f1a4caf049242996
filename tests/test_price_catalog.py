"""Costs from the genai-prices catalogue when a model has no price of its own."""

from __future__ import annotations

import pytest
from genai_prices import Usage as CatalogUsage
from genai_prices import calc_price

from waypoint.models.openai_compat import OpenAICompatible
from waypoint.models.pricing import PriceBook
from waypoint.usage import Usage

USAGE = Usage(input_tokens=1200, output_tokens=300)


def _catalogue(model: str) -> float:
    return float(calc_price(CatalogUsage(input_tokens=1200, output_tokens=300),
                            model_ref=model).total_price)


def test_an_openai_compatible_model_has_a_cost_without_typed_prices():
    model = OpenAICompatible("https://api.openai.com/v1", "gpt-4o-mini", api_key="k")
    cost = model.price(USAGE)
    assert cost is not None and cost > 0
    assert cost == pytest.approx(_catalogue("gpt-4o-mini"))


def test_a_price_book_overrides_the_catalogue():
    model = OpenAICompatible("https://api.openai.com/v1", "gpt-4o-mini", api_key="k",
                             prices=PriceBook({"gpt-4o-mini": (10.0, 20.0)}))
    assert model.price(USAGE) == pytest.approx((1200 * 10 + 300 * 20) / 1e6)


def test_an_unknown_model_costs_none_never_zero():
    model = OpenAICompatible("http://127.0.0.1:8000/v1", "our-own-finetune-7b", api_key="k")
    assert model.price(USAGE) is None


def test_the_catalogue_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("WAYPOINT_PRICE_CATALOG", "off")
    model = OpenAICompatible("https://api.openai.com/v1", "gpt-4o-mini", api_key="k")
    assert model.price(USAGE) is None
