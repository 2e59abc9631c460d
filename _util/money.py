"""Amounts as people read them, for every edge (Slack, pages, plots), in the costs' currency.

One formatter: Slack writes a minus as "-" and a missing number as "n/a"; the site uses
the typographic minus "−" and an em dash. Amounts stay floats until this point.

The currency is the stored costs' unit (one per metric: the store refuses a mix). Like a
locale, it holds for everything a run formats, so it is set once around the formatting
(`in_currency`) rather than passed through every sentence: code that formats money
outside such a block formats US dollars.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

# No-break space between a code used as its own symbol and the number ("CHF 12.00").
_NBSP = "\u00a0"


@dataclass(frozen=True)
class Currency:
    """How one currency's amounts read: its ISO code, symbol and decimal places."""

    code: str
    symbol: str
    places: int

    def prefix(self) -> str:
        """'$' or '€' right before the digits; a code as symbol gets a space ('CHF 1')."""
        return self.symbol + _NBSP if self.symbol == self.code else self.symbol


@lru_cache(maxsize=None)
def currency(code: str) -> Currency:
    """The currency with ISO 4217 `code`, as read in English: US dollars '$', euros '€',
    yen '¥' with no decimals, Canadian dollars 'CA$' (Babel's CLDR data, en_US); a code
    CLDR does not know reads as itself ('XTS 12.00')."""
    if code == USD.code:
        return USD
    # Imported here: a run in US dollars never loads Babel and its CLDR data (~30 ms).
    from babel.numbers import get_currency_precision, get_currency_symbol

    return Currency(code, get_currency_symbol(code, "en_US"), get_currency_precision(code))


# US dollars as Babel reads them ("$", two places), written out: the default, asked for
# by most runs.
USD = Currency("USD", "$", 2)
_current: ContextVar[Currency] = ContextVar("currency", default=USD)


@contextmanager
def in_currency(code: str) -> Iterator[Currency]:
    """Format amounts in `code` inside the block (this thread or task only)."""
    token = _current.set(currency(code))
    try:
        yield _current.get()
    finally:
        _current.reset(token)


def current_currency() -> Currency:
    return _current.get()


def money(value: float | None, minus: str = "-", missing: str = "n/a") -> str:
    """$1,234.56, or -$1,234.56 for a credit (€1,234.56, ¥1,235 in those currencies);
    `missing` for None, NaN or infinity."""
    if value is None or not math.isfinite(value):
        return missing
    c = _current.get()
    text = f"{c.prefix()}{abs(value):,.{c.places}f}"
    return minus + text if value < 0 else text


def signed_money(value: float | None, minus: str = "-", missing: str = "n/a") -> str:
    """+$12.00 or -$12.00: a change, always with its sign."""
    if value is None or not math.isfinite(value):
        return missing
    return money(value, minus, missing) if value < 0 else f"+{money(value)}"

