"""The `instance_usage` table (each interval an EC2 instance ran on a UTC day) and its
`instance_usage_fetch` bookkeeping (which days each region was read for), through
SQLAlchemy Core.

CloudTrail is slow to ask (2 requests a second per region), so a day is read once per
region: a region whose day is in `instance_usage_fetch` is not asked again unless
`--force`; a region that was denied or failed is not recorded and is asked again by the
next run. A region's day is replaced as a whole in one transaction. The day before, as
stored, says which instances were still running at its 24:00 (they ran from 00:00) and
what is known of them.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from _util.ec2_intervals import DayUsage
from _util.errors import StoreError
from _util.sources.ec2_usage import InstanceDay, InstanceFacts, RegionDay
from _util.store.database import NameText, metadata, store_error, utc_now

REGION_CHARS = 32
ID_CHARS = 32
TYPE_CHARS = 32
# Tag values are at most 256 characters; IAM user and role session names fewer.
NAME_CHARS = 256

instance_usage = sa.Table(
    "instance_usage", metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("region", sa.String(REGION_CHARS), primary_key=True),
    sa.Column("instance_id", sa.String(ID_CHARS), primary_key=True),
    sa.Column("start_time", sa.DateTime, primary_key=True),  # UTC, within the day
    sa.Column("end_time", sa.DateTime, nullable=False),  # UTC; 24:00 when still running
    sa.Column("instance_type", sa.String(TYPE_CHARS), nullable=True),
    sa.Column("spot", sa.Boolean, nullable=False),
    sa.Column("name", NameText(NAME_CHARS), nullable=True),  # the Name tag
    sa.Column("user_name", NameText(NAME_CHARS), nullable=True),  # who launched it
    sa.Column("still_running", sa.Boolean, nullable=False),  # at 24:00
    sa.Column("running_at_midnight", sa.Boolean, nullable=False),  # at 00:00
    sa.Column("terminated_on_day", sa.Boolean, nullable=False),
    sa.Column("fetched_at", sa.DateTime, nullable=False),
    mysql_charset="utf8mb4",
)

instance_usage_fetch = sa.Table(
    "instance_usage_fetch", metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("region", sa.String(REGION_CHARS), primary_key=True),
    sa.Column("instances", sa.Integer, nullable=False),
    sa.Column("requests", sa.Integer, nullable=False),
    sa.Column("fetched_at", sa.DateTime, nullable=False),
    mysql_charset="utf8mb4",
)



def _naive(t: dt.datetime) -> dt.datetime:
    return t.astimezone(dt.timezone.utc).replace(tzinfo=None)


def _aware(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.timezone.utc)



def _cut(text: str | None, chars: int) -> str | None:
    return None if text is None else text[:chars]


def save_region_day(engine: Engine, day: dt.date, region: RegionDay) -> int:
    """Replace a region's stored day with what it answered (status `ok` only) and mark the
    day read for it, in one transaction. Returns the intervals written."""
    if region.status != "ok":
        raise ValueError(f"only an answered region is stored, not {region.status}")
    now = utc_now()
    rows = [{"day": day, "region": region.region, "instance_id": i.usage.instance_id,
             "start_time": _naive(start), "end_time": _naive(end),
             "instance_type": _cut(i.facts.instance_type, TYPE_CHARS), "spot": i.facts.spot,
             "name": _cut(i.facts.name, NAME_CHARS), "user_name": _cut(i.facts.user, NAME_CHARS),
             "still_running": i.usage.still_running,
             "running_at_midnight": i.usage.running_at_midnight,
             "terminated_on_day": i.usage.terminated, "fetched_at": now}
            for i in region.instances for start, end in i.usage.intervals]
    u, f = instance_usage.c, instance_usage_fetch.c
    try:
        with engine.begin() as conn:
            conn.execute(sa.delete(instance_usage).where(u.day == day)
                         .where(u.region == region.region))
            conn.execute(sa.delete(instance_usage_fetch).where(f.day == day)
                         .where(f.region == region.region))
            if rows:
                conn.execute(sa.insert(instance_usage), rows)
            conn.execute(sa.insert(instance_usage_fetch),
                         [{"day": day, "region": region.region,
                           "instances": len(region.instances), "requests": region.requests,
                           "fetched_at": now}])
    except SQLAlchemyError as exc:
        raise store_error(engine, "store EC2 instance usage", exc) from exc
    return len(rows)


def fetched_regions(engine: Engine, day: dt.date) -> dict[str, int]:
    """The regions whose `day` is stored, with the instances each had."""
    f = instance_usage_fetch.c
    query = sa.select(f.region, f.instances).where(f.day == day)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(query).tuples().all())
    except SQLAlchemyError as exc:
        raise store_error(engine, "read EC2 instance usage", exc) from exc


def load_day(engine: Engine, day: dt.date,
             regions: Iterable[str] | None = None) -> dict[str, list[InstanceDay]]:
    """The stored instances of `day`, by region (every stored region, or those named)."""
    u = instance_usage.c
    query = sa.select(instance_usage).where(u.day == day).order_by(
        u.region, u.instance_id, u.start_time)
    if regions is not None:
        query = query.where(u.region.in_(list(regions)))
    try:
        with engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
    except SQLAlchemyError as exc:
        raise store_error(engine, "read EC2 instance usage", exc) from exc
    grouped: dict[tuple[str, str], list] = {}
    for row in rows:
        grouped.setdefault((row["region"], row["instance_id"]), []).append(row)
    found: dict[str, list[InstanceDay]] = {}
    for (region, instance_id), parts in grouped.items():
        first = parts[0]
        usage = DayUsage(instance_id,
                         tuple((_aware(p["start_time"]), _aware(p["end_time"])) for p in parts),
                         bool(first["running_at_midnight"]), bool(first["still_running"]),
                         bool(first["terminated_on_day"]))
        facts = InstanceFacts(first["instance_type"], bool(first["spot"]), first["name"],
                              first["user_name"])
        found.setdefault(region, []).append(InstanceDay(region, usage, facts))
    return found


def day_before(engine: Engine, day: dt.date) -> tuple[dict[str, dict[str, InstanceFacts]],
                                                     dict[str, set[str]]]:
    """What the stored day before `day` says, by region: the facts of its instances, and
    the instances it left running at 24:00 (which ran from 00:00 on `day`)."""
    known: dict[str, dict[str, InstanceFacts]] = {}
    running: dict[str, set[str]] = {}
    for region, instances in load_day(engine, day - dt.timedelta(days=1)).items():
        known[region] = {i.usage.instance_id: i.facts for i in instances}
        running[region] = {i.usage.instance_id for i in instances if i.usage.still_running}
    return known, running


# ---------------------------------------------------------------- on-demand prices

instance_price = sa.Table(
    "instance_price", metadata,
    sa.Column("region", sa.String(REGION_CHARS), primary_key=True),
    sa.Column("instance_type", sa.String(TYPE_CHARS), primary_key=True),
    sa.Column("usd_per_hour", sa.Double(asdecimal=False), nullable=True),  # None: no price
    sa.Column("fetched_at", sa.DateTime, nullable=False),
    mysql_charset="utf8mb4",
)


def load_prices(engine: Engine, newer_than: dt.datetime | None = None
                ) -> dict[tuple[str, str], float | None]:
    """The cached on-demand prices by (region, type), those fetched after `newer_than`
    (UTC) when given."""
    p = instance_price.c
    query = sa.select(p.region, p.instance_type, p.usd_per_hour)
    if newer_than is not None:
        query = query.where(p.fetched_at > _naive(newer_than))
    try:
        with engine.connect() as conn:
            return {(r, t): usd for r, t, usd in conn.execute(query).tuples().all()}
    except SQLAlchemyError as exc:
        raise store_error(engine, "read EC2 prices", exc) from exc


def _price_upsert(engine: Engine) -> sa.Executable:
    name = engine.dialect.name
    if name == "sqlite":
        stmt = sqlite.insert(instance_price)
        return stmt.on_conflict_do_update(
            index_elements=[instance_price.c.region, instance_price.c.instance_type],
            set_={"usd_per_hour": stmt.excluded.usd_per_hour,
                  "fetched_at": stmt.excluded.fetched_at})
    if name in ("mysql", "mariadb"):
        stmt = mysql.insert(instance_price)
        return stmt.on_duplicate_key_update(usd_per_hour=stmt.inserted.usd_per_hour,
                                            fetched_at=stmt.inserted.fetched_at)
    raise StoreError(f"EC2 prices are stored in SQLite and MySQL/MariaDB, not {name}")


def save_prices(engine: Engine, prices: dict[tuple[str, str], float | None]) -> None:
    """Store fetched prices, replacing older ones of the same (region, type)."""
    if not prices:
        return
    now = utc_now()
    rows = [{"region": r, "instance_type": t[:TYPE_CHARS], "usd_per_hour": usd,
             "fetched_at": now} for (r, t), usd in prices.items()]
    try:
        with engine.begin() as conn:
            conn.execute(_price_upsert(engine), rows)
    except SQLAlchemyError as exc:
        raise store_error(engine, "store EC2 prices", exc) from exc
