"""Text cells of the CSV files the bot writes (backtests, labels), safe in a spreadsheet.

A spreadsheet runs a cell that starts with =, +, -, @, a tab or a carriage return as a
formula: a service or tag value named "=HYPERLINK(...)" would run when a FinOps engineer
opens the backtest. As OWASP recommends (CSV injection), such a cell is written with a
leading apostrophe, which spreadsheets show as text; reading a labels file takes it off
again. Numbers (a change of -8.00) are written as numbers, never through here.
"""
from __future__ import annotations

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(text: str) -> str:
    """`text` as a spreadsheet shows it without running it (a name that starts with an
    apostrophe gets one more, so reading it back gives it whole).

    >>> safe_cell("=1+1"), safe_cell("web-prod"), safe_cell("-x"), safe_cell("'q")
    ("'=1+1", 'web-prod', "'-x", "''q")
    """
    return "'" + text if text.startswith((*FORMULA_STARTS, "'")) else text


def read_cell(text: str) -> str:
    """A cell `safe_cell` wrote, as it was before: a leading apostrophe is the marker.

    >>> read_cell("'=1+1"), read_cell("''q"), read_cell("plain")
    ('=1+1', "'q", 'plain')
    """
    return text[1:] if text.startswith("'") else text
