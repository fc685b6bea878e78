"""pricing-surge: a time-of-day and demand-surge pricing policy, written in Python.

price = asking price x multiplier, where the multiplier is

* x (1 + peak_bonus) on weekdays between peak_start_hour and peak_end_hour (UTC),
* x (1 - night_discount) between 00:00 and night_end_hour (UTC),
* x (1 + surge_weight x excess) when bookings in the last hour per GPU exceed surge_threshold
  (excess = rate - surge_threshold, at most surge_cap),

held within [min_multiplier, max_multiplier]. The host applies its guardrails afterwards.

Configuration keys (all optional, numbers as strings, from policies.toml):
peak_start_hour (8), peak_end_hour (20), peak_bonus (0.15), night_end_hour (6),
night_discount (0.10), surge_threshold (0.5), surge_weight (0.8), surge_cap (1.0),
min_multiplier (0.7), max_multiplier (2.5).

The module imports nothing (built with componentize-py --stub-wasi): every fact, the time included,
arrives in the request, so the same request always gets the same answer.
"""

from typing import List, Tuple

from componentize_py_types import Err, Ok, Result
from wit_world import exports
from wit_world.exports.pricing import PriceQuote, PricingRequest

DEFAULTS = {
    "peak_start_hour": 8.0,
    "peak_end_hour": 20.0,
    "peak_bonus": 0.15,
    "night_end_hour": 6.0,
    "night_discount": 0.10,
    "surge_threshold": 0.5,
    "surge_weight": 0.8,
    "surge_cap": 1.0,
    "min_multiplier": 0.7,
    "max_multiplier": 2.5,
}


def params_from(config: List[Tuple[str, str]]) -> dict:
    params = dict(DEFAULTS)
    for key, value in config:
        if key not in params:
            continue
        try:
            number = float(value.strip())
        except ValueError:
            raise Err(f"config {key}: {value!r} is not a number")
        if number != number or number in (float("inf"), float("-inf")):
            raise Err(f"config {key}: {value!r} is not a finite number")
        params[key] = number
    if not 0 < params["min_multiplier"] <= params["max_multiplier"]:
        raise Err("config: need 0 < min_multiplier <= max_multiplier")
    return params


def quote_one(params: dict, request: PricingRequest) -> PriceQuote:
    base = request.gpu.base_price
    if base != base or base < 0 or base == float("inf"):
        raise Err(f"base price {base} is not a valid price")
    hour = request.time.hour_of_day
    weekday = request.time.weekday
    m = 1.0
    reasons = []
    if weekday < 5 and params["peak_start_hour"] <= hour < params["peak_end_hour"]:
        m *= 1.0 + params["peak_bonus"]
        reasons.append(f"weekday peak hours +{params['peak_bonus'] * 100:.0f}%")
    elif hour < params["night_end_hour"]:
        m *= 1.0 - params["night_discount"]
        reasons.append(f"night hours -{params['night_discount'] * 100:.0f}%")
    market = request.market
    rate = market.bookings_last_hour / max(market.total_gpus, 1)
    excess = min(rate - params["surge_threshold"], params["surge_cap"])
    if excess > 0:
        m *= 1.0 + params["surge_weight"] * excess
        reasons.append(f"surge: {market.bookings_last_hour} booking(s) in the last hour")
    if m > params["max_multiplier"]:
        m = params["max_multiplier"]
        reasons.append(f"capped at x{m:.2f}")
    elif m < params["min_multiplier"]:
        m = params["min_multiplier"]
        reasons.append(f"floored at x{m:.2f}")
    multiplier = round(m * 10_000) / 10_000
    price = round(base * multiplier * 10_000) / 10_000
    why = ", ".join(reasons) if reasons else "ordinary demand"
    return PriceQuote(price, multiplier, f"{why}: x{multiplier:.2f}; {price:.4f} AITBC/h")


class Pricing(exports.Pricing):
    def quote(self, config: List[Tuple[str, str]], request: PricingRequest) -> PriceQuote:
        return quote_one(params_from(config), request)

    def quote_batch(
        self, config: List[Tuple[str, str]], requests: List[PricingRequest]
    ) -> List[Result[PriceQuote, str]]:
        try:
            params = params_from(config)
        except Err as err:
            return [Err(err.value) for _ in requests]
        answers: List[Result[PriceQuote, str]] = []
        for request in requests:
            try:
                answers.append(Ok(quote_one(params, request)))
            except Err as err:
                answers.append(Err(err.value))
        return answers
