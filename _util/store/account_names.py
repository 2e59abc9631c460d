"""The `account_name` table: the names of the accounts whose IDs the costs are grouped by.

With `COST_TRACKING_GROUP_BY=LINKED_ACCOUNT` each group is a 12-digit account ID, which
nobody recognises; Slack, the pages and report.json show it with its name
("123456789012 (prod-web)"). The names arrive with the costs (Cost Explorer's
DimensionValueAttributes, the CUR's account name column) or from AWS Organizations, each
source writing what it knows; the newest name of an account wins. A name is kept exactly as
AWS sent it: the edges show it inert, like any group value (`_util/names.py`).
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from _util.errors import StoreError
from _util.store.database import metadata, store_error, utc_now

log = logging.getLogger(__name__)

# The grouping whose values are account IDs, the only one whose groups have names.
LINKED_ACCOUNT = "LINKED_ACCOUNT"
ID_CHARS = 32
NAME_CHARS = 256
SOURCE_CHARS = 32

account_name = sa.Table(
    "account_name", metadata,
    sa.Column("account_id", sa.String(ID_CHARS), primary_key=True),
    sa.Column("name", sa.String(NAME_CHARS), nullable=False),
    # Who said so: 'cost-explorer', 'organizations', 'cur' (a source's name).
    sa.Column("source", sa.String(SOURCE_CHARS), nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),  # UTC
    mysql_charset="utf8mb4",
)




def _rows(names: Mapping[str, str], source: str, now: dt.datetime) -> list[dict]:
    """The rows worth storing: an empty ID or name says nothing, and an ID longer than an
    account ID is not one (names are cut to the column rather than stop a run)."""
    rows = []
    for account_id, name in names.items():
        account_id, name = str(account_id).strip(), str(name or "")
        if not account_id or len(account_id) > ID_CHARS or not name.strip():
            continue
        rows.append(dict(account_id=account_id, name=name[:NAME_CHARS],
                         source=source[:SOURCE_CHARS], updated_at=now))
    return rows


def _upsert(engine: Engine) -> sa.Executable:
    name = engine.dialect.name
    if name == "sqlite":
        stmt = sqlite.insert(account_name)
        return stmt.on_conflict_do_update(
            index_elements=[account_name.c.account_id],
            set_={"name": stmt.excluded.name, "source": stmt.excluded.source,
                  "updated_at": stmt.excluded.updated_at})
    if name in ("mysql", "mariadb"):
        stmt = mysql.insert(account_name)
        return stmt.on_duplicate_key_update(name=stmt.inserted.name,
                                            source=stmt.inserted.source,
                                            updated_at=stmt.inserted.updated_at)
    raise StoreError(f"account names are stored in SQLite and MySQL/MariaDB, not {name}")


def save_account_names(engine: Engine, names: Mapping[str, str], source: str) -> int:
    """Store `names` (account ID -> name) as said by `source`, replacing what another
    source said of the same accounts; empty IDs and names are ignored. Returns how many
    were written."""
    rows = _rows(names, source, utc_now())
    if not rows:
        return 0
    try:
        with engine.begin() as conn:
            conn.execute(_upsert(engine), rows)
    except SQLAlchemyError as exc:
        raise store_error(engine, "store account names", exc) from exc
    log.debug("stored %d account name(s) from %s", len(rows), source)
    return len(rows)


def load_account_names(engine: Engine) -> dict[str, str]:
    """Every known account name, by account ID."""
    query = sa.select(account_name.c.account_id, account_name.c.name)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(query).tuples().all())
    except SQLAlchemyError as exc:
        raise store_error(engine, "read account names", exc) from exc
