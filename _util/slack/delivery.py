"""Posting the digest to Slack: one WebClient factory, one call, failures as one line.

slack_sdk's own retry handlers do the waiting: HTTP 429 is retried after its
Retry-After, connection failures and 5xx answers with exponential backoff and jitter.
What is still failing after that becomes a `DeliveryError` whose message names the
setting or Slack app option to fix, so the driver can print it as is (exit code 3).

The token never appears in anything this module logs or raises; slack_sdk itself redacts
the Authorization header in its debug log.
"""
from __future__ import annotations

import logging
import random
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
    """slack_sdk's handler retries 500 and 503; a proxy in front of Slack adds 502, 504."""

    def _can_retry(self, *, state, request, response=None, error=None) -> bool:  # noqa: ANN001
        return response is not None and response.status_code in (500, 502, 503, 504)


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
        ConnectionErrorRetryHandler(max_retry_count=retries, interval_calculator=interval),
        _GatewayErrorRetryHandler(max_retry_count=retries, interval_calculator=interval),
    ]
    url = base_url or SLACK_DEFAULT_API_URL
    if not url.endswith("/"):
        url += "/"
    return WebClient(token=token.strip(), base_url=url, timeout=TIMEOUT_SECONDS,
                     retry_handlers=handlers)


def post_message(client: WebClient, payload: dict[str, Any]) -> str:
    """Post one chat.postMessage payload; return Slack's message `ts`.

    Raises DeliveryError with one line saying what to fix when Slack refuses the message
    or cannot be reached after the client's retries.
    """
    channel = str(payload.get("channel") or "")
    try:
        response = client.chat_postMessage(**payload)
    except SlackApiError as exc:
        raise DeliveryError(_api_error_line(exc, channel, client.base_url)) from exc
    except (URLError, OSError) as exc:  # connection refused, DNS, TLS, read timeout
        reason = getattr(exc, "reason", None) or exc
        raise DeliveryError(
            f"cannot reach Slack at {_host(client.base_url)} ({reason}) after retries: "
            "check the network or COST_TRACKING_SLACK_API_URL; the message stays recorded "
            "and the next run delivers it"
        ) from exc
    except SlackClientError as exc:
        raise DeliveryError(f"the Slack client refused the message: {exc}") from exc
    ts = response.get("ts")
    if not ts:
        raise DeliveryError(f"Slack answered chat.postMessage without a message ts "
                            f"(HTTP {response.status_code})")
    log.info("posted the digest to %s (ts %s)", channel, ts)
    return str(ts)


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
