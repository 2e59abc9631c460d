"""Never the same digest twice (issue 14): a post whose answer is lost, a 5xx after Slack
posted, a run killed while it waited for the answer. Each case through a real WebClient, a
local proxy that loses answers, and the Slack stand-in keeping what it was sent."""
from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _util.errors import DeliveryError
from _util.slack.delivery import DIGEST_EVENT, make_slack_client
from _util.store.database import create_tables, make_engine
from _util.store.delivery_log import DELIVERED, POSTING, deliver_once, delivery_status
from tests.lossy_proxy import running_proxy
from tests.slack_standin import StandInResponse

DAY = dt.date(2024, 5, 14)
CHANNEL = "C0123456789"
ROOT = Path(__file__).resolve().parent.parent


def payload(text: str = "AWS costs 2024-05-14: $1,234.50") -> dict:
    return {"channel": CHANNEL, "text": text,
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


def deliver(engine, client, **kwargs):
    return deliver_once(engine, client, DAY, CHANNEL, payload(), retries=2,
                        backoff_seconds=0.01, **kwargs)


def test_every_digest_carries_metadata_naming_its_day_and_channel(db_engine, slack):
    deliver(db_engine, make_slack_client("xoxb-test", slack.base_url))
    [message] = slack.messages
    assert message.metadata["event_type"] == DIGEST_EVENT
    assert message.metadata["event_payload"]["day"] == "2024-05-14"
    assert message.metadata["event_payload"]["channel"] == CHANNEL
    assert message.metadata["event_payload"]["digest_id"]


def test_a_lost_answer_is_found_in_the_channel_and_not_posted_again(db_engine, slack, caplog):
    with running_proxy(slack.base_url) as proxy:
        proxy.drop(1, "chat.postMessage")
        client = make_slack_client("xoxb-test", proxy.base_url, retries=2, backoff_seconds=0.01)
        outcome = deliver(db_engine, client)
    assert proxy.dropped == ["/chat.postMessage"]
    [message] = slack.in_channel(CHANNEL)
    assert outcome.posted and outcome.ts == message.ts
    record = delivery_status(db_engine, DAY, CHANNEL)
    assert record.status == DELIVERED and record.ts == message.ts
    assert [r.method for r in slack.requests] == ["chat.postMessage", "conversations.history"]
    assert "looking for it in C0123456789 before posting again" in caplog.text


def test_a_server_error_after_slack_posted_is_not_posted_again(db_engine, slack):
    slack.script(StandInResponse(500, "<html>oops</html>", posted=True))
    outcome = deliver(db_engine, make_slack_client("xoxb-test", slack.base_url))
    assert len(slack.in_channel(CHANNEL)) == 1
    assert delivery_status(db_engine, DAY, CHANNEL).ts == outcome.ts


def test_without_the_history_scope_it_posts_again_and_says_why(db_engine, slack, caplog):
    slack.history_error = "missing_scope"
    with running_proxy(slack.base_url) as proxy:
        proxy.drop(1, "chat.postMessage")
        client = make_slack_client("xoxb-test", proxy.base_url, retries=2, backoff_seconds=0.01)
        deliver(db_engine, client)
    assert len(slack.in_channel(CHANNEL)) == 2  # the old behaviour: a second copy
    assert "add the channels:history scope (groups:history for a private channel)" in caplog.text
    assert "posting again may show the digest twice" in caplog.text


def test_a_channel_name_cannot_be_searched_and_the_log_says_to_use_its_id(db_engine, slack, caplog):
    with running_proxy(slack.base_url) as proxy:
        proxy.drop(1, "chat.postMessage")
        client = make_slack_client("xoxb-test", proxy.base_url, retries=2, backoff_seconds=0.01)
        deliver_once(db_engine, client, DAY, "#costs", payload(), retries=2,
                     backoff_seconds=0.01)
    assert "set COST_TRACKING_SLACK_CHANNEL to the channel's ID" in caplog.text


def test_every_answer_lost_leaves_it_posting_and_the_next_run_finds_it(db_engine, slack):
    with running_proxy(slack.base_url) as proxy:
        proxy.drop(10, "chat.postMessage")
        proxy.drop(10, "conversations.history")
        client = make_slack_client("xoxb-test", proxy.base_url, retries=1, backoff_seconds=0.01)
        with pytest.raises(DeliveryError):
            deliver_once(db_engine, client, DAY, CHANNEL, payload(), retries=1,
                         backoff_seconds=0.01)
    assert delivery_status(db_engine, DAY, CHANNEL).status == POSTING
    copies = len(slack.in_channel(CHANNEL))
    assert copies >= 1  # Slack got it; the bot could not know

    outcome = deliver(db_engine, make_slack_client("xoxb-test", slack.base_url))
    assert not outcome.posted and "recorded as delivered" in outcome.skipped_reason
    assert len(slack.in_channel(CHANNEL)) == copies
    assert delivery_status(db_engine, DAY, CHANNEL).status == DELIVERED


KILLED_RUN = """
import datetime as dt, sys
sys.path.insert(0, {root!r})
from _util.slack.delivery import make_slack_client
from _util.store.database import make_engine
from _util.store.delivery_log import deliver_once
engine = make_engine({url!r})
client = make_slack_client("xoxb-test", {base!r})
deliver_once(engine, client, dt.date(2024, 5, 14), {channel!r}, {payload!r})
"""


def test_a_run_killed_while_waiting_for_the_answer_is_not_posted_twice(tmp_path, slack):
    url = f"sqlite:///{tmp_path / 'cost_tracking.db'}"
    engine = make_engine(url)
    create_tables(engine)
    slack.script(StandInResponse(200, {"ok": True, "channel": CHANNEL,
                                       "ts": f"{time.time():.6f}"}, delay=60))
    run = subprocess.Popen([sys.executable, "-c", KILLED_RUN.format(
        root=str(ROOT), url=url, base=slack.base_url, channel=CHANNEL, payload=payload())])
    try:
        deadline = time.monotonic() + 30
        while not slack.in_channel(CHANNEL) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert slack.in_channel(CHANNEL), "the killed run never posted"
    finally:
        run.kill()
        run.wait(timeout=10)
    assert delivery_status(engine, DAY, CHANNEL).status == POSTING

    logging.getLogger().handlers.clear()
    outcome = deliver(engine, make_slack_client("xoxb-test", slack.base_url))
    [message] = slack.in_channel(CHANNEL)
    assert not outcome.posted and outcome.ts == message.ts
    assert delivery_status(engine, DAY, CHANNEL).ts == message.ts
    assert json.loads(json.dumps(message.metadata))["event_payload"]["day"] == "2024-05-14"


def test_a_clear_failure_after_an_unclear_answer_still_leaves_it_posting(db_engine, slack):
    from tests.slack_standin import error

    slack.script(StandInResponse(503, "<html>busy</html>", posted=True), error("fatal_error"),
                 error("channel_not_found"))
    slack.history_error = "missing_scope"  # cannot look: the first 503 may have posted
    with pytest.raises(DeliveryError):
        deliver(db_engine, make_slack_client("xoxb-test", slack.base_url))
    assert delivery_status(db_engine, DAY, CHANNEL).status == POSTING


def test_slack_answering_fatal_error_after_posting_is_found_not_posted_again(db_engine, slack):
    from tests.slack_standin import error

    slack.script(StandInResponse(200, {"ok": False, "error": "fatal_error"}, posted=True))
    outcome = deliver(db_engine, make_slack_client("xoxb-test", slack.base_url))
    assert len(slack.in_channel(CHANNEL)) == 1 and outcome.ts == slack.messages[0].ts
    assert error("fatal_error").body["error"] == "fatal_error"


def test_the_digest_is_found_past_the_first_page_of_a_busy_channel(db_engine, slack):
    with running_proxy(slack.base_url) as proxy:
        proxy.drop(1, "chat.postMessage")
        client = make_slack_client("xoxb-test", proxy.base_url, retries=2, backoff_seconds=0.01)
        # 450 messages by people right after the digest arrives: it is on the third page.
        import threading

        def chatter():
            while not slack.in_channel(CHANNEL):
                time.sleep(0.005)
            first = float(slack.messages[0].ts)
            for n in range(450):
                slack.keep(CHANNEL, first + 0.001 * (n + 1), f"chat {n}")

        talker = threading.Thread(target=chatter)
        talker.start()
        outcome = deliver(db_engine, client)
        talker.join()
    digests = [m for m in slack.in_channel(CHANNEL) if m.metadata]
    assert len(digests) == 1 and outcome.ts == digests[0].ts
    assert sum(r.method == "conversations.history" for r in slack.requests) >= 3


def test_another_bots_digest_of_the_same_day_is_not_taken_for_this_ones(db_engine, slack):
    from _util.slack.delivery import digest_metadata

    # Another installation (another database) posts its digest of the day to the channel;
    # ours gets a 503 without being posted: it must be posted, not "found".
    other = digest_metadata(DAY, CHANNEL, origin="mysql+pymysql://other-bot@db/costs")
    slack.keep(CHANNEL, time.time(), "the other bot's digest", other)
    slack.script(StandInResponse(503, "<html>busy</html>"))
    outcome = deliver_once(db_engine, make_slack_client("xoxb-test", slack.base_url), DAY,
                           CHANNEL, payload(), retries=1, backoff_seconds=0.01,
                           origin="sqlite:///ours.db")
    theirs, ours = slack.in_channel(CHANNEL)
    assert outcome.posted and outcome.ts == ours.ts != theirs.ts
    assert ours.metadata["event_payload"]["digest_id"] != other["event_payload"]["digest_id"]
