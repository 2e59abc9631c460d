"""One run at a time per output folder: an advisory file lock that dies with the process."""
from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from _util.errors import LockedError


@contextmanager
def run_lock(path: Path, timeout_seconds: float = 0.0, poll_seconds: float = 0.5) -> Iterator[None]:
    """Hold an exclusive lock on `path`, waiting up to `timeout_seconds` for another run.

    flock is released by the kernel when the process dies, so a killed run never leaves a
    stale lock behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    deadline = time.monotonic() + timeout_seconds
    try:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "another run"
                    raise LockedError(
                        f"another run holds {path} ({holder}); waited {timeout_seconds:g}s "
                        "(COST_TRACKING_LOCK_TIMEOUT_SECONDS)") from None
                time.sleep(poll_seconds)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield
    finally:
        handle.close()
