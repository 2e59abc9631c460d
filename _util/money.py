"""Dollar amounts as people read them, for every edge (Slack, pages, plots).

One formatter: Slack writes a minus as "-" and a missing number as "n/a"; the site uses
the typographic minus "−" and an em dash. Amounts stay floats until this point.
"""
from __future__ import annotations

import math


def money(value: float | None, minus: str = "-", missing: str = "n/a") -> str:
    """$1,234.56, or -$1,234.56 for a credit; `missing` for None, NaN or infinity."""
    if value is None or not math.isfinite(value):
        return missing
    return f"{minus}${abs(value):,.2f}" if value < 0 else f"${abs(value):,.2f}"


def signed_money(value: float | None, minus: str = "-", missing: str = "n/a") -> str:
    """+$12.00 or -$12.00: a change, always with its sign."""
    if value is None or not math.isfinite(value):
        return missing
    return money(value, minus, missing) if value < 0 else f"+{money(value)}"
