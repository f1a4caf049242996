"""Per-model prices, and the cost of a call. A model without a price costs `None`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..usage import Usage


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens."""

    input_per_mtok: float
    output_per_mtok: float

    def __post_init__(self) -> None:
        if self.input_per_mtok < 0 or self.output_per_mtok < 0:
            raise ValueError(f"prices cannot be negative: {self}")

    def cost(self, usage: Usage) -> float:
        return (usage.input_tokens * self.input_per_mtok
                + usage.output_tokens * self.output_per_mtok) / 1_000_000


class PriceBook:
    """Prices by model name. Unknown models have no price (None), never a price of 0;
    a free model (a local one) is priced at 0 explicitly."""

    def __init__(self, prices: Mapping[str, Price | tuple[float, float]] | None = None) -> None:
        self._prices: dict[str, Price] = {}
        for model, price in (prices or {}).items():
            self.set(model, price)

    def set(self, model: str, price: Price | tuple[float, float]) -> None:
        self._prices[model] = price if isinstance(price, Price) else Price(*price)

    def get(self, model: str) -> Price | None:
        return self._prices.get(model)

    def cost(self, model: str, usage: Usage) -> float | None:
        price = self._prices.get(model)
        return None if price is None else price.cost(usage)

    def __contains__(self, model: object) -> bool:
        return model in self._prices

    def __repr__(self) -> str:
        return f"PriceBook({sorted(self._prices)})"
