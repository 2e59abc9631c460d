"""One run at a time per database, whatever its output folder.

Two bots (or a person's run beside cron's) with different output folders but one database
would write the same tables at once: on MariaDB their backfills can deadlock. The output
folder's file lock (`_util/run/run_lock.py`) cannot see them, so the run also holds a lock
in the database itself: MySQL/MariaDB's GET_LOCK, held on a connection of its own for the
whole run and released by the server when that connection ends (a killed run never leaves
it behind). A SQLite database gets a file lock beside its file (`<file>.lock`), the same
way. A run that cannot take it within COST_TRACKING_LOCK_TIMEOUT_SECONDS exits 4.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from _util.errors import LockedError
from _util.run.run_lock import run_lock
from _util.store.database import make_engine, mask_url

log = logging.getLogger(__name__)

# GET_LOCK names are per server: the database's name keeps two bots on one server apart.
LOCK_PREFIX = "cost_tracking:"


@contextmanager
def database_lock(db_url: str, timeout_seconds: float = 0.0, purpose: str = "") -> Iterator[None]:
    """Hold the database's run lock for the block (see the module's docstring). A
    `purpose` ("schedule") names a lock of its own: the scheduler's runs exclude each
    other, not the daily report."""
    url = make_url(db_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            yield
            return
        suffix = f".{purpose}" if purpose else ""
        with run_lock(Path(f"{url.database}{suffix}.lock"), timeout_seconds):
            yield
        return
    if backend not in ("mysql", "mariadb"):
        yield
        return
    name = f"{LOCK_PREFIX}{purpose + ':' if purpose else ''}{url.database or ''}"[:64]
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            try:
                got = conn.execute(sa.text("SELECT GET_LOCK(:name, :timeout)"),
                                   {"name": name, "timeout": timeout_seconds}).scalar()
            except SQLAlchemyError as exc:  # a server without GET_LOCK (some clusters)
                reason = str(getattr(exc, "orig", exc)).splitlines()[0]
                log.warning("cannot take the run lock in %s (%s): going on without it; run "
                            "one bot per database", mask_url(db_url), reason)
                yield
                return
            if got != 1:
                raise LockedError(
                    f"another run holds the database's run lock ({name!r} in "
                    f"{mask_url(db_url)}); gave up after waiting {timeout_seconds:g}s "
                    "(COST_TRACKING_LOCK_TIMEOUT_SECONDS)")
            try:
                yield
            finally:
                try:
                    conn.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": name})
                except SQLAlchemyError as exc:  # the server frees it with the connection
                    log.warning("could not release the database's run lock: %s",
                                str(getattr(exc, "orig", exc)).splitlines()[0])
    finally:
        engine.dispose()
