"""Posting the digest to Slack: one WebClient factory, one call, failures as one line.

slack_sdk's own retry handlers do the waiting: HTTP 429 is retried after its
Retry-After, connection failures and 5xx answers with exponential backoff and jitter.
What is still failing after that becomes a `DeliveryError` whose message names the
setting or Slack app option to fix, so the driver can print it as is (exit code 3).

Except for chat.postMessage after an answer that is not clear (a dropped connection, a
read timeout, a 5xx): Slack may have posted the message, so posting again could show the
digest twice. Every digest carries message metadata (`cost_digest`, with its day and
channel), and before posting again `post_digest` looks for it in the channel's history
since the post began (`conversations.history`, scope channels:history or groups:history);
found means delivered. Without the scope (or with a channel name instead of an ID) it
cannot look, says so in the log, and posts again as before.

The token never appears in anything this module logs or raises; slack_sdk itself redacts
the Authorization header in its debug log.
"""
from __future__ import annotations

import datetime as dt
import http.client
import logging
import random
import socket
import ssl
import time
import uuid
from typing import Any
from urllib.error import URLError
from urllib.parse import urlsplit

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry import (
    BackoffRetryIntervalCalculator,
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    RetryHandler,
)
from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler
from slack_sdk.http_retry.jitter import Jitter

from _util.errors import DeliveryError
from _util.settings import SLACK_DEFAULT_API_URL, SLACK_DEFAULT_MAX_RETRIES

log = logging.getLogger(__name__)

# Production is patient: the default 4 retries (settings' SLACK_DEFAULT_MAX_RETRIES) of
# 2, 4, 8, 16 s (+ up to 50% jitter) ride out a minute-long outage; a 429 waits what
# Slack's Retry-After asks, up to 4 times.
BACKOFF_SECONDS = 2.0
TIMEOUT_SECONDS = 30
# The metadata event type every digest carries, so a run can find its own message.
DIGEST_EVENT = "cost_digest"
# Looking for a digest: history from when the post began (less this, for clock skew) to
# this long after (a post and its retries take minutes), at most this many pages of 200.
HISTORY_MARGIN_SECONDS = 300
POST_WINDOW_SECONDS = 3600
HISTORY_PAGES = 5
# Slack's answers (HTTP 200) that its documentation says may come after it posted.
UNCLEAR_CODES = {"internal_error", "fatal_error", "service_unavailable", "request_timeout"}
POST_METHOD = "chat.postMessage"

_TOKEN_ERRORS = {"invalid_auth", "not_authed", "token_expired", "not_allowed_token_type",
                 "invalid_token", "two_factor_setup_required"}
_BAD_MESSAGE_ERRORS = {"invalid_blocks", "invalid_blocks_format", "too_many_attachments",
                       "msg_too_long", "no_text", "invalid_arguments", "invalid_form_data",
                       "invalid_json", "json_not_object", "invalid_charset"}


class _ProportionalJitter(Jitter):
    """Up to half the interval again, so retries from many hosts spread out."""

    def recalculate(self, duration: float) -> float:
        return duration * (1.0 + 0.5 * random.random())


class _GatewayErrorRetryHandler(ServerErrorRetryHandler):
    """slack_sdk's handler retries 500 and 503; a proxy in front of Slack adds 502, 504.
    Not for chat.postMessage: Slack may have posted it (`post_digest` looks first)."""

    def _can_retry(self, *, state, request, response=None, error=None) -> bool:  # noqa: ANN001
        if request.url.endswith(POST_METHOD):
            return False
        return response is not None and response.status_code in (500, 502, 503, 504)


class _ConnectionRetryHandler(ConnectionErrorRetryHandler):
    """Connection errors are retried, except a post's: the request may have arrived."""

    def _can_retry(self, *, state, request, response=None, error=None) -> bool:  # noqa: ANN001
        if request.url.endswith(POST_METHOD):
            return False
        return super()._can_retry(state=state, request=request, response=response, error=error)


class UnclearDelivery(DeliveryError):
    """The post went out and no clear answer came back: Slack may have the message."""


class NotSent(DeliveryError):
    """The post could not leave (connection refused, no such host, TLS): safe to retry."""


class HistoryUnavailable(DeliveryError):
    """The channel's history cannot be read (a missing scope, a channel name)."""


def make_slack_client(token: str, base_url: str | None = None, *,
                      retries: int = SLACK_DEFAULT_MAX_RETRIES,
                      backoff_seconds: float = BACKOFF_SECONDS) -> WebClient:
    """The one Slack client of a run; `base_url` is COST_TRACKING_SLACK_API_URL or None.

    Tests pass a small `backoff_seconds` to keep retried failures fast.
    """
    interval = BackoffRetryIntervalCalculator(backoff_factor=backoff_seconds,
                                              jitter=_ProportionalJitter())
    handlers: list[RetryHandler] = [
        RateLimitErrorRetryHandler(max_retry_count=retries),
        _ConnectionRetryHandler(max_retry_count=retries, interval_calculator=interval),
        _GatewayErrorRetryHandler(max_retry_count=retries, interval_calculator=interval),
    ]
    url = base_url or SLACK_DEFAULT_API_URL
    if not url.endswith("/"):
        url += "/"
    return WebClient(token=token.strip(), base_url=url, timeout=TIMEOUT_SECONDS,
                     retry_handlers=handlers)


def digest_id(day: dt.date, channel: str, origin: str) -> str:
    """The same for every post of one installation's digest of `day` to `channel`;
    `origin` (the database it reports from) keeps two bots posting to one channel apart."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"cost-digest:{day.isoformat()}:{channel}:{origin}"))


def digest_metadata(day: dt.date, channel: str, origin: str = "") -> dict[str, Any]:
    """The metadata a digest carries: what a run looks for before it posts again."""
    return {"event_type": DIGEST_EVENT,
            "event_payload": {"day": day.isoformat(), "channel": channel,
                              "digest_id": digest_id(day, channel, origin)}}


def with_metadata(payload: dict[str, Any], day: dt.date, channel: str,
                  origin: str = "") -> dict[str, Any]:
    return {**payload, "channel": channel, "metadata": digest_metadata(day, channel, origin)}


def post_message(client: WebClient, payload: dict[str, Any]) -> str:
    """Post one chat.postMessage payload; return Slack's message `ts`.

    Raises DeliveryError with one line saying what to fix when Slack refuses the message,
    and UnclearDelivery when the request may have reached Slack without a clear answer
    (a dropped connection, a read timeout, a 5xx).
    """
    channel = str(payload.get("channel") or "")
    try:
        response = client.chat_postMessage(**payload)
    except SlackApiError as exc:
        line = _api_error_line(exc, channel, client.base_url)
        status = getattr(exc.response, "status_code", None)
        data = exc.response.data if isinstance(getattr(exc.response, "data", None), dict) else {}
        if (status is not None and status >= 500) or data.get("error") in UNCLEAR_CODES:
            raise UnclearDelivery(line) from exc
        raise DeliveryError(line) from exc
    except (URLError, OSError, http.client.HTTPException) as exc:
        # Connection refused, DNS, TLS: never sent; reset, timeout: perhaps received.
        reason = getattr(exc, "reason", None) or exc
        line = (f"cannot reach Slack at {_host(client.base_url)} ({reason}) after retries: "
                "check the network or COST_TRACKING_SLACK_API_URL; the message stays "
                "recorded and the next run delivers it")
        if _never_sent(exc):
            raise NotSent(line) from exc
        raise UnclearDelivery(line) from exc
    except SlackClientError as exc:
        raise DeliveryError(f"the Slack client refused the message: {exc}") from exc
    ts = response.get("ts")
    if not ts:
        raise DeliveryError(f"Slack answered chat.postMessage without a message ts "
                            f"(HTTP {response.status_code})")
    log.info("posted the digest to %s (ts %s)", channel, ts)
    return str(ts)


def _never_sent(exc: BaseException) -> bool:
    """A failure while connecting, before the request could reach Slack: refused, no such
    host, a TLS handshake (urllib wraps connection failures in URLError; a TLS error after
    the body went out is not one of these)."""
    if isinstance(exc, ConnectionRefusedError):
        return True
    reason = getattr(exc, "reason", None) if isinstance(exc, URLError) else None
    return isinstance(reason, (ConnectionRefusedError, socket.gaierror, ssl.SSLError))


def _host(url: str) -> str:
    return urlsplit(url).netloc or url


def _api_error_line(exc: SlackApiError, channel: str, base_url: str) -> str:
    """One line for a failed chat.postMessage: what Slack said and what to change."""
    response = exc.response
    status = getattr(response, "status_code", None)
    data = response.data if isinstance(getattr(response, "data", None), dict) else {}
    code = str(data.get("error") or "")
    if status == 429 or code == "ratelimited":
        return ("Slack kept rate-limiting the bot (ratelimited) after retries: the message "
                "stays recorded and the next run delivers it")
    if status is not None and status >= 500:
        return (f"Slack is unavailable (HTTP {status}) after retries: the message stays "
                "recorded and the next run delivers it")
    if status is not None and status != 200:
        return (f"the Slack API at {_host(base_url)} answered HTTP {status} "
                f"to chat.postMessage: check COST_TRACKING_SLACK_API_URL")
    if code in _TOKEN_ERRORS:
        return f"Slack rejected the token ({code}): check SLACK_BOT_TOKEN"
    if code == "account_inactive":
        return ("Slack rejected the token (account_inactive): the app's workspace or user "
                "is deactivated; install the app again and set SLACK_BOT_TOKEN")
    if code == "token_revoked":
        return ("Slack rejected the token (token_revoked): install the app again and set "
                "SLACK_BOT_TOKEN to the new bot token")
    if code == "channel_not_found":
        return (f"channel {channel} not found (channel_not_found): check "
                "COST_TRACKING_SLACK_CHANNEL (a channel ID such as C0123456789, or a name); "
                "a private channel needs the bot invited")
    if code == "not_in_channel":
        return (f"the bot is not in channel {channel} (not_in_channel): invite it with "
                "/invite, or grant the chat:write.public scope")
    if code == "is_archived":
        return (f"channel {channel} is archived (is_archived): unarchive it or set "
                "COST_TRACKING_SLACK_CHANNEL to another channel")
    if code == "missing_scope":
        needed = data.get("needed") or "chat:write"
        return (f"the Slack app lacks the {needed} scope (missing_scope): add it to the "
                "bot token scopes, reinstall the app and update SLACK_BOT_TOKEN")
    if code in {"restricted_action", "restricted_action_read_only_channel",
                "restricted_action_thread_only_channel", "restricted_action_non_threadable_channel",
                "ekm_access_denied", "team_access_not_granted"}:
        return (f"Slack does not let the bot post in {channel} ({code}): ask a workspace "
                "admin or set COST_TRACKING_SLACK_CHANNEL to another channel")
    if code in _BAD_MESSAGE_ERRORS:
        return (f"Slack refused the message itself ({code}): a bug in the bot; the payload "
                "is in the output folder's slack/<date>.json, please report it")
    shown = code.splitlines()[0][:200] if code else "no error code"
    return f"Slack refused chat.postMessage ({shown})"


def find_digest(client: WebClient, channel: str, day: dt.date, since: dt.datetime,
                origin: str = "") -> str | None:
    """The `ts` of this installation's digest of `day` in `channel`, posted within an hour
    after `since` (UTC, when the post began), or None when the channel surely has none.

    Raises HistoryUnavailable when the history cannot be read (the scope is missing, the
    channel is a name, not an ID) or holds too many messages in that hour to be sure."""
    began = since.replace(tzinfo=dt.timezone.utc).timestamp()
    wanted = digest_id(day, channel, origin)
    cursor = None
    for _ in range(HISTORY_PAGES):
        try:
            response = client.conversations_history(
                channel=channel, oldest=f"{began - HISTORY_MARGIN_SECONDS:.6f}",
                latest=f"{began + POST_WINDOW_SECONDS:.6f}", inclusive=True,
                include_all_metadata=True, limit=200, cursor=cursor)
        except SlackApiError as exc:
            code = exc.response.data.get("error") if isinstance(exc.response.data, dict) else ""
            raise HistoryUnavailable(_history_error_line(code or "no error code", channel)) from exc
        except (URLError, OSError, http.client.HTTPException) as exc:
            raise HistoryUnavailable(f"cannot read the history of {channel} ({exc})") from exc
        for message in response.get("messages") or []:
            event = message.get("metadata") or {}
            found = event.get("event_payload") or {}
            if event.get("event_type") == DIGEST_EVENT and found.get("digest_id") == wanted:
                return str(message.get("ts"))
        cursor = (response.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            return None
    raise HistoryUnavailable(f"the history of {channel} holds more than "
                             f"{HISTORY_PAGES * 200} messages around the post: cannot be sure")


def _history_error_line(code: str, channel: str) -> str:
    if code == "missing_scope":
        return ("the Slack app cannot read channel history (missing_scope): add the "
                "channels:history scope (groups:history for a private channel) so a run can "
                "check whether Slack already has a digest before posting it again")
    if code == "channel_not_found":
        return (f"cannot read the history of {channel} (channel_not_found): set "
                "COST_TRACKING_SLACK_CHANNEL to the channel's ID (C0123456789) so a run can "
                "check whether Slack already has a digest before posting it again")
    return f"cannot read the history of {channel} ({code})"


def post_digest(client: WebClient, payload: dict[str, Any], day: dt.date, since: dt.datetime,
                retries: int = SLACK_DEFAULT_MAX_RETRIES,
                backoff_seconds: float = BACKOFF_SECONDS, origin: str = "") -> str:
    """Post the digest of `day` (a payload `with_metadata`) and return its ts, posting
    again after an unclear answer only when the channel does not have it already.

    `since` is when the delivery began (UTC): the history is searched from then on. Once
    an answer was unclear, any later failure is unclear too (Slack may have the first)."""
    channel = str(payload["channel"])
    unclear = False
    for attempt in range(retries + 1):
        try:
            return post_message(client, payload)
        except NotSent as exc:
            if attempt == retries:
                if unclear:
                    raise UnclearDelivery(str(exc)) from exc
                raise
            _pause(backoff_seconds, attempt)
        except UnclearDelivery as exc:
            unclear = True
            log.warning("no clear answer from Slack to the digest of %s (%s): looking for it "
                        "in %s before posting again", day, exc.__cause__ or exc, channel)
            _pause(backoff_seconds, attempt)  # Slack may still be handling the post
            try:
                ts = find_digest(client, channel, day, since, origin)
            except HistoryUnavailable as unavailable:
                log.warning("%s; posting again may show the digest twice", unavailable)
                ts = None
            if ts is not None:
                log.info("Slack has the digest of %s already (ts %s): not posting it again",
                         day, ts)
                return ts
            if attempt == retries:
                raise
        except DeliveryError as exc:
            if unclear:
                raise UnclearDelivery(str(exc)) from exc
            raise
    raise AssertionError("unreachable")


def _pause(backoff_seconds: float, attempt: int) -> None:
    """The client's backoff for the retries it leaves to `post_digest`: 2, 4, 8, ... s."""
    time.sleep(backoff_seconds * 2 ** attempt * (1.0 + 0.5 * random.random()))
