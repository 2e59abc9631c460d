"""What one report is, and the clients a run talks to.

A run makes one report (its day), or more when it catches up on days an earlier run
could not fetch; each is a `RunJob`, passed to the stages instead of copies of Settings.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Callable

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


Factory = Callable[[], Any]


class Clients:
    """Everything the run talks to outside the database: the driver says once how each is
    made, and each is made on first use, inside the stage that needs it (so a client that
    cannot be made, a misspelt AWS_PROFILE say, fails that stage as its calls would).

    A factory is None where the run does not use that client: no source with --skip-fetch
    or a backtest, no S3 without a bucket or in a dry run, no Slack without a token and a
    channel or in a dry run, no Organizations unless account names are to be read from it.
    """

    def __init__(self, source: Callable[[], CostSource] | None = None,
                 s3: Factory | None = None, slack: Factory | None = None,
                 organizations: Factory | None = None) -> None:
        self._factories = {"source": source, "s3": s3, "slack": slack,
                           "organizations": organizations}
        self._made: dict[str, Any] = {}

    def _get(self, name: str) -> Any:
        if name not in self._made:
            self._made[name] = self._factories[name]()
        return self._made[name]

    @property
    def fetches(self) -> bool:
        return self._factories["source"] is not None

    @property
    def publishes(self) -> bool:
        return self._factories["s3"] is not None

    @property
    def posts(self) -> bool:
        return self._factories["slack"] is not None

    @property
    def names_accounts(self) -> bool:
        return self._factories["organizations"] is not None

    @property
    def source(self) -> CostSource:
        return self._get("source")

    @property
    def s3(self) -> Any:
        return self._get("s3")

    @property
    def slack(self) -> Any:
        return self._get("slack")

    @property
    def organizations(self) -> Any:
        return self._get("organizations")
