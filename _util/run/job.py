"""What one report is, and the clients a run talks to.

A run makes one report (its day), or more when it catches up on days an earlier run
could not fetch; each is a `RunJob`, passed to the stages instead of copies of Settings.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from _util.sources.base import CostSource


@dataclass(frozen=True)
class RunJob:
    """One report: the day it is about, and the run it belongs to.

    `report_day` differs from `run_day` only when the source failed and the report is
    about the newest stored day (`stale`). The Slack payload and its delivery are the
    run's (`run_day`). Without `deliver` the pages are made again and nothing is posted;
    `force` posts even when the day was delivered already.
    """

    report_day: dt.date
    run_day: dt.date
    stale: bool = False
    deliver: bool = True
    force: bool = False


@dataclass(frozen=True)
class Clients:
    """Everything the run talks to outside the database, made once by the driver.

    None where the run does not use it: no source with --skip-fetch or a backtest, no S3
    client without a bucket or in a dry run, no Slack client without a token and channel
    or in a dry run.
    """

    source: CostSource | None = None
    s3: Any = None
    slack: Any = None
