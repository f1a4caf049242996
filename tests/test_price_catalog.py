"""Costs from the genai-prices catalogue when a model has no price of its own, and price
overrides without code (a `WAYPOINT_PRICES` file, the server config's `prices`)."""

from __future__ import annotations

import json
import re

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


# -- overrides without code: WAYPOINT_PRICES and the server config's "prices" ----------------


@pytest.fixture
def no_overrides():
    from waypoint.models.price_catalog import use_prices

    use_prices(None)
    yield
    use_prices(None)


def _openai(name: str, **options) -> OpenAICompatible:
    return OpenAICompatible("https://api.openai.com/v1", name, api_key="k", **options)


def test_a_price_file_overrides_and_extends_the_catalogue(tmp_path, monkeypatch, no_overrides):
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"gpt-4o-mini": {"input_per_mtok": 1.0, "output_per_mtok": 3.0},
                                "our-own-finetune-7b": [0.5, 0.5]}))
    monkeypatch.setenv("WAYPOINT_PRICES", str(path))
    assert _openai("gpt-4o-mini").price(USAGE) == pytest.approx((1200 + 300 * 3) / 1e6)
    assert _openai("our-own-finetune-7b").price(USAGE) == pytest.approx(1500 * 0.5 / 1e6)
    assert _openai("gpt-4o").price(USAGE) == pytest.approx(_catalogue("gpt-4o"))  # untouched
    book = PriceBook({"gpt-4o-mini": (10.0, 20.0)})  # a model's own price book still wins
    assert _openai("gpt-4o-mini", prices=book).price(USAGE) == pytest.approx(0.018)
    monkeypatch.setenv("WAYPOINT_PRICE_CATALOG", "off")  # overrides are not the catalogue
    assert _openai("our-own-finetune-7b").price(USAGE) == pytest.approx(1500 * 0.5 / 1e6)
    assert _openai("gpt-4o").price(USAGE) is None


def test_a_yaml_price_file(tmp_path, monkeypatch, no_overrides):
    path = tmp_path / "prices.yaml"
    path.write_text("local/qwen2.5-coder-1.5b:\n  input_per_mtok: 0\n  output_per_mtok: 0\n"
                    "house-model: [2, 4]\n")
    monkeypatch.setenv("WAYPOINT_PRICES", str(path))
    assert _openai("local/qwen2.5-coder-1.5b").price(USAGE) == 0.0  # free, not unknown
    assert _openai("house-model").price(USAGE) == pytest.approx((2400 + 1200) / 1e6)


@pytest.mark.parametrize("content, message", [
    ('{"m": {"input_per_mtok": 1}}', "model 'm': give exactly input_per_mtok"),
    ('{"m": [1, -2]}', "model 'm': prices cannot be negative"),
    ('{"m": ["1", 2]}', "model 'm': prices must be numbers"),
    ('{"m": 3}', "model 'm': expected"),
    ('["m"]', "expected an object"),
    ("{oops", "does not parse"),
])
def test_a_wrong_price_file_is_refused_naming_the_model(tmp_path, content, message):
    from waypoint.models.price_catalog import PriceFileError, load_price_file

    path = tmp_path / "prices.json"
    path.write_text(content)
    with pytest.raises(PriceFileError, match=re.escape(message)):
        load_price_file(path)
    with pytest.raises(PriceFileError, match=r"prices\.nope"):
        load_price_file(tmp_path / "prices.nope")


def test_the_server_config_prices_inline_or_from_a_file(tmp_path, monkeypatch, no_overrides):
    from waypoint.service.config import ConfigError, load_settings

    monkeypatch.delenv("WAYPOINT_PRICES", raising=False)
    config = tmp_path / "langgraph.json"
    config.write_text(json.dumps({"graphs": {}, "waypoint": {"prices": {
        "our-own-finetune-7b": {"input_per_mtok": 1.0, "output_per_mtok": 1.0}}}}))
    load_settings(config)
    assert _openai("our-own-finetune-7b").price(USAGE) == pytest.approx(1500 / 1e6)

    (tmp_path / "prices.json").write_text('{"our-own-finetune-7b": [2, 2]}')
    config.write_text(json.dumps({"graphs": {}, "waypoint": {"prices": "prices.json"}}))
    load_settings(config)  # a path relative to the config file
    assert _openai("our-own-finetune-7b").price(USAGE) == pytest.approx(3000 / 1e6)

    # The config's entry wins over the WAYPOINT_PRICES file's for the same model.
    env_file = tmp_path / "env-prices.json"
    env_file.write_text('{"our-own-finetune-7b": [9, 9], "other-model": [1, 0]}')
    monkeypatch.setenv("WAYPOINT_PRICES", str(env_file))
    load_settings(config)
    assert _openai("our-own-finetune-7b").price(USAGE) == pytest.approx(3000 / 1e6)
    assert _openai("other-model").price(USAGE) == pytest.approx(1200 / 1e6)

    config.write_text(json.dumps({"graphs": {}, "waypoint": {"prices": {"m": [1]}}}))
    with pytest.raises(ConfigError, match=r"waypoint\.prices: .*model 'm'"):
        load_settings(config)
    env_file.write_text("{oops")
    config.write_text(json.dumps({"graphs": {}}))
    with pytest.raises(ConfigError, match=r"WAYPOINT_PRICES: .*does not parse"):
        load_settings(config)
