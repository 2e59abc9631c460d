"""Known incidents (a labels file) and how a backtest's alerts score against them.

A labels file is a CSV with a header: `date,service` and optionally `group`, `kind`
(spike or trend) and `direction` (up or down), one incident per row. An empty group, kind
or direction means "any"; the group `(untagged)` is the untagged group. Blank lines and
lines starting with `#` are skipped. An incident is caught by a rule when an alert of that rule (of
the incident's service; of its group if given, a service-level alert counting when its top
group is that group; of its direction if given) fires on the incident's day or within the
window of days after it. Echoes of spikes are not alerts a reader sees, so they catch
nothing and are not counted.

Reading is strict (one clear line naming the row for anything it cannot use); scoring is
pure.
"""
from __future__ import annotations

import csv
import datetime as dt
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from _util.alert_kinds import DOWN, RULES, UP
from _util.atomic_files import replacing
from _util.csv_cells import read_cell, safe_cell
from _util.errors import ConfigError
from _util.report import Alert

COLUMNS = ("date", "service", "group", "kind", "direction")
REQUIRED = ("date", "service")
RESULT_COLUMNS = ("date", "service", "group", "kind", "direction", "caught", "first_alert",
                  "lag_days", "caught_by")
ANY_RULE = "any"
# Days after an incident an alert may fire and still catch it (COST_TRACKING_LABEL_WINDOW_DAYS).
DEFAULT_WINDOW_DAYS = 7
# How a labels file names the untagged group (an empty cell means any group).
UNTAGGED = "(untagged)"
ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class Incident:
    """One known cost incident; None is "any" for group, kind and direction."""

    day: dt.date
    service: str
    group: str | None = None
    kind: str | None = None
    direction: str | None = None
    row: int = field(default=0, compare=False)  # the file's line, for messages

    def matches(self, day: dt.date, alert: Alert, window_days: int) -> bool:
        """Whether `alert`, fired on `day`, catches this incident."""
        if not 0 <= (day - self.day).days <= window_days or alert.service != self.service:
            return False
        if self.kind is not None and alert.kind != self.kind:
            return False
        if self.direction is not None and alert.direction != self.direction:
            return False
        if self.group is None:
            return True
        return alert.group == self.group or (alert.group is None and alert.top_group == self.group)


@dataclass(frozen=True)
class LabelSet:
    """A backtest's labels: the file, its incidents, and how late an alert may catch one."""

    path: Path
    incidents: tuple[Incident, ...]
    window_days: int = DEFAULT_WINDOW_DAYS


def read_labels(path: Path) -> tuple[Incident, ...]:
    """The incidents of a labels file; a ConfigError naming the line for anything wrong.

    Blank lines and lines starting with `#` are skipped; kind and direction are read in
    any case; empty cells at the end of the header (a spreadsheet's trailing comma) are
    not columns."""
    where = f"--labels file {path}"
    rows: list[tuple[int, list[str]]] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            line = 1
            for row in reader:
                if row and any(c.strip() for c in row) and not row[0].lstrip().startswith("#"):
                    rows.append((line, row))
                line = reader.line_num + 1
    except FileNotFoundError:
        raise ConfigError(f"{where} not found") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"{where} is not a UTF-8 CSV file: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{where} cannot be read: {exc.strerror or exc}") from None
    if not rows:
        raise ConfigError(f"{where} is empty: it needs a header (date,service[,group][,kind]"
                          "[,direction]) and one incident per row")
    header_line, header = rows[0]
    header = [h.strip().lower() for h in header]
    while header and not header[-1]:
        header.pop()
    unknown = [h for h in header if h not in COLUMNS]
    missing = [c for c in REQUIRED if c not in header]
    if unknown or missing or len(set(header)) != len(header):
        problem = (f"unknown column(s) {', '.join(map(repr, unknown))}" if unknown else
                   f"no {', '.join(missing)} column" if missing else "a column named twice")
        raise ConfigError(f"{where} row {header_line}: {problem}; the header is "
                          "date,service and optionally group, kind, direction")
    if len(rows) == 1:
        raise ConfigError(f"{where} has a header and no incidents")
    incidents = []
    for n, row in rows[1:]:
        cells = [read_cell(c.strip()) for c in row]
        while len(cells) > len(header) and not cells[-1]:
            cells.pop()
        if len(cells) != len(header):
            raise ConfigError(f"{where} row {n}: {len(cells)} cells for {len(header)} columns "
                              f"({','.join(header)})")
        incidents.append(_incident(dict(zip(header, cells)), n, where))
    return tuple(incidents)


def _incident(cells: Mapping[str, str], n: int, where: str) -> Incident:
    text = cells.get("date", "")
    try:
        if not ISO_DAY.fullmatch(text):
            raise ValueError
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{where} row {n}: date {text!r} is not YYYY-MM-DD") from None
    service = cells.get("service", "")
    if not service:
        raise ConfigError(f"{where} row {n}: the service is empty")
    kind = cells.get("kind", "").lower() or None
    if kind is not None and kind not in RULES:
        raise ConfigError(f"{where} row {n}: kind {kind!r}; allowed: {', '.join(RULES)} or empty")
    direction = cells.get("direction", "").lower() or None
    if direction is not None and direction not in (UP, DOWN):
        raise ConfigError(f"{where} row {n}: direction {direction!r}; allowed: {UP}, {DOWN} "
                          "or empty")
    group = cells.get("group") or None
    return Incident(day=day, service=service, group="" if group == UNTAGGED else group,
                    kind=kind, direction=direction, row=n)


def check_services(incidents: Iterable[Incident], stored: set[str], path: Path) -> None:
    """Every incident's service must be one the database holds costs of: a misspelt name
    would otherwise be scored as missed."""
    for incident in incidents:
        if incident.service not in stored:
            raise ConfigError(
                f"--labels file {path} row {incident.row}: service {incident.service!r} has "
                "no stored costs (names are case-sensitive, as Cost Explorer spells them)")


# ---- scoring (pure) ------------------------------------------------------------------

@dataclass(frozen=True)
class IncidentResult:
    incident: Incident
    first_alert: dt.date | None
    caught_by: str | None  # the rule of the first alert that caught it

    @property
    def lag_days(self) -> int | None:
        return None if self.first_alert is None else (self.first_alert - self.incident.day).days


@dataclass(frozen=True)
class RuleScore:
    """How one rule (or any rule) did against the incidents it could catch."""

    rule: str
    incidents: int
    on_day: int
    late: int
    lags: tuple[int, ...]
    unlabelled: int  # new alerts that caught no incident
    new_alerts: int
    days: int

    @property
    def caught(self) -> int:
        return self.on_day + self.late

    @property
    def missed(self) -> int:
        return self.incidents - self.caught

    @property
    def recall(self) -> float | None:
        return self.caught / self.incidents if self.incidents else None

    @property
    def new_per_day(self) -> float:
        return self.new_alerts / max(self.days, 1)

    @property
    def median_lag(self) -> float | None:
        return statistics.median(self.lags) if self.lags else None


@dataclass(frozen=True)
class LabelScore:
    results: tuple[IncidentResult, ...]
    rules: tuple[RuleScore, ...]  # one per rule, then ANY_RULE
    outside: int  # incidents outside the backtest's days, left out


def _seen(alerts: Iterable[Alert], rule: str = ANY_RULE) -> list[Alert]:
    """The alerts a reader sees (echoes are not), of `rule` or of any rule."""
    return [a for a in alerts if not a.is_echo and rule in (ANY_RULE, a.kind)]


def _first_catch(incident: Incident, by_day: Mapping[dt.date, tuple[Alert, ...]],
                 window_days: int, rule: str = ANY_RULE) -> tuple[dt.date, str] | None:
    """(day, rule) of the first alert that catches `incident`, or None."""
    for lag in range(window_days + 1):
        day = incident.day + dt.timedelta(days=lag)
        for alert in _seen(by_day.get(day, ()), rule):
            if incident.matches(day, alert, window_days):
                return day, alert.kind
    return None


def score(incidents: Sequence[Incident], by_day: Mapping[dt.date, tuple[Alert, ...]],
          window_days: int) -> LabelScore:
    """Each incident inside the backtest's days against the alerts of `by_day`."""
    first, last = min(by_day), max(by_day)
    inside = [i for i in incidents if first <= i.day <= last]
    results = []
    for incident in inside:
        catch = _first_catch(incident, by_day, window_days)
        results.append(IncidentResult(incident, catch and catch[0], catch and catch[1]))
    scores = [_rule_score(rule, inside, by_day, window_days) for rule in (*RULES, ANY_RULE)]
    return LabelScore(tuple(results), tuple(scores), len(incidents) - len(inside))


def _rule_score(rule: str, incidents: list[Incident], by_day: Mapping[dt.date, tuple[Alert, ...]],
                window_days: int) -> RuleScore:
    mine = [i for i in incidents if rule == ANY_RULE or i.kind in (None, rule)]
    catches = [_first_catch(i, by_day, window_days, rule) for i in mine]
    lags = [(c[0] - i.day).days for i, c in zip(mine, catches) if c is not None]
    by_service: dict[str, list[Incident]] = {}
    for incident in mine:
        by_service.setdefault(incident.service, []).append(incident)
    new = [(day, a) for day, alerts in by_day.items() for a in _seen(alerts, rule)
           if a.counts_as_new]
    unlabelled = sum(not any(i.matches(day, a, window_days) for i in by_service.get(a.service, ()))
                     for day, a in new)
    return RuleScore(rule=rule, incidents=len(mine), on_day=sum(lag == 0 for lag in lags),
                     late=sum(lag > 0 for lag in lags), lags=tuple(lags), unlabelled=unlabelled,
                     new_alerts=len(new), days=len(by_day))


def score_table(label_score: LabelScore) -> list[list[str]]:
    """Header and one row per rule: what the backtest's page and stdout show."""
    rows = [["rule", "incidents", "on the day", "late", "missed", "recall", "median lag",
             "new alerts on no incident", "new alerts a day"]]
    for s in label_score.rules:
        rows.append([s.rule, str(s.incidents), str(s.on_day), str(s.late), str(s.missed),
                     "-" if s.recall is None else f"{100 * s.recall:.0f}%",
                     "-" if s.median_lag is None else f"{s.median_lag:g} d",
                     str(s.unlabelled), f"{s.new_per_day:.2f}"])
    return rows


# ---- files ---------------------------------------------------------------------------

def write_results(path: Path, label_score: LabelScore) -> None:
    """One row per incident: caught or not, the first alert's day and the lag."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(RESULT_COLUMNS)
        for r in label_score.results:
            i = r.incident
            writer.writerow([i.day.isoformat(), safe_cell(i.service), _group_cell(i.group),
                             i.kind or "", i.direction or "", "yes" if r.first_alert else "no",
                             r.first_alert.isoformat() if r.first_alert else "",
                             "" if r.lag_days is None else r.lag_days, r.caught_by or ""])


def _group_cell(group: str | None) -> str:
    return UNTAGGED if group == "" else safe_cell(group or "")


def write_labels(path: Path, incidents: Iterable[Incident]) -> int:
    """A labels file of `incidents` (what --write-demo-labels writes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with replacing(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for i in incidents:
            writer.writerow([i.day.isoformat(), safe_cell(i.service), _group_cell(i.group),
                             i.kind or "", i.direction or ""])
            rows += 1
    return rows
