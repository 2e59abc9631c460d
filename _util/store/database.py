"""The one database engine factory, the shared table metadata, and URL masking.

Tables are declared in the modules that own them (`cost_store`, `delivery_log`,
`account_names`, `tag_coverage`) on the shared `metadata`, and created on first use by
`create_tables`.
"""
from __future__ import annotations

import datetime as dt
import logging

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from _util.errors import ConfigError, StoreError

log = logging.getLogger(__name__)

metadata = sa.MetaData()


def mask_url(url: str) -> str:
    """The URL as it may appear in logs and errors: the password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def _host_of(url: str) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.database or ":memory:"
    return f"{parsed.host or 'localhost'}:{parsed.port or 3306}"


def make_engine(url: str) -> Engine:
    """Build an engine and prove it connects, so a bad URL fails at start-up, not mid-run.

    MySQL gets utf8mb4 (tag values can be any Unicode) and pre-ping (an RDS connection
    may have gone away between cron runs).
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(
            f"COST_TRACKING_DB_URL is not a SQLAlchemy URL: {mask_url(url)}"
        ) from exc
    kwargs: dict = {"future": True}
    if parsed.get_backend_name() == "mysql":
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
        kwargs.update(pool_pre_ping=True, pool_recycle=3600)
    try:
        engine = sa.create_engine(parsed, **kwargs)
    except (ArgumentError, ImportError, SQLAlchemyError) as exc:
        raise ConfigError(
            f"COST_TRACKING_DB_URL cannot be used ({mask_url(url)}): {exc}"
        ) from exc
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", exc)).splitlines()[0]
        raise StoreError(
            f"cannot reach the database at {_host_of(url)} ({mask_url(url)}): {reason}"
        ) from exc
    return engine


class NameText(sa.types.TypeDecorator):
    """Text that compares byte for byte: names of services, tag values, channels.

    On MySQL/MariaDB utf8mb4 (tag values can be any Unicode) with a binary collation, so
    'web' and 'Web' stay two names, and one WITHOUT pad space: utf8mb4_bin ignores
    trailing spaces, so a tag value 'web ' would collide with 'web' in a primary key and
    stop the whole fetch. MariaDB calls it utf8mb4_nopad_bin, MySQL 8.0.17+ utf8mb4_0900_bin;
    older MySQL servers have only utf8mb4_bin. SQLite always compares bytes.
    """

    impl = sa.String
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name not in ("mysql", "mariadb"):
            return dialect.type_descriptor(sa.String(self.impl.length))
        return dialect.type_descriptor(mysql.VARCHAR(
            self.impl.length, charset="utf8mb4", collation=binary_collation(dialect)))


def binary_collation(dialect) -> str:
    """The NO PAD binary utf8mb4 collation of the connected MySQL-family server."""
    if getattr(dialect, "is_mariadb", False):
        return "utf8mb4_nopad_bin"
    if (getattr(dialect, "server_version_info", None) or (0,)) >= (8, 0, 17):
        return "utf8mb4_0900_bin"
    return "utf8mb4_bin"


def create_tables(engine: Engine) -> None:
    """Create every declared table that does not exist yet."""
    # Import the owners so their tables are on `metadata` before create_all.
    import _util.store.account_names  # noqa: F401
    import _util.store.commitments  # noqa: F401
    import _util.store.cost_store  # noqa: F401
    import _util.store.delivery_log  # noqa: F401
    import _util.store.idle_resources  # noqa: F401
    import _util.store.instance_usage  # noqa: F401
    import _util.store.tag_coverage  # noqa: F401
    check_existing_tables(engine)
    try:
        metadata.create_all(engine)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot create tables in {mask_url(str(engine.url))}: {exc}") from exc
    if engine.dialect.name in ("mysql", "mariadb"):
        upgrade_name_collations(engine)
        upgrade_decimal_precision(engine)


def upgrade_decimal_precision(engine: Engine) -> None:
    """Widen DECIMAL columns made narrower by an earlier version (cost_daily.amount was
    DECIMAL(24,10): a bill beyond 1e14 stopped a whole backfill): one ALTER TABLE per
    table, once. Without the ALTER privilege the log says what to run."""
    quote = engine.dialect.identifier_preparer.quote
    current = sa.text("SELECT COLUMN_NAME, NUMERIC_PRECISION FROM information_schema.COLUMNS "
                      "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :table")
    for table in metadata.sorted_tables:
        columns = [c for c in table.columns
                   if isinstance(c.type.dialect_impl(engine.dialect), mysql.DECIMAL)]
        if not columns:
            continue
        with engine.connect() as conn:
            precision = dict(conn.execute(current, {"table": table.name}).tuples().all())
        narrow = [c for c in columns
                  if (precision.get(c.name) or 0) < c.type.dialect_impl(engine.dialect).precision]
        if not narrow:
            continue
        alter = f"ALTER TABLE {quote(table.name)} " + ", ".join(
            f"MODIFY {quote(c.name)} {c.type.dialect_impl(engine.dialect).compile(dialect=engine.dialect)}"
            f"{'' if c.nullable else ' NOT NULL'}" for c in narrow)
        log.info("widening %s.%s (once)", table.name, ", ".join(c.name for c in narrow))
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(alter))
        except SQLAlchemyError as exc:
            log.warning("could not widen %s (%s); run as an administrator: %s", table.name,
                        str(getattr(exc, "orig", exc)).splitlines()[0], alter)


def check_existing_tables(engine: Engine) -> None:
    """A table of ours that already exists with another shape (made by something else
    sharing the database, or by hand) is one line naming it and what to do, before any
    table is created: otherwise the first query fails with "Unknown column ..." deep in
    a stage."""
    try:
        inspector = sa.inspect(engine)
        existing = set(inspector.get_table_names())
        for table in metadata.sorted_tables:
            if table.name not in existing:
                continue
            have = {c["name"] for c in inspector.get_columns(table.name)}
            missing = [c.name for c in table.columns if c.name not in have]
            if missing:
                raise StoreError(
                    f"table {table.name} in {mask_url(str(engine.url))} exists but has no "
                    f"column(s) {', '.join(missing)}: it was not made by this bot; rename "
                    f"or drop it, or set COST_TRACKING_DB_URL to a database of the bot's own")
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read the tables of {mask_url(str(engine.url))}: {exc}") from exc


def upgrade_name_collations(engine: Engine) -> None:
    """Give NameText columns of tables made before it (utf8mb4_bin, which pads) the
    server's NO PAD binary collation: one ALTER TABLE per table, once.

    Without the ALTER privilege the run goes on as before (names differing only by
    trailing spaces would still collide) and the log says what to run.
    """
    wanted = binary_collation(engine.dialect)
    quote = engine.dialect.identifier_preparer.quote
    current = sa.text("SELECT COLUMN_NAME, COLLATION_NAME FROM information_schema.COLUMNS "
                      "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :table")
    for table in metadata.sorted_tables:
        columns = [c for c in table.columns if isinstance(c.type, NameText)]
        if not columns:
            continue
        with engine.connect() as conn:
            collations = dict(conn.execute(current, {"table": table.name}).tuples().all())
        stale = [c for c in columns if collations.get(c.name) not in (None, wanted)]
        if not stale:
            continue
        alter = f"ALTER TABLE {quote(table.name)} " + ", ".join(
            f"MODIFY {quote(c.name)} {c.type.compile(dialect=engine.dialect)}"
            f"{'' if c.nullable else ' NOT NULL'}" for c in stale)
        log.info("changing the collation of %s.%s to %s (names that differ only by "
                 "trailing spaces stay apart)", table.name, ", ".join(c.name for c in stale),
                 wanted)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(alter))
        except SQLAlchemyError as exc:
            log.warning("could not change the collation of %s (%s); run as an administrator: "
                        "%s", table.name, str(getattr(exc, "orig", exc)).splitlines()[0], alter)


def utc_now() -> dt.datetime:
    """Now in UTC, naive and to the second: how the stores write `fetched_at` and the like."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)


def store_error(engine: Engine, action: str, exc: SQLAlchemyError) -> StoreError:
    """One line for a failed database action: what, where (password masked) and the
    driver's first line of why."""
    reason = str(getattr(exc, "orig", exc)).splitlines()[0]
    return StoreError(f"cannot {action} in {mask_url(str(engine.url))}: {reason}")
