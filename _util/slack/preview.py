"""An HTML page that shows a Slack payload laid out the way Slack shows it.

A demo or dry-run user has no Slack workspace; this page (`reports/<date>/slack.html`)
shows exactly what was or would be posted: the header, each section with its text and
its button (as a link), context lines and dividers.

The mrkdwn in the payload is already Slack-escaped (`&amp;`, `&lt;`, `&gt;`); each text
run is unescaped back to what Slack displays and then HTML-escaped, so a hostile name
shows as itself and never as markup. Only the formatting Slack would apply is turned
into HTML: `*bold*`, `_italic_`, `<https://url|label>` links and newlines.
"""
from __future__ import annotations

import datetime as dt
import re
from html import escape
from typing import Any

from _util.site import pages as site_pages

_LINK = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")
_BOLD = re.compile(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])")
_ITALIC = re.compile(r"(?<![\w_])_([^_\n]+)_(?![\w_])")
_EMOJI = {":warning:": "⚠️"}

PREVIEW_CSS = """
.slack{max-width:46rem;border:1px solid var(--line);border-radius:8px;padding:.75rem 1rem;
font-size:15px;line-height:1.45}
.slack .s-header{font-size:1.2rem;font-weight:700;margin:.1rem 0 .6rem;overflow-wrap:anywhere}
.slack .s-section{display:flex;gap:.75rem;align-items:flex-start;margin:.45rem 0}
.slack .s-text{flex:1;overflow-wrap:anywhere}
.slack .s-button{flex:none;border:1px solid var(--line);border-radius:4px;padding:.1rem .7rem;
font-weight:600;text-decoration:none;color:var(--fg);white-space:nowrap}
.slack .s-context{font-size:.85rem;color:var(--muted);margin:.3rem 0;overflow-wrap:anywhere}
.slack .s-context span{margin-right:.6rem}
.slack hr{border:0;border-top:1px solid var(--line);margin:.6rem 0}
""".strip()


def _slack_unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _is_web_url(url: str) -> bool:
    return url.startswith(("https://", "http://"))


def _format_run(run: str) -> str:
    html = escape(_slack_unescape(run))
    for code, char in _EMOJI.items():
        html = html.replace(code, char)
    html = _BOLD.sub(r"<strong>\1</strong>", html)
    return _ITALIC.sub(r"<em>\1</em>", html)


def mrkdwn_to_html(text: str) -> str:
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
    return "".join(parts).replace("\n", "<br>")


def _text_html(obj: dict[str, Any] | None) -> str:
    if not obj:
        return ""
    if obj.get("type") == "mrkdwn":
        return mrkdwn_to_html(obj.get("text", ""))
    return escape(obj.get("text", "")).replace("\n", "<br>")


def _button_html(element: dict[str, Any] | None) -> str:
    if not element or element.get("type") != "button":
        return ""
    label = escape(element.get("text", {}).get("text", ""))
    url = element.get("url")
    if url and _is_web_url(url):
        return f'<a class="s-button" href="{escape(url)}">{label}</a>'
    return f'<span class="s-button">{label}</span>'


def _block_html(block: dict[str, Any]) -> str:
    kind = block.get("type")
    if kind == "header":
        return f'<div class="s-header">{_text_html(block.get("text"))}</div>'
    if kind == "section":
        return (f'<div class="s-section"><div class="s-text">{_text_html(block.get("text"))}'
                f'</div>{_button_html(block.get("accessory"))}</div>')
    if kind == "context":
        spans = "".join(f"<span>{_text_html(e)}</span>" for e in block.get("elements", []))
        return f'<div class="s-context">{spans}</div>'
    if kind == "divider":
        return "<hr>"
    return f'<div class="s-context">({escape(str(kind))} block)</div>'


def render_message_html(payload: dict[str, Any]) -> str:
    """The message as an HTML fragment (a `div.slack`), safe to embed in a page."""
    blocks = "\n".join(_block_html(b) for b in payload.get("blocks", []))
    return f'<div class="slack">\n{blocks}\n</div>'


def preview_page(payload: dict[str, Any], day: dt.date, posted: bool | None = None) -> str:
    """The whole `slack.html` page for one day's payload.

    `posted` says what happened to it: True posted, False not posted (dry run, no token,
    or delivery failed), None unknown; it only changes the sentence above the message.
    """
    channel = payload.get("channel")
    where = f" to {escape(str(channel))}" if channel else ""
    if posted is True:
        intro = f"This message was posted{where}."
    elif posted is False:
        intro = f"This message was not posted{where}; this is what it would look like."
    else:
        intro = f"The message for Slack{where}, laid out as Slack shows it."
    body = (
        f"<style>{PREVIEW_CSS}</style>\n"
        f'<p class="muted">{intro} Buttons are links.</p>\n'
        f"{render_message_html(payload)}\n"
        f'<p class="muted">Notification text: {mrkdwn_to_html(payload.get("text", ""))}</p>'
    )
    return site_pages.page(f"Slack message for {day.isoformat()}", body,
                           site_pages.report_nav(day))
