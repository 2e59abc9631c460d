"""Plain HTML pages of the report site: no JavaScript, nothing from other hosts.

Every page is self-contained (the stylesheet is inlined from templates/style.css) so it
reads the same from a local folder, a `file://` URL or the S3 website, under any prefix.
The pages are Jinja2 templates in templates/ with autoescaping on: every value a template
prints is escaped unless it is markup already (a rendered partial or macro), so no text
that came from data (service and tag names above all) can reach a page unescaped. The
functions here compute the plain text (money, sentences); the templates lay it out.
"""
from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from _util.alert_kinds import SPIKE_PLOT, UP, AlertKind, kind_of, side
from _util.alert_words import echo_text, move_text, partial_text
from _util.money import money as format_money
from _util.money import signed_money as format_signed_money
from _util.names import has_bidi_controls, isolated, visible_controls
from _util.paths import SLACK_PREVIEW
from _util.report import Alert, Report
from _util.site.template_cache import template_code_cache

TEMPLATES = Path(__file__).resolve().parent / "templates"
# Rows each section of the report page lists (the largest dollar changes first). A large
# account's noisy day can make thousands of alerts: 19,000 rows were a 10 MB page. Every
# alert stays in report.json.
SECTION_MAX_ROWS = 200


@dataclass(frozen=True)
class AlertEntry:
    """One alert as the report page lists it: the alert and its plot page (relative)."""

    alert: Alert
    href: str
    # Alerts with a plot page (the Slack message links them) are always listed.
    plotted: bool = True


@dataclass(frozen=True)
class SummaryEntry:
    key: str
    title: str
    href: str
    image: str


@dataclass(frozen=True)
class IndexEntry:
    """One day on the site index; the numbers are None when its report.json is unreadable."""

    day: str
    href: str
    total_usd: float | None = None
    mtd_usd: float | None = None
    alerts: int | None = None
    estimated: bool = False


# ---------------------------------------------------------------- formatting


def money(value: float | None) -> str:
    """$1,234.56; a typographic minus for credits; an em dash for a missing number."""
    return format_money(value, minus="−", missing="—")


def signed_money(value: float | None) -> str:
    return format_signed_money(value, minus="−", missing="—")


def percent(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    text = f"{value:+.0f}%" if abs(value) >= 10 else f"{value:+.1f}%"
    return text.replace("-", "−")


def group_label(group: str | None, name: str | None = None, isolate: bool = True) -> str:
    """How a group reads: None is the whole service, "" is the untagged group, an account
    ID with its name when one is known ("123456789012 (prod-web)"). With a name, each
    part is isolated for a page when it holds bidirectional controls (`isolate`; a plot
    marks them instead), so a hostile name cannot reorder the ID or the parentheses."""
    if group is None:
        return "all groups"
    if not group:
        return "(untagged)"
    if not name:
        return group
    if isolate:
        return f"{isolated(group)} ({isolated(name)})"
    return f"{group} ({name})"


def alert_label(alert: Alert, isolate: bool = True) -> str:
    """'Amazon EC2 · web-prod'; names with bidirectional controls isolated for a page
    (`isolate`; a plot marks them instead)."""
    name = isolated if isolate else str
    if alert.group is None:
        return name(alert.service)
    return f"{name(alert.service)} · {name(group_label(alert.group, alert.group_name, isolate))}"


def status_text(alert: Alert) -> str:
    if alert.episode_start is not None and alert.episode_days > 1:
        since = alert.episode_start.isoformat()
        return f"{alert.status}, since {since} ({alert.episode_days} days)"
    return alert.status


def rule_text(alert: Alert) -> str:
    """What fired, as the report page's Rule column reads: the z-score or the crossing."""
    if kind_of(alert.kind, alert.direction).plot == SPIKE_PLOT:
        # No-break spaces: "z = 4.6" stays on one line in a narrow column.
        return "—" if alert.zscore is None else f"z\u00a0=\u00a0{alert.zscore:.1f}"
    moved = "" if alert.move_pct is None else f" (7-day average {percent(alert.move_pct)})"
    return "MACD crossed " + side(alert.direction) + moved


# ---------------------------------------------------------------- templates


def escape(value: object) -> Markup:
    """Text as markup, escaped the way `html.escape` does it (`&quot;`, `&#x27;`); markup
    (anything with `__html__`: a rendered partial, a macro's output) as it is.

    Every `{{ value }}` of a template goes through here (the environment's `finalize`),
    so the pages keep the entities they always had rather than markupsafe's `&#34;`."""
    if hasattr(value, "__html__"):
        return Markup(value.__html__())
    text = visible_controls(str(value))
    escaped = html.escape(text)
    # A name with bidirectional controls must not reorder what follows it (_util/names.py).
    return Markup(f"<bdi>{escaped}</bdi>" if has_bidi_controls(text) else escaped)


def attribute(value: object) -> Markup:
    """Text for an attribute value (an image's alt text): as `escape`, isolated with
    Unicode's marks instead of <bdi>, which an attribute cannot hold."""
    return Markup(html.escape(isolated(visible_controls(str(value)))))


def _stylesheet(name: str) -> Markup:
    """A stylesheet from the template folders, for a page to inline in its <style>."""
    source, _, _ = _loader.get_source(environment, name)
    return Markup(source.strip())


_loader = FileSystemLoader([str(TEMPLATES)])
# Autoescape on for every template, strings included. trim_blocks and lstrip_blocks make a
# line holding only a {% tag %} vanish; a template file's last newline is dropped (Jinja's
# default), so a partial ends where its markup ends. Text with quotes belongs in template
# data or the context: a string constant printed by {{ }} is escaped when the template is
# compiled, by markupsafe (&#39;), bypassing `escape`; still safe, but other bytes.
_options = dict(autoescape=True, finalize=escape, undefined=StrictUndefined,
                trim_blocks=True, lstrip_blocks=True)
environment = Environment(
    loader=_loader, **_options,
    # Compiled once, not every run (see template_cache).
    bytecode_cache=template_code_cache(tuple((k, getattr(v, "__qualname__", v))
                                             for k, v in sorted(_options.items()))),
)
environment.filters.update(money=money, signed_money=signed_money, percent=percent,
                           group_label=group_label, status_text=status_text,
                           rule_text=rule_text, attribute=attribute)
environment.globals.update(stylesheet=_stylesheet, SLACK_PREVIEW=SLACK_PREVIEW)


def add_template_folder(path: str | Path) -> None:
    """Find templates in `path` too, after the site's own: a digest section kept elsewhere
    brings its partials this way. Adding a folder again changes nothing."""
    folder = Path(path).resolve()
    if not folder.is_dir():
        raise NotADirectoryError(f"template folder {folder} does not exist")
    if str(folder) not in _loader.searchpath:
        _loader.searchpath.append(str(folder))


def render_template(name: str, /, **context: object) -> str:
    """A template from the template folders, rendered: a whole page, or a partial's text."""
    return environment.get_template(name).render(**context)


def render_partial(name: str, /, **context: object) -> Markup:
    """A part of a page (`report/header.html`), as markup to place in another template."""
    return Markup(render_template(name, **context))


def render_string(source: str, /, **context: object) -> Markup:
    """A template given as a string (a section defined in a test), rendered as markup; it
    escapes like the others and may import `_macros.html`."""
    return Markup(environment.from_string(source).render(**context))


# ---------------------------------------------------------------- alert pages


def alert_sentence(alert: Alert, report: Report, baseline: str) -> str:
    """What the alert means, in plain sentences (text, not markup). `baseline` names the
    days a spike's mean is over ("364 days", "52 Mondays")."""
    day = report.day.isoformat()
    where = isolated(alert.service)
    if alert.group is not None:
        where = (f"{isolated(alert.service)} "
                 f"({isolated(group_label(alert.group, alert.group_name))})")
    base = f"its mean of {money(alert.baseline_mean)} over the {baseline} before"
    if kind_of(alert.kind, alert.direction).plot == SPIKE_PLOT:
        z = "—" if alert.zscore is None else f"{alert.zscore:.1f}"
        return (
            f"On {day}, {where} cost {money(alert.usd)}, {money(abs(alert.delta_usd))} "
            f"{side(alert.direction)} {base}: {z} standard deviations away, past the threshold of "
            f"{report.rules.z:g}."
        )
    turn = "upward: spend has started to grow faster" if alert.direction == UP else (
        "downward: spend has started to fall or grow more slowly"
    )
    moved = move_text(alert, money)
    sentence = (
        f"On {day}, the daily cost trend of {where} turned {turn}; its MACD "
        f"(EMA{report.rules.ema_fast} − EMA{report.rules.ema_slow}) crossed {side(alert.direction)} its "
        f"{report.rules.signal_span}-day signal line. "
        f"{f'{moved[0].upper()}{moved[1:]}. ' if moved else ''}"
        f"Cost on the day was {money(alert.usd)}, "
        f"{signed_money(alert.delta_usd)} against {base}."
    )
    echo = echo_text(alert)
    return f"{sentence} This is an {echo}." if echo else sentence


def alert_numbers(alert: Alert, report: Report, baseline: str) -> list[tuple[str, str]]:
    """The key figures behind an alert, as (label, value) text pairs."""
    rows = [
        ("Date", report.day.isoformat()),
        ("Service", alert.service),
        ("Group" if alert.group is not None else "Level",
         group_label(alert.group, alert.group_name)),
        ("Rule", f"{alert.kind} {alert.direction}"),
        ("Cost on the day", money(alert.usd)),
        (f"Baseline mean ({baseline})", money(alert.baseline_mean)),
        ("Baseline standard deviation", money(alert.baseline_std)),
        ("Change against the mean",
         f"{signed_money(alert.delta_usd)} ({percent(alert.delta_pct)})"),
    ]
    if alert.zscore is not None:
        rows.append(("z-score (threshold)", f"{alert.zscore:.2f} ({report.rules.z:g})"))
    if alert.macd is not None:
        rows.append(("MACD on the day", money(alert.macd)))
    if alert.signal is not None:
        rows.append(("Signal line on the day", money(alert.signal)))
    if alert.mean7 is not None and alert.mean28 is not None:
        rules = report.rules
        rows.append(("7-day and 28-day average", f"{money(alert.mean7)}/day, "
                     f"{money(alert.mean28)}/day ({percent(alert.move_pct)})"))
        rows.append(("Move needed (gate)", f"{rules.trend_min_move_pct:g}% of the 28-day "
                     f"average and {money(rules.trend_min_move_usd)}/day"))
    if alert.echo_of is not None:
        rows.append(("Echo of", f"the spike of {alert.echo_of.isoformat()}: not in Slack"))
    if alert.top_group is not None:
        rows.append(
            (
                f"Group that moved most ({report.group_by})",
                f"{isolated(group_label(alert.top_group, alert.top_group_name))}: "
                f"{signed_money(alert.top_group_delta_usd)}",
            )
        )
    rows.append(("Status", status_text(alert)))
    if alert.muted:
        rows.append(("Muted", alert.mute_reason or "yes"))
    return rows


def plot_page(
    title: str,
    day: dt.date,
    image: str,
    alt: str,
    sentence: str,
    numbers: Sequence[tuple[str, str]],
    recent_headers: Sequence[str],
    recent_rows: Sequence[Sequence[object]],
    recent_title: str,
    links: Sequence[tuple[str, str]] = (),
) -> str:
    """One plot's page: the image, its meaning, `links` to related pages (href, text), the
    figures and the recent days' numbers."""
    return render_template(
        "plot.html", title=title, day=day, image=image, alt=alt, sentence=sentence,
        numbers=numbers, recent_headers=recent_headers, recent_rows=recent_rows,
        recent_title=recent_title, links=links)


# ---------------------------------------------------------------- report page


def report_header(report: Report, links: Sequence[tuple[str, str]] | None = None) -> Markup:
    """The report page's top: links (by default to report.json and the Slack preview),
    the metric, the Estimated and stale notes, and the three headline cards."""
    partial = partial_text(report.summary.headline, report.day.isoformat(), money, isolated)
    if links is None:
        links = [("report.json", "report.json"), (SLACK_PREVIEW, "Slack message preview")]
    return render_partial("report/header.html", report=report, partial_note=partial,
                          links=links)


def weekly_page(week: object, label: str | None, up: str, day_page: str,
                coverage: str | None = None) -> str:
    """A channel's weekly summary page; `up` leads from it to the site's root, `day_page`
    to the report of the week's last day."""
    return render_template("weekly.html", week=week, label=label, up=up, day_page=day_page,
                           coverage=coverage,
                           kind_title=lambda k, d: kind_of(k, d).title)


def route_page(route: object, day: dt.date, parts: Sequence[str]) -> str:
    """A route's page (reports/<date>/routes/<name>.html) around its parts."""
    return render_template("route.html", route=route, day=day, parts=parts)


def report_summaries(title: str, summaries: Sequence[SummaryEntry]) -> Markup:
    """A heading and a thumbnail per summary plot, linking to its page."""
    return render_partial("report/summaries.html", title=title, summaries=summaries)


def report_no_alerts(report: Report, alerts: Sequence[AlertEntry]) -> Markup:
    """The line that says the day has no alerts; empty when it has some."""
    return render_partial("report/no_alerts.html", report=report, alerts=alerts)


def report_alert_section(kind: AlertKind, entries: Sequence[AlertEntry]) -> Markup:
    """The section of one alert kind (picked from `entries`): its title and count, a table
    of the SECTION_MAX_ROWS largest changes plus any plotted alert beyond them, and a note
    on the rest. Empty when the kind has no alerts."""
    section = [e for e in entries if (e.alert.kind, e.alert.direction) == kind.key]
    if not section:
        return Markup()
    largest = sorted(section, key=lambda e: -abs(e.alert.delta_usd))
    shown = largest[:SECTION_MAX_ROWS] + [e for e in largest[SECTION_MAX_ROWS:] if e.plotted]
    return render_partial("report/alert_section.html", kind=kind, count=len(section),
                          shown=shown, hidden=len(section) - len(shown))


def report_layout(day: dt.date, parts: Sequence[str]) -> str:
    """The report page of `day` around its parts, in order: markup (rendered partials)
    joined by newlines; an empty part is skipped, a plain string is escaped as text."""
    return render_template("report.html", day=day, parts=parts)


# ---------------------------------------------------------------- site index


def site_index(entries: Sequence[IndexEntry]) -> str:
    """Every report on the site, newest first."""
    return render_template("index.html",
                           entries=sorted(entries, key=lambda e: e.day, reverse=True))
