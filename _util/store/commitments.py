"""The commitments tables (Reserved Instances and Savings Plans), through SQLAlchemy Core.

Cost Explorer computes coverage and utilisation of commitments, and bills $0.01 a request
like any of its calls, so the answers are kept as history, as the costs are: one row per
(account, day, kind, subject) in `commitment_utilisation` (a plan, a reservation, or the
kind's total as subject "") and one per (account, day, kind, key) in
`commitment_coverage` (a service, an instance type in a region, or the total as key "").
`commitment_fetch` says which days were fetched and whether they had settled then (Cost
Explorer's commitment figures keep changing for a couple of days, and its answers carry
no Estimated flag), so a run asks only for the days not stored yet or still changing.
`commitment_check` remembers, per account, when the bot last looked whether the account
has any commitment at all (an account with none is asked again a week later), and when
it last fetched purchase recommendations (weekly), which `commitment_recommendation`
holds.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterable

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from _util.store.database import NameText, metadata, store_error, utc_now

SAVINGS_PLANS = "savings_plans"
RESERVATIONS = "reservations"
KINDS = (SAVINGS_PLANS, RESERVATIONS)
TOTAL = ""  # the subject / key of a kind's total for the day
ACCOUNT_CHARS = 16
SUBJECT_CHARS = 256  # a Savings Plan ARN, a reservation's subscription ID
KEY_CHARS = 320  # a service name, or "instance type / region"

_NUMBER = sa.Float(asdecimal=False).with_variant(mysql.DOUBLE(asdecimal=False), "mysql", "mariadb")

commitment_utilisation = sa.Table(
    "commitment_utilisation", metadata,
    sa.Column("account", sa.String(ACCOUNT_CHARS), primary_key=True),
    sa.Column("usage_date", sa.Date, primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("subject", NameText(SUBJECT_CHARS), primary_key=True),
    sa.Column("subject_type", NameText(KEY_CHARS), nullable=False),
    sa.Column("end_date", sa.Date, nullable=True),
    sa.Column("utilisation_pct", _NUMBER, nullable=True),
    sa.Column("purchased", _NUMBER, nullable=False),  # plans: commitment $; reservations: hours
    sa.Column("used", _NUMBER, nullable=False),  # the same unit, used
    sa.Column("unused_usd", _NUMBER, nullable=False),
    sa.Column("unused_hours", _NUMBER, nullable=True),
    sa.Column("net_savings_usd", _NUMBER, nullable=True),
    sa.Column("fetched_at", sa.DateTime, nullable=False),
    mysql_charset="utf8mb4",
)

commitment_coverage = sa.Table(
    "commitment_coverage", metadata,
    sa.Column("account", sa.String(ACCOUNT_CHARS), primary_key=True),
    sa.Column("usage_date", sa.Date, primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("key", NameText(KEY_CHARS), primary_key=True),
    sa.Column("covered_hours", _NUMBER, nullable=True),
    sa.Column("on_demand_hours", _NUMBER, nullable=True),
    sa.Column("covered_usd", _NUMBER, nullable=True),
    sa.Column("on_demand_usd", _NUMBER, nullable=False),
    sa.Column("coverage_pct", _NUMBER, nullable=True),
    sa.Column("fetched_at", sa.DateTime, nullable=False),
    mysql_charset="utf8mb4",
)

commitment_fetch = sa.Table(
    "commitment_fetch", metadata,
    sa.Column("account", sa.String(ACCOUNT_CHARS), primary_key=True),
    sa.Column("usage_date", sa.Date, primary_key=True),
    sa.Column("settled", sa.Boolean, nullable=False),
    sa.Column("fetched_at", sa.DateTime, nullable=False),
    mysql_charset="utf8mb4",
)

commitment_check = sa.Table(
    "commitment_check", metadata,
    sa.Column("account", sa.String(ACCOUNT_CHARS), primary_key=True),
    sa.Column("checked_on", sa.Date, nullable=False),
    sa.Column("found", sa.Boolean, nullable=False),
    sa.Column("recommended_on", sa.Date, nullable=True),
    mysql_charset="utf8mb4",
)

commitment_recommendation = sa.Table(
    "commitment_recommendation", metadata,
    sa.Column("account", sa.String(ACCOUNT_CHARS), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("service", NameText(KEY_CHARS), nullable=False),
    sa.Column("detail", NameText(KEY_CHARS), nullable=False),
    sa.Column("monthly_savings_usd", _NUMBER, nullable=False),
    sa.Column("upfront_usd", _NUMBER, nullable=False),
    sa.Column("fetched_on", sa.Date, nullable=False),
    mysql_charset="utf8mb4",
)


@dataclass(frozen=True, slots=True)
class UtilisationRow:
    """A plan's, a reservation's or a kind's total (`subject` "") utilisation on a day.
    `purchased` and `used` are dollars of commitment for plans, hours for reservations."""

    usage_date: dt.date
    kind: str
    subject: str
    subject_type: str
    end_date: dt.date | None
    utilisation_pct: float | None
    purchased: float
    used: float
    unused_usd: float
    unused_hours: float | None = None
    net_savings_usd: float | None = None


@dataclass(frozen=True, slots=True)
class CoverageRow:
    """The coverage of a service, an instance type in a region, or a kind's total (`key`
    ""), on a day: what commitments covered and the on-demand spend they did not."""

    usage_date: dt.date
    kind: str
    key: str
    covered_hours: float | None
    on_demand_hours: float | None
    covered_usd: float | None
    on_demand_usd: float
    coverage_pct: float | None


@dataclass(frozen=True, slots=True)
class Recommendation:
    """A purchase Cost Explorer recommends, as it says it: the bot never buys."""

    kind: str
    service: str
    detail: str
    monthly_savings_usd: float
    upfront_usd: float


@dataclass(frozen=True)
class CommitmentCheck:
    """When the account was last looked at for any commitment, what was found, and when
    recommendations were last fetched."""

    checked_on: dt.date
    found: bool
    recommended_on: dt.date | None




def fetched_days(engine: Engine, account: str, start: dt.date,
                 end: dt.date) -> dict[dt.date, bool]:
    """The days of start..end already fetched for `account`, each with whether it had
    settled when fetched."""
    c = commitment_fetch.c
    stmt = (sa.select(c.usage_date, c.settled).where(c.account == account)
            .where(c.usage_date.between(start, end)))
    try:
        with engine.connect() as conn:
            return {d: bool(s) for d, s in conn.execute(stmt).tuples()}
    except SQLAlchemyError as exc:
        raise store_error(engine, "read the fetched commitment days", exc) from exc


def replace_days(engine: Engine, account: str, start: dt.date, end: dt.date,
                 utilisation: Iterable[UtilisationRow], coverage: Iterable[CoverageRow],
                 settled: set[dt.date]) -> int:
    """Replace `account`'s stored days start..end (inclusive) with these rows and mark
    each day fetched (settled or not), in one transaction, so a day fetched again never
    holds a row twice and a failure leaves what was stored. Returns the rows written."""
    now = utc_now()
    u, cv, f = commitment_utilisation.c, commitment_coverage.c, commitment_fetch.c
    urows = [{"account": account, "fetched_at": now, **_fields(r)} for r in utilisation]
    crows = [{"account": account, "fetched_at": now, **_fields(r)} for r in coverage]
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    try:
        with engine.begin() as conn:
            for table, col in ((commitment_utilisation, u), (commitment_coverage, cv),
                               (commitment_fetch, f)):
                conn.execute(sa.delete(table).where(col.account == account)
                             .where(col.usage_date.between(start, end)))
            if urows:
                conn.execute(sa.insert(commitment_utilisation), urows)
            if crows:
                conn.execute(sa.insert(commitment_coverage), crows)
            conn.execute(sa.insert(commitment_fetch), [
                {"account": account, "usage_date": d, "settled": d in settled, "fetched_at": now}
                for d in days])
    except SQLAlchemyError as exc:
        raise store_error(engine, "store commitments", exc) from exc
    return len(urows) + len(crows)


def _fields(row: UtilisationRow | CoverageRow) -> dict:
    return {name: getattr(row, name) for name in row.__slots__}


def load_utilisation(engine: Engine, account: str, start: dt.date,
                     end: dt.date) -> list[UtilisationRow]:
    """The stored utilisation rows of start..end, by day, kind and subject."""
    c = commitment_utilisation.c
    names = UtilisationRow.__slots__
    stmt = (sa.select(*(c[n] for n in names)).where(c.account == account)
            .where(c.usage_date.between(start, end)).order_by(c.usage_date, c.kind, c.subject))
    try:
        with engine.connect() as conn:
            return [UtilisationRow(**dict(zip(names, r))) for r in conn.execute(stmt)]
    except SQLAlchemyError as exc:
        raise store_error(engine, "read commitment utilisation", exc) from exc


def load_coverage(engine: Engine, account: str, start: dt.date,
                  end: dt.date) -> list[CoverageRow]:
    """The stored coverage rows of start..end, by day, kind and key."""
    c = commitment_coverage.c
    names = CoverageRow.__slots__
    stmt = (sa.select(*(c[n] for n in names)).where(c.account == account)
            .where(c.usage_date.between(start, end)).order_by(c.usage_date, c.kind, c.key))
    try:
        with engine.connect() as conn:
            return [CoverageRow(**dict(zip(names, r))) for r in conn.execute(stmt)]
    except SQLAlchemyError as exc:
        raise store_error(engine, "read commitment coverage", exc) from exc


def read_check(engine: Engine, account: str) -> CommitmentCheck | None:
    c = commitment_check.c
    try:
        with engine.connect() as conn:
            row = conn.execute(sa.select(c.checked_on, c.found, c.recommended_on)
                               .where(c.account == account)).first()
    except SQLAlchemyError as exc:
        raise store_error(engine, "read the commitment check", exc) from exc
    return None if row is None else CommitmentCheck(row[0], bool(row[1]), row[2])


def _upsert_check(conn: Connection, account: str, values: dict) -> None:
    """One row per account: the dialect's own upsert."""
    if conn.dialect.name in ("mysql", "mariadb"):
        stmt = mysql.insert(commitment_check).values(account=account, **values)
        conn.execute(stmt.on_duplicate_key_update(**values))
    else:
        stmt = sqlite.insert(commitment_check).values(account=account, **values)
        conn.execute(stmt.on_conflict_do_update(index_elements=["account"], set_=values))


def save_check(engine: Engine, account: str, checked_on: dt.date, found: bool) -> None:
    """Remember that `account` was looked at on `checked_on` and whether it had any
    commitment (keeps the day recommendations were last fetched)."""
    previous = read_check(engine, account)
    values = {"checked_on": checked_on, "found": found,
              "recommended_on": previous.recommended_on if previous else None}
    try:
        with engine.begin() as conn:
            _upsert_check(conn, account, values)
    except SQLAlchemyError as exc:
        raise store_error(engine, "store the commitment check", exc) from exc


def replace_recommendations(engine: Engine, account: str, day: dt.date,
                            recommendations: Iterable[Recommendation]) -> int:
    """Replace `account`'s recommendations with these, fetched on `day`."""
    rows = [{"account": account, "position": i, "kind": r.kind, "service": r.service,
             "detail": r.detail[:KEY_CHARS], "monthly_savings_usd": r.monthly_savings_usd,
             "upfront_usd": r.upfront_usd, "fetched_on": day}
            for i, r in enumerate(recommendations)]
    c = commitment_recommendation.c
    previous = read_check(engine, account)
    try:
        with engine.begin() as conn:
            conn.execute(sa.delete(commitment_recommendation).where(c.account == account))
            if rows:
                conn.execute(sa.insert(commitment_recommendation), rows)
            _upsert_check(conn, account, {
                "checked_on": previous.checked_on if previous else day,
                "found": previous.found if previous else True, "recommended_on": day})
    except SQLAlchemyError as exc:
        raise store_error(engine, "store commitment recommendations", exc) from exc
    return len(rows)


def load_recommendations(engine: Engine, account: str) -> list[Recommendation]:
    c = commitment_recommendation.c
    stmt = (sa.select(c.kind, c.service, c.detail, c.monthly_savings_usd, c.upfront_usd)
            .where(c.account == account).order_by(c.position))
    try:
        with engine.connect() as conn:
            return [Recommendation(*r) for r in conn.execute(stmt)]
    except SQLAlchemyError as exc:
        raise store_error(engine, "read commitment recommendations", exc) from exc
