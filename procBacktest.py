"""Backtest (issue 8): replay the rules for every day of a range over the stored history.

`runCostReporting.py --backtest-from D1 --date D2` lists, for every day from D1 to D2,
exactly the alerts a normal run for that day reports, with their episode status (new or
continuing, procLifecycle), so a user can see what a threshold (`--z`, the floors) would
have cost them in attention before changing it. Nothing is fetched, posted or uploaded.

Outputs: `<output>/backtest/<D1>_<D2>.csv` (one row per alert per day), monthly counts
by kind and direction, new against continuing (echoes of spikes apart), printed on
stdout, and a site page `<output>/site/backtest/<D1>_<D2>.html` with a timeline of alerts
per day. With `--labels FILE` (known incidents, `_util/detection/labels.py`) it also
scores each rule against them: caught on the day, late, missed, and new alerts on no
incident, in `<output>/backtest/<D1>_<D2>_labels.csv`, on stdout and on the page.

Detection over the whole range is one vectorised pass (`detect_alerts_by_day`) that
starts EPISODE_CAP_DAYS before D1, so the first days' statuses see the days before them
as a normal run does. Mutes are not applied: the backtest counts every alert the rules
raise.
"""
from __future__ import annotations

import csv
import datetime as dt
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from _util.alert_kinds import ALERT_KINDS, CONTINUING, NEW, RULES
from _util.atomic_files import replacing, write_text
from _util.csv_cells import safe_cell
from _util.detection.labels import (
    LabelScore,
    LabelSet,
    check_services,
    score,
    score_table,
    write_results,
)
from _util.money import in_currency, money
from _util.paths import OutputPaths, backtest_dir
from _util.report import WEEKDAY, Alert, Rules
from _util.run.run_record import RunRecord
from _util.site import pages as site_pages
from _util.store.cost_store import cost_daily, stored_currency, stored_names
from _util.store.database import make_engine
from procAmzAlerts import detect_alerts_by_day, history_start
from procLifecycle import EPISODE_CAP_DAYS, keys_by_day, with_episodes

log = logging.getLogger(__name__)

CSV_COLUMNS = ("date", "level", "kind", "direction", "service", "group", "status",
               "delta_usd", "zscore", "echo_of")
# How the counts name echoes of spikes (not new alerts, whatever their episode's status).
ECHO = "echo"
# The table's columns: by rule, up before down.
KINDS = tuple(sorted(ALERT_KINDS, key=lambda k: RULES.index(k.rule)))
HistoryLoader = Callable[[Engine, str, dt.date, dt.date], pd.DataFrame]


# ---- pure --------------------------------------------------------------------------------

def days_between(first_day: dt.date, last_day: dt.date) -> list[dt.date]:
    return [first_day + dt.timedelta(days=i) for i in range((last_day - first_day).days + 1)]


def replay(history: pd.DataFrame, first_day: dt.date, last_day: dt.date, rules: Rules,
           cap_days: int = EPISODE_CAP_DAYS) -> dict[dt.date, tuple[Alert, ...]]:
    """Every day's alerts from first_day to last_day with status and episode, as normal
    runs for those days report them. `history` must reach back `cap_days` and a lookback
    before first_day for the first days to see what a normal run sees."""
    lead = first_day - dt.timedelta(days=cap_days)
    by_day = detect_alerts_by_day(history, lead, last_day, rules)
    fired = keys_by_day(by_day)
    return {day: with_episodes(by_day[day], day, fired, day - dt.timedelta(days=cap_days))
            for day in days_between(first_day, last_day)}


def csv_row(day: dt.date, alert: Alert) -> list[str]:
    return [day.isoformat(), alert.level, alert.kind, alert.direction, safe_cell(alert.service),
            safe_cell(alert.group or ""), alert.status, f"{alert.delta_usd:.2f}",
            "" if alert.zscore is None else f"{alert.zscore:.2f}",
            "" if alert.echo_of is None else alert.echo_of.isoformat()]


def bucket(alert: Alert) -> str:
    """new, continuing or echo: how the counts file an alert."""
    return ECHO if alert.is_echo else alert.status


@dataclass(frozen=True)
class MonthCounts:
    """Alerts of one month: (kind, direction, bucket) -> count."""

    month: str
    counts: Counter

    def cell(self, kind: str, direction: str) -> str:
        new = self.counts[(kind, direction, NEW)]
        return f"{new}/{self.counts[(kind, direction, CONTINUING)]}"

    def of(self, wanted: str) -> int:
        return sum(n for (_, _, b), n in self.counts.items() if b == wanted)

    @property
    def row(self) -> list[str]:
        new, continuing, echoes = self.of(NEW), self.of(CONTINUING), self.of(ECHO)
        return [self.month, *(self.cell(*k.key) for k in KINDS), str(new), str(continuing),
                str(echoes), str(new + continuing + echoes)]


def monthly_counts(by_day: dict[dt.date, tuple[Alert, ...]]) -> list[MonthCounts]:
    """Counts per calendar month (every month of the range, even one without alerts)."""
    months: dict[str, Counter] = {}
    for day, alerts in sorted(by_day.items()):
        counter = months.setdefault(f"{day:%Y-%m}", Counter())
        counter.update((a.kind, a.direction, bucket(a)) for a in alerts)
    return [MonthCounts(month, counts) for month, counts in months.items()]


def monthly_table(months: list[MonthCounts]) -> list[list[str]]:
    """Header and rows of the monthly counts; kind cells read new/continuing (echoes of
    spikes are counted apart)."""
    rows = [["month", *(k.name for k in KINDS), NEW, CONTINUING, "echoes", "total"]]
    rows += [m.row for m in months]
    if len(months) > 1:
        rows.append(MonthCounts("all", sum((m.counts for m in months), Counter())).row)
    return rows


def format_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
        for r in rows)


def describe_rules(rules: Rules) -> str:
    gate = (f"trends moving {rules.trend_min_move_pct:g}% and "
            f"{money(rules.trend_min_move_usd)}/day (7 against 28 days)"
            if rules.trend_min_move_pct or rules.trend_min_move_usd else "no trend gate")
    return (f"Z {rules.z:g}, min change {money(rules.min_delta_usd)}"
            f"{f' and {rules.min_delta_pct:g}% of the baseline' if rules.min_delta_pct else ''}, "
            f"{'weekday' if rules.seasonality == WEEKDAY else 'no'} seasonality, "
            f"lookback {rules.lookback_days} days, min history {rules.min_history_days} days, "
            f"trends from {money(rules.min_daily_usd)}/day, {gate}, "
            f"{f'echoes within {rules.echo_days} days' if rules.echo_days else 'no echoes'}")


def summary_line(by_day: dict[dt.date, tuple[Alert, ...]], metric: str, rules: Rules) -> str:
    alerts = [a for day_alerts in by_day.values() for a in day_alerts]
    counts = Counter(bucket(a) for a in alerts)
    days = len(by_day)
    first, last = min(by_day), max(by_day)
    return (f"Backtest {first}..{last} ({days} days, {metric}; {describe_rules(rules)}): "
            f"{len(alerts)} alerts, {counts[NEW]} new, {counts[CONTINUING]} continuing and "
            f"{counts[ECHO]} echoes of spikes; {counts[NEW] / max(days, 1):.1f} new alerts a day")


# ---- IO ----------------------------------------------------------------------------------

def write_csv(path: Path, by_day: dict[dt.date, tuple[Alert, ...]]) -> int:
    """One row per alert per day, days in order, each day's alerts in report order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with replacing(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for day in sorted(by_day):
            for alert in by_day[day]:
                writer.writerow(csv_row(day, alert))
                rows += 1
    return rows


def write_timeline(path: Path, by_day: dict[dt.date, tuple[Alert, ...]], title: str) -> None:
    """Stacked bars per day: new alerts, continuing ones above them, echoes on top."""
    days = sorted(by_day)
    counts = [Counter(bucket(a) for a in by_day[d]) for d in days]
    new = [c[NEW] for c in counts]
    continuing = [c[CONTINUING] for c in counts]
    echoes = [c[ECHO] for c in counts]
    # Imported here: the daily run never draws a timeline (and its plot workers import
    # matplotlib's drawing modules themselves, while the run fetches).
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.6), dpi=100)
    ax = fig.add_subplot()
    x = pd.to_datetime(days)
    ax.bar(x, new, width=0.9, color="#b42318", label=NEW)
    ax.bar(x, continuing, width=0.9, bottom=new, color="#f4a99f", label=CONTINUING)
    ax.bar(x, echoes, width=0.9, bottom=[n + c for n, c in zip(new, continuing)],
           color="#c9d1db", label="echo of a spike")
    ax.set_title(title, fontsize=10, loc="left")
    ax.set_ylabel("alerts")
    ax.legend(loc="upper left", frameon=False, fontsize=9)
    ax.grid(axis="y", color="#d8dee6", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path, "wb") as fh:
        fig.savefig(fh, format="png")


def write_page(site_dir: Path, name: str, by_day: dict[dt.date, tuple[Alert, ...]],
               metric: str, rules: Rules, months: list[MonthCounts], csv_path: Path,
               scored: ScoredLabels | None = None) -> Path:
    folder = backtest_dir(site_dir)
    image = f"{name}.png"
    first, last = min(by_day), max(by_day)
    title = f"Alerts per day, {first} to {last} (Z {rules.z:g}, min change {money(rules.min_delta_usd)})"
    write_timeline(folder / image, by_day, title.replace("$", r"\$"))  # not mathtext
    path = folder / f"{name}.html"
    write_text(path, site_pages.render_template(
        "backtest.html", first=first, last=last, summary=summary_line(by_day, metric, rules),
        image=image, rows=monthly_table(months), csv_path=csv_path,
        label_rows=None if scored is None else score_table(scored.score),
        labels=scored))
    return path


@dataclass(frozen=True)
class ScoredLabels:
    """A labels file and how the backtest scored against it."""

    labels: LabelSet
    score: LabelScore
    csv_path: Path


def check_labels_stored(labels: LabelSet, db_url: str, metric: str, first_day: dt.date,
                        last_day: dt.date, rules: Rules) -> None:
    """Refuse a labels file naming, inside first_day..last_day, a service without stored
    costs (it would be scored as missed). Run before the run writes anything: the
    database is only read, and a missing SQLite file is not created."""
    inside = [i for i in labels.incidents if first_day <= i.day <= last_day]
    if not inside:
        return
    start = history_start(first_day - dt.timedelta(days=EPISODE_CAP_DAYS), rules)
    check_services(inside, stored_services(db_url, metric, start, last_day), labels.path)


def stored_services(db_url: str, metric: str, start: dt.date, end: dt.date) -> set[str]:
    """The services with stored costs for days start..end; none when there is no
    database yet (and none is made)."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite" and not (url.database and Path(url.database).exists()):
        return set()
    engine = make_engine(db_url)
    try:
        if not sa.inspect(engine).has_table(cost_daily.name):
            return set()
        return {service for service, _ in stored_names(engine, metric, start, end)}
    finally:
        engine.dispose()


def run_backtest(engine: Engine, first_day: dt.date, last_day: dt.date, rules: Rules,
                 metric: str, paths: OutputPaths, history_loader: HistoryLoader,
                 record: RunRecord, labels: LabelSet | None = None) -> None:
    """The `--backtest-from` run: replay, write the CSV and the page, print the counts;
    with `labels`, score the rules against them too. Amounts read in the stored costs'
    currency."""
    currency = stored_currency(engine, metric, last_day)
    with record.stage("backtest") as stage, in_currency(currency):
        lead = history_start(first_day - dt.timedelta(days=EPISODE_CAP_DAYS), rules)
        history = history_loader(engine, metric, lead, last_day)
        if history.empty:
            log.warning("no stored costs for %s..%s: run without --backtest-from first to "
                        "fetch them", lead, last_day)
        else:
            stored_from = history["usage_date"].min().date()
            if stored_from > history_start(first_day, rules):
                log.info("stored costs start on %s: earlier days count as no cost, as in a "
                         "normal run", stored_from)
        by_day = replay(history, first_day, last_day, rules)
        name = f"{first_day.isoformat()}_{last_day.isoformat()}"
        scored = None
        if labels is not None:
            scored = ScoredLabels(labels, score(labels.incidents, by_day, labels.window_days),
                                  paths.backtest_csv(f"{name}_labels"))
            if scored.score.outside:
                log.info("%d incident(s) of %s fall outside %s..%s and are not scored",
                         scored.score.outside, labels.path, first_day, last_day)
            write_results(scored.csv_path, scored.score)
        csv_path = paths.backtest_csv(name)
        rows = write_csv(csv_path, by_day)
        months = monthly_counts(by_day)
        page = write_page(paths.site, name, by_day, metric, rules, months, csv_path, scored)
        counts = Counter(bucket(a) for alerts in by_day.values() for a in alerts)
        stage.counts.update(days=len(by_day), history_rows=len(history), alerts=rows,
                            new=counts[NEW], continuing=counts[CONTINUING], echoes=counts[ECHO],
                            csv=str(csv_path), page=str(page))
        if scored is not None:
            stage.counts.update(incidents=len(scored.score.results),
                                caught=sum(r.first_alert is not None for r in scored.score.results),
                                labels_csv=str(scored.csv_path))
        summary = summary_line(by_day, metric, rules)
    log.info("backtest written: %s and %s", csv_path, page)
    print(summary)
    print(format_table(monthly_table(months)))
    if scored is not None:
        print(f"\nAgainst {len(scored.score.results)} known incidents ({labels.path}; caught "
              f"by an alert within {labels.window_days} days):")
        print(format_table(score_table(scored.score)))
        print(f"incidents: {scored.csv_path}")
    print(f"alerts: {csv_path}\npage: {page}")
