"""Posting to Slack through a real WebClient pointed at a local stand-in of the Web API."""
from __future__ import annotations

import datetime as dt
import logging
import socket
import time

import pytest

from _util.errors import EXIT_PARTIAL, DeliveryError
from _util.settings import SLACK_DEFAULT_API_URL
from _util.slack.delivery import (
    make_slack_client,
    post_digest,
    post_message,
    with_metadata,
)
from tests.slack_standin import StandInResponse, error

TOKEN = "xoxb-111-222-secretsecretsecret"
PAYLOAD = {
    "channel": "C0123456789",
    "text": "AWS costs 2024-05-14: $1,234.50",
    "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*Amazon EC2* &amp; co"}}],
}
RETRIES = 2
DAY = dt.date(2024, 5, 14)


@pytest.fixture
def client(slack):
    return make_slack_client(TOKEN, slack.base_url, retries=RETRIES, backoff_seconds=0.01)


def test_a_post_carries_channel_token_text_and_blocks_and_returns_the_ts(slack, client):
    ts = post_message(client, PAYLOAD)
    [request] = slack.requests
    assert request.path == "/chat.postMessage"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.fields["channel"] == "C0123456789"
    assert request.fields["text"] == PAYLOAD["text"]
    assert request.fields["blocks"] == PAYLOAD["blocks"]
    assert ts == slack.answers[0].body["ts"]


def test_a_429_with_retry_after_is_waited_out_and_retried(slack, client):
    slack.script(error("ratelimited", status=429, **{"Retry-After": "1"}))
    started = time.monotonic()
    ts = post_message(client, PAYLOAD)
    assert time.monotonic() - started >= 1.0
    assert len(slack.posted()) == 2
    assert slack.posted()[1].fields["blocks"] == PAYLOAD["blocks"]
    assert ts == slack.answers[1].body["ts"]


def post(client, payload=PAYLOAD) -> str:
    """A digest's post with its retries, as delivery makes it (fast backoff)."""
    return post_digest(client, with_metadata(payload, DAY, payload["channel"]), DAY, since(),
                       retries=RETRIES, backoff_seconds=0.01)


def since() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_server_error_is_retried_after_looking_for_the_post(slack, client, status):
    slack.script(StandInResponse(status, "<html>upstream trouble</html>"))
    post(client)
    assert len(slack.delivered()) == 1 and len(slack.posted()) == 2
    assert [r.method for r in slack.requests] == [
        "chat.postMessage", "conversations.history", "chat.postMessage"]


def test_a_server_error_after_slack_posted_is_not_posted_again(slack, client):
    slack.script(StandInResponse(503, "<html>slow upstream</html>", posted=True))
    ts = post(client)
    assert len(slack.posted()) == 1 and [m.ts for m in slack.messages] == [ts]


def test_slack_down_after_all_retries_is_one_line_and_exit_code_3(slack, client):
    slack.script(*[StandInResponse(503, "<html>down</html>")] * (RETRIES + 1))
    with pytest.raises(DeliveryError) as caught:
        post(client)
    assert str(caught.value) == ("Slack is unavailable (HTTP 503) after retries: the message "
                                 "stays recorded and the next run delivers it")
    assert caught.value.exit_code == EXIT_PARTIAL
    assert len(slack.posted()) == RETRIES + 1


def test_rate_limited_beyond_the_retries_is_one_line(slack):
    client = make_slack_client(TOKEN, slack.base_url, retries=0)
    slack.script(error("ratelimited", status=429, **{"Retry-After": "1"}))
    with pytest.raises(DeliveryError, match=r"^Slack kept rate-limiting the bot \(ratelimited\)"):
        post_message(client, PAYLOAD)


ERRORS = [
    ("invalid_auth", "Slack rejected the token (invalid_auth): check SLACK_BOT_TOKEN"),
    ("not_authed", "Slack rejected the token (not_authed): check SLACK_BOT_TOKEN"),
    ("token_revoked", "Slack rejected the token (token_revoked): install the app again and "
                      "set SLACK_BOT_TOKEN to the new bot token"),
    ("account_inactive", "Slack rejected the token (account_inactive): the app's workspace "
                         "or user is deactivated; install the app again and set SLACK_BOT_TOKEN"),
    ("channel_not_found", "channel C0123456789 not found (channel_not_found): check "
                          "COST_TRACKING_SLACK_CHANNEL (a channel ID such as C0123456789, or a "
                          "name); a private channel needs the bot invited"),
    ("not_in_channel", "the bot is not in channel C0123456789 (not_in_channel): invite it "
                       "with /invite, or grant the chat:write.public scope"),
    ("is_archived", "channel C0123456789 is archived (is_archived): unarchive it or set "
                    "COST_TRACKING_SLACK_CHANNEL to another channel"),
    ("missing_scope", "the Slack app lacks the chat:write scope (missing_scope): add it to the "
                      "bot token scopes, reinstall the app and update SLACK_BOT_TOKEN"),
    ("restricted_action", "Slack does not let the bot post in C0123456789 (restricted_action): "
                          "ask a workspace admin or set COST_TRACKING_SLACK_CHANNEL to another "
                          "channel"),
    ("invalid_blocks", "Slack refused the message itself (invalid_blocks): a bug in the bot; "
                       "the payload is in the output folder's slack/<date>.json, please report it"),
    ("something_new", "Slack refused chat.postMessage (something_new)"),
]


@pytest.mark.parametrize("code, line", ERRORS, ids=[c for c, _ in ERRORS])
def test_slack_errors_become_one_line_saying_what_to_fix(slack, client, code, line):
    slack.script(error(code))
    with pytest.raises(DeliveryError) as caught:
        post_message(client, PAYLOAD)
    assert str(caught.value) == line
    assert "\n" not in str(caught.value)
    assert caught.value.exit_code == EXIT_PARTIAL
    assert len(slack.posted()) == 1  # refusals are not retried


def test_missing_scope_names_the_scope_slack_asked_for(slack, client):
    slack.script(StandInResponse(200, {"ok": False, "error": "missing_scope",
                                       "needed": "chat:write.public"}))
    with pytest.raises(DeliveryError, match=r"lacks the chat:write\.public scope"):
        post_message(client, PAYLOAD)


def test_an_unreachable_api_url_is_one_line_after_retries():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = make_slack_client(TOKEN, f"http://127.0.0.1:{port}/api/", retries=RETRIES,
                               backoff_seconds=0.01)
    with pytest.raises(DeliveryError) as caught:
        post(client)
    message = str(caught.value)
    assert message.startswith(f"cannot reach Slack at 127.0.0.1:{port} (")
    assert message.endswith("after retries: check the network or COST_TRACKING_SLACK_API_URL; "
                            "the message stays recorded and the next run delivers it")
    assert caught.value.exit_code == EXIT_PARTIAL


def test_a_wrong_api_url_answering_404_points_at_the_setting(slack, client):
    slack.script(StandInResponse(404, "<html>not here</html>"))
    with pytest.raises(DeliveryError) as caught:
        post_message(client, PAYLOAD)
    assert str(caught.value) == (f"the Slack API at 127.0.0.1:{slack.port} answered HTTP 404 "
                                 "to chat.postMessage: check COST_TRACKING_SLACK_API_URL")


def test_the_token_never_reaches_logs_or_errors(slack, client, caplog):
    caplog.set_level(logging.DEBUG)
    post_message(client, PAYLOAD)
    slack.script(error("invalid_auth"))
    with pytest.raises(DeliveryError) as caught:
        post_message(client, PAYLOAD)
    assert TOKEN not in caplog.text
    assert TOKEN not in str(caught.value)
    assert TOKEN not in str(caught.value.__cause__)
    assert slack.requests[0].headers["Authorization"].endswith(TOKEN)  # it was sent


def test_client_defaults_to_slack_and_completes_a_base_url_without_slash():
    assert make_slack_client(TOKEN, None).base_url == SLACK_DEFAULT_API_URL
    assert make_slack_client(TOKEN, "http://proxy.internal/slack/api").base_url == \
        "http://proxy.internal/slack/api/"
    assert make_slack_client(f" {TOKEN}\n", None).token == TOKEN
