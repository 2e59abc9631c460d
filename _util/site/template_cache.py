"""Compiled page templates kept between runs (Jinja2's own bytecode cache).

Parsing and compiling the site's templates took 0.11 s of the demo's daily run, every
day, for templates that change only with the code. Jinja2's `FileSystemBytecodeCache`
keeps the compiled code in a per-user folder of the temporary directory (made 0700 and
checked to be the user's own) and checks each entry against its template's source, so a
changed template is compiled again. What the source checksum does not cover are the
environment's options, which shape the compiled code (autoescape, trim_blocks...): they
are part of every entry's file name here. The cache only ever costs time: a folder that
cannot be made, a file that cannot be read or written, or an entry that does not load
is a template compiled as if there were no cache.
"""
from __future__ import annotations

import hashlib
import logging

from jinja2.bccache import Bucket, FileSystemBytecodeCache

log = logging.getLogger(__name__)


class TemplateCodeCache(FileSystemBytecodeCache):
    """FileSystemBytecodeCache whose failures are misses, not errors of the page."""

    def __init__(self, options: tuple, directory: str | None = None) -> None:
        tag = hashlib.sha256(repr(options).encode()).hexdigest()[:12]
        super().__init__(directory, pattern=f"cost-tracking-{tag}-%s.cache")

    def load_bytecode(self, bucket: Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception as exc:  # noqa: BLE001 - damaged entry: compile as without one
            log.debug("template cache entry %s not used: %s", bucket.key, exc)
            bucket.reset()

    def dump_bytecode(self, bucket: Bucket) -> None:
        try:
            super().dump_bytecode(bucket)
        except OSError as exc:
            log.debug("template cache entry %s not written: %s", bucket.key, exc)


def template_code_cache(options: tuple) -> TemplateCodeCache | None:
    """The cache for an environment made with `options`, or None when no safe folder for
    it can be had (the templates are then compiled every run)."""
    try:
        return TemplateCodeCache(options)
    except (OSError, RuntimeError) as exc:
        log.debug("no template cache: %s", exc)
        return None
