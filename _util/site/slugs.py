"""Safe, deterministic file names for plots and pages.

Service and tag names can hold any character (quotes, `<>&`, `/`, emoji, non-Latin
letters, hundreds of characters). A file name on disk and an S3 key must be short, ASCII
and free of path separators, and two names that look alike once simplified ("a/b" and
"a-b") must still get different files. So a slug is a readable ASCII prefix plus a short
hash of the exact original parts.
"""
from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable, Sequence

MAX_TEXT_CHARS = 60
HASH_CHARS = 8

_NOT_SAFE = re.compile(r"[^a-z0-9]+")


def simplify(text: str, max_chars: int = MAX_TEXT_CHARS) -> str:
    """Lower-case ASCII letters and digits joined by single dashes, at most `max_chars`.

    >>> simplify("Amazon Elastic Compute Cloud - Compute")
    'amazon-elastic-compute-cloud-compute'
    >>> simplify("Café <Ünïcode> & \\"quotes\\"")
    'cafe-unicode-quotes'
    """
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    dashed = _NOT_SAFE.sub("-", ascii_text.lower()).strip("-")
    return dashed[:max_chars].rstrip("-")


def _digest(parts: Sequence[object], chars: int) -> str:
    # JSON keeps None and "" apart, and the parts' boundaries ("a", "b/c" vs "a/b", "c").
    exact = json.dumps(list(parts), ensure_ascii=False)
    return hashlib.sha256(exact.encode("utf-8")).hexdigest()[:chars]


def slug(*parts: str | None, hash_chars: int = HASH_CHARS) -> str:
    """A file-name-safe slug for the exact sequence of parts, the same on every run.

    None parts are left out of the readable prefix but still count in the hash, so
    ("EC2", None) and ("EC2", "") give different slugs.

    >>> slug("spike", "Amazon S3", None)  # doctest: +ELLIPSIS
    'spike-amazon-s3-...'
    """
    words = [simplify(p) for p in parts if p]
    text = "-".join(w for w in words if w)[:MAX_TEXT_CHARS].rstrip("-") or "item"
    return f"{text}-{_digest(parts, hash_chars)}"


def unique_slugs(keys: Iterable[tuple[str | None, ...]]) -> dict[tuple[str | None, ...], str]:
    """A slug for each distinct key, guaranteed distinct from each other.

    The hash alone makes clashes astronomically unlikely; should two keys still share a
    slug, the longer hash of both resolves it, deterministically for the same key set.
    """
    distinct: list[tuple[str | None, ...]] = list(dict.fromkeys(keys))
    chars = HASH_CHARS
    while True:
        result = {key: slug(*key, hash_chars=chars) for key in distinct}
        if len(set(result.values())) == len(result) or chars >= 64:
            return result
        chars *= 2


def is_safe(name: str) -> bool:
    """Whether a name is a plain ASCII file name (no separators, no dots but an extension)."""
    return bool(re.fullmatch(r"[a-z0-9][a-z0-9-]*(\.[a-z0-9]+)?", name))
