"""The cost sources, by the name `COST_TRACKING_SOURCE` (or `--demo`) selects.

Each entry builds a source from the settings and the run's UTC date; a new source adds
its module and one line here.
"""
from __future__ import annotations

from typing import Callable

from _util.sources.base import CostQuery, CostSource, SourceFetch
from _util.sources.cost_explorer import cost_explorer_source
from _util.sources.cur_report import cur_source
from _util.sources.demo_account import demo_source

SOURCES: dict[str, Callable[..., CostSource]] = {
    "cost-explorer": cost_explorer_source,
    "cur": cur_source,
    "demo": demo_source,
}

__all__ = ["SOURCES", "CostQuery", "CostSource", "SourceFetch"]
