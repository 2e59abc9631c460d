"""Block Kit pieces and text at Slack's edge, shared by every digest section.

Blocks are built with slack_sdk's model classes, whose `to_dict()` refuses anything
Slack would reject (text over its limits, too many elements). Names of services and tag
values can hold any character, so every name passes through `mrkdwn_name` before it
reaches a text: control characters and newlines become spaces, long names are cut to
`NAME_CHARS` (the plot page has the full name), and `&`, `<`, `>` are escaped as Slack's
formatting rules require.
"""
from __future__ import annotations

import datetime as dt
import math
from typing import Any

from slack_sdk.models.blocks import (
    ButtonElement,
    DividerBlock,
    MarkdownTextObject,
    SectionBlock,
)

from _util.money import money, signed_money
from _util.names import one_line

MAX_BLOCKS = 50
HEADER_CHARS = 150
SECTION_CHARS = 3000
BUTTON_TEXT_CHARS = 75
BUTTON_URL_CHARS = 3000
FALLBACK_CHARS = 3000
NAME_CHARS = 120
INLINE_URL_CHARS = 1000
SUMMARY_NAME_CHARS = 60

_URL_UNSAFE = {"<": "%3C", ">": "%3E", "|": "%7C", " ": "%20", '"': "%22"}

__all__ = ["money", "signed_money"]  # re-exported: the digest's formatters


# ---- text at Slack's edge -------------------------------------------------------------

def clip(text: str, limit: int) -> str:
    """At most `limit` characters, an ellipsis marking a cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def escape_mrkdwn(text: str) -> str:
    """Slack's three control characters as entities (api.slack.com: formatting text)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mrkdwn_name(name: str, limit: int = NAME_CHARS) -> str:
    """A service, group or label as it may appear inside mrkdwn text."""
    return escape_mrkdwn(clip(one_line(name), limit))


def clip_mrkdwn(text: str, limit: int) -> str:
    """Escaped text cut to `limit` without splitting an `&amp;`-style entity."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&", max(0, len(cut) - 5))
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut.rstrip() + "…"


def strong(escaped: str) -> str:
    # A name holding "*" would end the bold early and garble the line; show it plain.
    return escaped if "*" in escaped else f"*{escaped}*"


def usable_url(url: str | None) -> str | None:
    """An absolute http(s) URL Slack can open, or None (then: no button, no link)."""
    if not url or not url.startswith(("https://", "http://")):
        return None
    for char, code in _URL_UNSAFE.items():
        url = url.replace(char, code)
    return url if len(url) <= BUTTON_URL_CHARS else None


# ---- numbers and days ----------------------------------------------------------------

def change(value: float, base: float) -> str:
    """'+$61.16 (+5.2%)'; without a percentage when the base is not positive."""
    delta = value - base
    if base > 0 and math.isfinite(delta):
        return f"{signed_money(delta)} ({100.0 * delta / base:+.1f}%)"
    return signed_money(delta)


def day_label(day: dt.date) -> str:
    return f"{day:%a} {day.day} {day:%b %Y}"


def group_label(group: str, group_by: str, name: str | None = None) -> str:
    """A group inside mrkdwn text: an account ID with its name when one is known
    ("123456789012 (prod-web)"), the name escaped and flattened like the ID."""
    if group:
        return mrkdwn_name(f"{group} ({name})" if name else group)
    return "(untagged)" if group_by.upper().startswith("TAG") else "(none)"


# ---- blocks ---------------------------------------------------------------------------

def section(text: str, url: str | None = None, button_text: str = "Plot",
            action_id: str = "plot") -> dict[str, Any]:
    """A mrkdwn section, with a button to `url` when it is one Slack can open."""
    accessory = None
    url = usable_url(url)
    if url is not None:
        accessory = ButtonElement(text=clip(button_text, BUTTON_TEXT_CHARS), url=url,
                                  action_id=action_id)
    block = SectionBlock(text=MarkdownTextObject(text=clip_mrkdwn(text, SECTION_CHARS),
                                                 verbatim=True),
                         accessory=accessory)
    return block.to_dict()


def divider() -> dict[str, Any]:
    return DividerBlock().to_dict()
