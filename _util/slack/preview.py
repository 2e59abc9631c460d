"""An HTML page that shows a Slack payload laid out the way Slack shows it.

A demo or dry-run user has no Slack workspace; this page (`reports/<date>/slack.html`)
shows exactly what was or would be posted: the header, each section with its text and
its button (as a link), context lines and dividers. The page is the site template
slack_preview.html, the message its partial slack/message.html.

The mrkdwn in the payload is already Slack-escaped (`&amp;`, `&lt;`, `&gt;`); each text
run is unescaped back to what Slack displays and then HTML-escaped, so a hostile name
shows as itself and never as markup. Only the formatting Slack would apply is turned
into HTML: `*bold*`, `_italic_`, `<https://url|label>` links and newlines.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Any

from markupsafe import Markup

from _util.site import pages as site_pages
from _util.site.pages import escape

_LINK = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")
_BOLD = re.compile(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])")
_ITALIC = re.compile(r"(?<![\w_])_([^_\n]+)_(?![\w_])")
_EMOJI = {":warning:": "⚠️"}


def _slack_unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _is_web_url(url: str) -> bool:
    return url.startswith(("https://", "http://"))


def _format_run(run: str) -> str:
    html = str(escape(_slack_unescape(run)))
    for code, char in _EMOJI.items():
        html = html.replace(code, char)
    html = _BOLD.sub(r"<strong>\1</strong>", html)
    return _ITALIC.sub(r"<em>\1</em>", html)


def mrkdwn_to_html(text: str) -> Markup:
    """Safe HTML for a Slack mrkdwn text, formatted as Slack would format it."""
    parts = []
    pos = 0
    for match in _LINK.finditer(text):
        parts.append(_format_run(text[pos:match.start()]))
        url, label = match.group(1), match.group(2)
        if _is_web_url(url):
            parts.append(f'<a href="{escape(url)}">{_format_run(label or url)}</a>')
        else:  # a mention or channel reference: shown as text, never linked
            parts.append(_format_run(match.group(0)))
        pos = match.end()
    parts.append(_format_run(text[pos:]))
    return Markup("".join(parts).replace("\n", "<br>"))


def render_message_html(payload: dict[str, Any]) -> Markup:
    """The message as an HTML fragment (a `div.slack`), safe to embed in a page."""
    return site_pages.render_partial("slack/message.html", blocks=payload.get("blocks", []),
                                     mrkdwn=mrkdwn_to_html, is_web_url=_is_web_url)


def preview_page(payload: dict[str, Any], day: dt.date, posted: bool | None = None) -> str:
    """The whole `slack.html` page for one day's payload.

    `posted` says what happened to it: True posted, False not posted (dry run, no token,
    or delivery failed), None unknown; it only changes the sentence above the message.
    """
    return site_pages.render_template("slack_preview.html", payload=payload, day=day,
                                      posted=posted, message=render_message_html(payload),
                                      mrkdwn=mrkdwn_to_html)
