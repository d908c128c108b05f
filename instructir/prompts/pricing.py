"""Known per-token prices, for the cost estimate in a generation summary.

US dollars per million tokens (input, output), from the providers' public price lists. A model not listed
has no estimate unless the user gives prices; local models cost nothing.
"""

from __future__ import annotations

PRICES_PER_MILLION: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-4": (30.00, 60.00),
    "gpt-3.5-turbo": (0.50, 1.50),
}


def estimate_cost(
    backend: str,
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    prices: tuple[float, float] | None = None,
) -> float | None:
    """Dollars for the given token counts, or None when the model's price is unknown."""
    if backend == "local":
        return 0.0
    known = prices or PRICES_PER_MILLION.get(model)
    if known is None:
        return None
    price_in, price_out = known
    return round((prompt_tokens * price_in + completion_tokens * price_out) / 1e6, 6)
