"""Names from AWS (services, tag values, account labels) as they are shown: stored
exactly, shown inert.

A tag value can hold any character. Bidirectional controls (U+202A-U+202E, U+2066-U+2069,
U+200E/U+200F, U+061C) in a name reverse what follows it on a page or in Slack ("$94.42"
read as "24.49$"); C0 control characters (NUL and the like) reach a page as raw bytes.
The database keeps the name as AWS sent it; the edges show it:
- on pages, C0 controls as their visible Unicode pictures (NUL as ␀), and a name with
  bidirectional controls isolated (`<bdi>`, or Unicode's isolate marks FSI...PDI where a
  name sits inside other text), so it cannot reorder anything around it;
- in Slack and plots, where nothing can be isolated, each bidirectional control as a
  visible marker such as `\\u202e`.
"""
from __future__ import annotations

import re

BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# C0 controls but tab, newline and carriage return (whitespace in HTML), and DEL.
PAGE_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
FSI, PDI = "\u2068", "\u2069"
# What a one-line name shows as a space: C0 and C1 controls, DEL, line and paragraph
# separators.
LINE_BREAKING = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def has_bidi_controls(text: str) -> bool:
    return BIDI_CONTROLS.search(text) is not None


def marked_bidi(text: str) -> str:
    r"""Each bidirectional control as a visible marker (for Slack and plots).

    >>> marked_bidi("Evil\u202eService")
    'Evil\\u202eService'
    """
    return BIDI_CONTROLS.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def one_line(text: str) -> str:
    """A name where nothing can be isolated (Slack, plots): newlines, tabs and other
    control characters as single spaces, bidirectional controls as visible markers."""
    return LINE_BREAKING.sub(" ", marked_bidi(text)).strip()


def visible_controls(text: str) -> str:
    r"""C0 controls (but tab, newline, CR) and DEL as their Unicode pictures (for pages).

    >>> visible_controls("a\x00b\x7f")
    'a␀b␡'
    """
    return PAGE_CONTROLS.sub(lambda m: "\u2421" if m.group() == "\x7f"
                             else chr(0x2400 + ord(m.group())), text)


def isolated(name: str) -> str:
    """`name` between Unicode's isolate marks when it holds bidirectional controls, for a
    name inside other text on a page (a sentence, an attribute)."""
    return f"{FSI}{name}{PDI}" if has_bidi_controls(name) else name
