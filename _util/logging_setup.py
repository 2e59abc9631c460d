"""Logging to stderr and a rotating file, with secrets masked before they are written."""
from __future__ import annotations

import logging
import logging.handlers
import os
import re
import time
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Runs share the log file (one waiting on another's lock, a person's run beside cron's):
# the pid tells their lines apart.
FILE_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"
LOG_FILE_NAME = "cost_tracking.log"
LOG_BACKUPS = 5
# `log.error(..., extra=FILE_ONLY)`: for the log file only, when the driver prints the
# one-line summary on stderr itself.
FILE_ONLY = {"file_only": True}
_SECRET_ENV = ("SLACK_BOT_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
               "AWS_ACCESS_KEY_ID")
_PATTERNS = (
    re.compile(r"xox[abposr]-[A-Za-z0-9-]+"),                  # Slack tokens
    re.compile(r"(?<=://)([^:/@\s]+):([^@/\s]+)@"),             # user:password@ in URLs
    re.compile(r"(?<![A-Z0-9])(AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])"),  # AWS access key ids
)


class SecretMask(logging.Filter):
    """Replace known secrets (from the environment, and by shape) with ***."""

    def __init__(self, extra_secrets: tuple[str, ...] = ()) -> None:
        super().__init__()
        values = [os.environ.get(name, "") for name in _SECRET_ENV] + list(extra_secrets)
        self.secrets = sorted({v for v in values if len(v) >= 6}, key=len, reverse=True)

    def mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        text = _PATTERNS[0].sub("xox?-***", text)
        text = _PATTERNS[1].sub(lambda m: f"{m.group(1)}:***@", text)
        return _PATTERNS[2].sub("AKIA***", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg = self.mask(message)
        record.args = ()
        if record.exc_text:
            record.exc_text = self.mask(record.exc_text)
        return True


class UtcFormatter(logging.Formatter):
    """Timestamps in UTC with a Z, like every other date the bot writes:
    2026-11-23T06:15:02.123Z (a local time without an offset is ambiguous twice a year
    and on a host whose zone nobody set)."""

    converter = time.gmtime

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(record.created)) + \
            f".{int(record.msecs):03d}Z"


class _OneLineFormatter(UtcFormatter):
    """stderr (which cron mails) gets each message without its traceback; the log file
    keeps the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def _not_file_only(record: logging.LogRecord) -> bool:
    return not getattr(record, "file_only", False)


def setup_logging(log_dir: Path | None, max_bytes: int = 5_000_000,
                  extra_secrets: tuple[str, ...] = (), verbose: bool = False) -> None:
    """stderr gets INFO (DEBUG with verbose) without tracebacks (with verbose: with them);
    logs/cost_tracking.log gets the same plus tracebacks, and rotates at max_bytes,
    keeping LOG_BACKUPS old files (cost_tracking.log.1 is the newest of them)."""
    # A log line that cannot be written (a full disk) is dropped, not followed by
    # logging's own traceback on stderr: the run's one-line error says what happened.
    logging.raiseExceptions = False
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    mask = SecretMask(extra_secrets)
    stderr = logging.StreamHandler()
    stderr.setFormatter(UtcFormatter(LOG_FORMAT) if verbose else _OneLineFormatter(LOG_FORMAT))
    stderr.addFilter(mask)
    stderr.addFilter(_not_file_only)
    root.addHandler(stderr)
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        rotating = logging.handlers.RotatingFileHandler(
            log_dir / LOG_FILE_NAME, maxBytes=max_bytes, backupCount=LOG_BACKUPS,
            encoding="utf-8")
        rotating.setFormatter(UtcFormatter(FILE_FORMAT))
        rotating.addFilter(mask)
        root.addHandler(rotating)
    for noisy in ("botocore", "boto3", "urllib3", "matplotlib", "PIL", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
