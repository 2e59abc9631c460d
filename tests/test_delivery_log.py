"""Once per day and channel: the slack_delivery table and deliver_once, on SQLite and MariaDB."""
from __future__ import annotations

import datetime as dt

import pytest

from _util.errors import DeliveryError
from _util.slack.delivery import make_slack_client
from _util.store.delivery_log import (
    DELIVERED,
    PENDING,
    POSTING,
    deliver_once,
    delivery_status,
    pending_deliveries,
    record_delivered,
    record_pending,
)
from tests.slack_standin import StandInResponse, error

DAY = dt.date(2024, 5, 14)
CHANNEL = "C0123456789"
RETRIES = 1


def without_metadata(recorded: dict) -> dict:
    return {k: v for k, v in recorded.items() if k != "metadata"}


def payload(text: str = "AWS costs 2024-05-14: $1,234.50") -> dict:
    return {"channel": CHANNEL, "text": text,
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


def deliver(*args, **kwargs):
    """deliver_once with the test's retries and a fast backoff."""
    return deliver_once(*args, retries=RETRIES, backoff_seconds=0.01, **kwargs)


@pytest.fixture
def client(slack):
    return make_slack_client("xoxb-test", slack.base_url, retries=RETRIES, backoff_seconds=0.01)


def test_nothing_recorded_means_no_status(db_engine):
    assert delivery_status(db_engine, DAY, CHANNEL) is None
    assert pending_deliveries(db_engine) == []


def test_pending_then_delivered_round_trips_the_exact_payload(db_engine):
    hostile = payload("Tom &amp; Jerry &lt;x&gt; \"q\" 'q' 💸👩‍💻 " + "z" * 300)
    record_pending(db_engine, DAY, CHANNEL, hostile)
    pending = delivery_status(db_engine, DAY, CHANNEL)
    assert pending.status == PENDING and pending.ts is None and pending.delivered_at is None
    assert pending.payload == hostile
    record_delivered(db_engine, DAY, CHANNEL, "1715700001.000100")
    done = delivery_status(db_engine, DAY, CHANNEL)
    assert done.status == DELIVERED and done.delivered
    assert done.ts == "1715700001.000100"
    assert done.delivered_at is not None and done.payload == hostile


def test_a_payload_beyond_64_kb_is_stored_whole(db_engine):
    big = payload("x" * 2900)
    big["blocks"] = big["blocks"] * 50  # ~150 KB, as a full 50-block digest can be
    record_pending(db_engine, DAY, CHANNEL, big)
    assert delivery_status(db_engine, DAY, CHANNEL).payload == big


def test_recording_again_replaces_the_payload_and_reopens_the_delivery(db_engine):
    record_pending(db_engine, DAY, CHANNEL, payload("first"))
    record_delivered(db_engine, DAY, CHANNEL, "1.1")
    record_pending(db_engine, DAY, CHANNEL, payload("second"))
    again = delivery_status(db_engine, DAY, CHANNEL)
    assert again.payload["text"] == "second"
    assert again.status == PENDING and again.ts is None


def test_channels_are_delivered_separately(db_engine, slack, client):
    deliver(db_engine, client, DAY, "C1", payload())
    outcome = deliver(db_engine, client, DAY, "C2", payload())
    assert outcome.posted
    assert [r.fields["channel"] for r in slack.delivered()] == ["C1", "C2"]


def test_a_second_run_for_the_same_day_posts_nothing(db_engine, slack, client):
    first = deliver(db_engine, client, DAY, CHANNEL, payload())
    assert first.posted and first.ts
    second = deliver(db_engine, client, DAY, CHANNEL, payload("changed"))
    assert not second.posted
    assert second.ts == first.ts
    assert second.skipped_reason == (f"the digest for 2024-05-14 was already delivered to "
                                     f"{CHANNEL} (ts {first.ts}); --force posts it again")
    assert len(slack.posted()) == 1
    assert delivery_status(db_engine, DAY, CHANNEL).payload["text"] == payload()["text"]


def test_force_posts_again_and_records_the_new_ts(db_engine, slack, client):
    first = deliver(db_engine, client, DAY, CHANNEL, payload())
    forced = deliver(db_engine, client, DAY, CHANNEL, payload("again"), force=True)
    assert forced.posted and forced.ts != first.ts
    assert [r.fields["text"] for r in slack.delivered()] == [payload()["text"], "again"]
    record = delivery_status(db_engine, DAY, CHANNEL)
    assert record.ts == forced.ts and record.payload["text"] == "again"
    assert record.attempts == 2


def test_a_failed_post_stays_pending_and_a_later_run_delivers_it_exactly_once(
        db_engine, slack, client):
    # Rate-limited, then down for every retry: the run gives up with exit code 3.
    slack.script(error("ratelimited", status=429, **{"Retry-After": "0"}),
                 *[StandInResponse(503, "down")] * (RETRIES + 1))
    with pytest.raises(DeliveryError, match=r"^Slack is unavailable \(HTTP 503\)"):
        deliver(db_engine, client, DAY, CHANNEL, payload())
    record = delivery_status(db_engine, DAY, CHANNEL)
    # A 5xx is no clear answer: the digest is 'posting' until a run looks for it.
    assert record.status == POSTING and record.attempts == 1
    assert slack.delivered() == []

    # The next run (a later day) finds it, looks in the channel, and delivers it.
    later = DAY + dt.timedelta(days=1)
    [waiting] = pending_deliveries(db_engine, exclude_day=later)
    assert (waiting.day, waiting.channel) == (DAY, CHANNEL)
    assert without_metadata(waiting.payload) == payload()
    outcome = deliver(db_engine, client, waiting.day, waiting.channel, waiting.payload)
    assert outcome.posted
    assert pending_deliveries(db_engine) == []
    assert delivery_status(db_engine, DAY, CHANNEL).attempts == 2

    # And never again.
    assert not deliver(db_engine, client, DAY, CHANNEL, payload()).posted
    assert [r.fields["text"] for r in slack.delivered()] == [payload()["text"]]


def test_a_refused_post_stays_pending_with_its_message(db_engine, slack, client):
    slack.script(error("channel_not_found"))
    with pytest.raises(DeliveryError, match=r"^channel C0123456789 not found") as caught:
        deliver(db_engine, client, DAY, CHANNEL, payload())
    assert caught.value.exit_code == 3
    assert delivery_status(db_engine, DAY, CHANNEL).status == PENDING


def test_pending_deliveries_are_oldest_first_and_leave_out_the_runs_own_day(db_engine):
    for offset in (3, 1, 2, 0):
        record_pending(db_engine, DAY - dt.timedelta(days=offset), CHANNEL, payload())
    record_delivered(db_engine, DAY - dt.timedelta(days=2), CHANNEL, "9.9")
    days = [r.day for r in pending_deliveries(db_engine, exclude_day=DAY)]
    assert days == [DAY - dt.timedelta(days=3), DAY - dt.timedelta(days=1)]
    assert len(pending_deliveries(db_engine)) == 3


def test_the_payload_is_posted_to_the_channel_it_is_recorded_for(db_engine, slack, client):
    deliver(db_engine, client, DAY, "C777", payload())  # payload names CHANNEL
    assert slack.delivered()[0].fields["channel"] == "C777"
    assert delivery_status(db_engine, DAY, "C777").payload["channel"] == "C777"
