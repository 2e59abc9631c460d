"""Digests an earlier run could not deliver: sent by a later run while still news."""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy.engine import Engine

from _util.settings import SLACK_DEFAULT_MAX_RETRIES
from _util.store import delivery_log

log = logging.getLogger(__name__)

# An undelivered digest is sent by a later run only while it is still news; catching up
# on days whose costs could not be fetched looks back as far.
PENDING_MAX_AGE_DAYS = 7


def deliver_pending(engine: Engine, client: Any, channel: str, day: dt.date,
                    retries: int = SLACK_DEFAULT_MAX_RETRIES, origin: str = "") -> None:
    """Post the pending digests of `channel` from days before `day`, oldest first, each
    once (one a run left 'posting' only if the channel does not have it); older than
    PENDING_MAX_AGE_DAYS they stay unsent, with a warning."""
    for pending in delivery_log.pending_deliveries(engine, exclude_day=day):
        pending_channel, kind = delivery_log.split_key(pending.channel)
        if pending_channel != channel:
            continue
        if (day - pending.day).days > PENDING_MAX_AGE_DAYS:
            log.warning("the digest of %s for %s was not delivered (or, %s, may have been); "
                        "it is older than %d days and stays unsent (re-run with --date %s "
                        "--force to send it)", pending.day, pending.channel,
                        "its answer was lost" if pending.status == delivery_log.POSTING
                        else "Slack refused it", PENDING_MAX_AGE_DAYS, pending.day)
            continue
        outcome = delivery_log.deliver_once(engine, client, pending.day, pending_channel,
                                            pending.payload, force=False, retries=retries,
                                            origin=origin, kind=kind)
        if outcome.posted:
            log.info("delivered the pending digest of %s", pending.day)
