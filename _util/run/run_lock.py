"""One run at a time per output folder: an advisory file lock that dies with the process."""
from __future__ import annotations

import fcntl
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from _util.errors import LockedError

log = logging.getLogger(__name__)


@contextmanager
def run_lock(path: Path, timeout_seconds: float = 0.0, poll_seconds: float = 0.2) -> Iterator[None]:
    """Hold an exclusive lock on `path`, waiting up to `timeout_seconds` for another run.

    flock is released by the kernel when the process dies, so a killed run never leaves a
    stale lock behind. The file holds the holder's pid, for the message of a run that
    gives up waiting (LockedError, exit code 4).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    started = time.monotonic()
    deadline = started + timeout_seconds
    waited = False
    try:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another run"
                if time.monotonic() >= deadline:
                    raise LockedError(
                        f"another run holds {path} ({holder}); gave up after waiting "
                        f"{timeout_seconds:g}s (COST_TRACKING_LOCK_TIMEOUT_SECONDS)") from None
                if not waited:
                    log.info("another run (%s) holds %s: waiting up to %gs", holder, path,
                             timeout_seconds)
                    waited = True
                time.sleep(min(poll_seconds, max(0.0, deadline - time.monotonic())))
        if waited:
            log.info("lock acquired after waiting %.1fs", time.monotonic() - started)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield
    finally:
        handle.close()
