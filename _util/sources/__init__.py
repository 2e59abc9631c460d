"""The cost sources, by the name `COST_TRACKING_SOURCE` (or `--demo`) selects.

Each entry builds a source from the settings and the run's UTC date; a new source adds
its module and one line here.
"""
from __future__ import annotations

from typing import Callable

from _util.sources.base import CostQuery, CostSource, SourceFetch
from _util.sources.cost_explorer import cost_explorer_source
from _util.sources.demo_account import demo_source

# COST_TRACKING_CUR_ENGINE's values; here, so that settings can name them without
# importing the engines.
CUR_ENGINES = ("duckdb", "athena")


def cur_source(settings, today) -> CostSource:
    """The Cost and Usage Report source (cur_report.py), imported only by a CUR run: its
    engines bring sqlglot (~90 ms of every other run's start)."""
    from _util.sources.cur_report import cur_source as make_cur_source

    return make_cur_source(settings, today)


SOURCES: dict[str, Callable[..., CostSource]] = {
    "cost-explorer": cost_explorer_source,
    "cur": cur_source,
    "demo": demo_source,
}

__all__ = ["CUR_ENGINES", "SOURCES", "CostQuery", "CostSource", "SourceFetch"]
