"""Which day a report from stored data can be about, once the cost source has failed."""
from __future__ import annotations

import datetime as dt
import logging

from _util.errors import ConfigError
from _util.store.cost_store import SourceState

log = logging.getLogger(__name__)


def stale_report_day(state: SourceState | None, stored_as: tuple[str, str, str],
                     day: dt.date, failure: Exception) -> tuple[dt.date, str | None]:
    """The day to report, and a note for the run's outcome when it is not `day`.

    The run's day is usually not stored yet (a daily run fetches it); analysing it anyway
    would read every service as $0 and alert a spike down on each. The report is then
    about the newest day the database holds, marked stale. With nothing stored at all
    there is nothing to report: the source's error (`failure`) ends the run (exit 2); so
    too when what is stored came from another account or grouping (the demo's, say):
    `stored_as` is (account, group_by, record_types) of this run's source and query.
    """
    if (state is None or state.first_day > day
            or (state.account, state.group_by, state.record_types) != stored_as):
        raise failure
    if state.last_day >= day:
        return day, None
    note = (f"the database holds no costs for {day} yet: the report is about "
            f"{state.last_day}, the newest stored day")
    log.warning("%s", note)
    return state.last_day, note


def require_stored(state: SourceState | None, day: dt.date) -> None:
    """Without a fetch (--skip-fetch) a report can only be about a stored day: an
    unstored one would read every service as $0 and alert a spike down on each."""
    if state is None:
        raise ConfigError("--skip-fetch: the database holds no costs yet; run without "
                          "--skip-fetch first to fetch them")
    if not state.first_day <= day <= state.last_day:
        raise ConfigError(
            f"--skip-fetch: the database holds no costs for {day} (it holds "
            f"{state.first_day}..{state.last_day}; the newest stored day is {state.last_day}): "
            f"run without --skip-fetch to fetch it, or use --date {state.last_day}")
