"""Settings: flags, then COST_TRACKING_* environment variables, then the TOML file, then defaults.

Every setting is declared once in SETTINGS (name, parser, default, help); the README lists
each of them and a test keeps the two in step. Everything is validated at start-up so a bad
value fails in one line that names the setting and what is allowed.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from _util.alert_kinds import RULES
from _util.commitment_alerts import CommitmentMute, parse_commitment_mutes
from _util.config_tables import entry_date, table_entries
from _util.detection.labels import DEFAULT_WINDOW_DAYS, LabelSet, read_labels
from _util.errors import ConfigError
from _util.paths import OutputPaths
from _util.report import SEASONALITIES, Rules
from _util.routes import MAIN_CHANNEL_GETS, MAIN_GETS_ALL, Route, parse_routes
from _util.schedules import DEMO_SCHEDULES, Schedule, parse_schedules
from _util.site.plot_workers import DEFAULT_PLOT_WORKERS, MAX_PLOT_WORKERS
from _util.sources import CUR_ENGINES, SOURCES
from _util.sources.cost_explorer import CE_DAILY_RETENTION_DAYS
from _util.weekly import WEEKDAYS

ENV_PREFIX = "COST_TRACKING_"
METRICS = ("UnblendedCost", "AmortizedCost", "NetAmortizedCost", "NetUnblendedCost",
           "BlendedCost")
GROUP_DIMENSIONS = ("LINKED_ACCOUNT", "REGION", "USAGE_TYPE")
RECORD_TYPES = ("Credit", "Refund", "Tax", "Usage", "DiscountedUsage", "Fee", "RIFee",
                "Support", "SavingsPlanCoveredUsage", "SavingsPlanNegation",
                "SavingsPlanRecurringFee", "SavingsPlanUpfrontFee",
                "Enterprise Discount Program Discount", "Private Rate Discount",
                "Bundled Discount", "Distributor Discount",
                "Solution Provider Program Discount")
# Alert plots per run (COST_TRACKING_MAX_ALERT_PLOTS): at ~0.1-0.2 s a plot, a day with
# hundreds of alerts (a large account) would otherwise spend minutes drawing plots that
# nobody opens. The Slack message links at most ~45 alerts, so 50 covers every button.
DEFAULT_MAX_ALERT_PLOTS = 50
SLACK_DEFAULT_API_URL = "https://slack.com/api/"
# Retries of a Slack post after a 429, 5xx or connection error (the Slack client's default too).
SLACK_DEFAULT_MAX_RETRIES = 4


@dataclass(frozen=True)
class Mute:
    """One entry of the `[[mute]]` list: alerts a user already knows about."""

    service: str
    reason: str
    group: str | None = None
    kind: str | None = None
    until: dt.date | None = None


@dataclass(frozen=True)
class Settings:
    day: dt.date
    output_dir: Path
    db_url: str
    metric: str = "UnblendedCost"
    group_by: str = "TAG:Name"
    account_names_from_organizations: str = "off"
    lookback_days: int = 365
    exclude_record_types: tuple[str, ...] = ("Credit", "Refund")
    coverage_tag: str | None = None
    coverage_drop_pct: float = 5.0
    commitments: str = "auto"
    min_utilisation_pct: float = 80.0
    ec2_usage: str = "on"
    ec2_usage_regions: tuple[str, ...] = ()
    idle: str = "on"
    idle_regions: tuple[str, ...] = ()
    idle_days: int = 7
    idle_cpu_pct: float = 5.0
    idle_network_mb: float = 50.0
    idle_owner_tag: str = "Owner"
    schedule_tag: str = "cost-tracking:schedule"
    schedule_actions: str = "off"
    schedules: tuple[Schedule, ...] = ()
    rules: Rules = field(default_factory=Rules)
    s3_bucket: str | None = None
    s3_prefix: str = ""
    site_url: str | None = None
    slack_token: str | None = field(default=None, repr=False)
    slack_channel: str | None = None
    slack_api_url: str = SLACK_DEFAULT_API_URL
    slack_max_retries: int = SLACK_DEFAULT_MAX_RETRIES
    account_label: str | None = None
    plot_workers: int = DEFAULT_PLOT_WORKERS
    max_alert_plots: int = DEFAULT_MAX_ALERT_PLOTS
    lock_timeout_seconds: float = 0.0
    log_max_bytes: int = 5_000_000
    demo_scale: tuple[int, int] | None = None
    mutes: tuple[Mute, ...] = ()
    commitment_mutes: tuple[CommitmentMute, ...] = ()
    routes: tuple[Route, ...] = ()
    main_channel_gets: str = MAIN_GETS_ALL
    weekly_day: str | None = None
    source: str = "cost-explorer"
    cur_uri: str | None = None
    cur_engine: str = "duckdb"
    athena_database: str | None = None
    athena_table: str | None = None
    athena_workgroup: str = "primary"
    athena_output: str | None = None
    athena_timeout_seconds: float = 600.0
    dry_run: bool = False
    force: bool = False
    skip_fetch: bool = False
    backtest_from: dt.date | None = None
    labels: LabelSet | None = None
    label_window_days: int = DEFAULT_WINDOW_DAYS
    write_demo_labels: Path | None = None
    schedule_run: bool = False

    @property
    def demo(self) -> bool:
        return self.source == "demo"

    @property
    def paths(self) -> OutputPaths:
        return OutputPaths(self.output_dir)

    @property
    def site_dir(self) -> Path:
        return self.paths.site


# ---- parsers: each takes the raw value and returns the typed one or raises ValueError ----

def _float_between(low: float, high: float) -> Callable[[Any], float]:
    def parse(raw: Any) -> float:
        value = float(raw)
        if not low <= value <= high:
            raise ValueError(f"a number from {low:g} to {high:g}")
        return value
    parse.allowed = f"a number from {low:g} to {high:g}"  # type: ignore[attr-defined]
    return parse


def _int_between(low: int, high: int) -> Callable[[Any], int]:
    def parse(raw: Any) -> int:
        if isinstance(raw, float) or (isinstance(raw, str) and not raw.strip().lstrip("-").isdigit()):
            raise ValueError
        value = int(raw)
        if not low <= value <= high:
            raise ValueError
        return value
    parse.allowed = f"a whole number from {low} to {high}"  # type: ignore[attr-defined]
    return parse


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(raw: Any) -> str:
        if raw not in options:
            raise ValueError
        return raw
    parse.allowed = "one of " + ", ".join(options)  # type: ignore[attr-defined]
    return parse


def _group_by(raw: Any) -> str:
    value = str(raw).strip()
    if value == "NONE" or value in GROUP_DIMENSIONS:
        return value
    if value.startswith("TAG:") and value[4:].strip():
        return value
    raise ValueError


_group_by.allowed = "TAG:<tag key>, " + ", ".join(GROUP_DIMENSIONS) + " or NONE"  # type: ignore[attr-defined]


def _record_types(raw: Any) -> tuple[str, ...]:
    items = raw if isinstance(raw, list) else str(raw).split(",")
    values = tuple(str(v).strip() for v in items if str(v).strip())
    unknown = [v for v in values if v not in RECORD_TYPES]
    if unknown:
        raise ValueError
    return values


_record_types.allowed = "a comma-separated list of " + ", ".join(RECORD_TYPES) + " (or empty)"  # type: ignore[attr-defined]


def _source(raw: Any) -> str:
    """A registered cost source's name (looked up when read: a source registered after
    import counts)."""
    value = str(raw).strip()
    if value not in SOURCES:
        raise ValueError
    return value


_source.allowed = lambda: "one of " + ", ".join(SOURCES)  # type: ignore[attr-defined]


def _text(raw: Any) -> str | None:
    value = str(raw).strip()
    return value or None


_text.allowed = "text"  # type: ignore[attr-defined]


def _tag_key(raw: Any) -> str | None:
    """A tag key as AWS spells it (at most 128 characters), without the TAG: prefix that
    COST_TRACKING_GROUP_BY takes; empty: off."""
    value = str(raw).strip()
    if not value:
        return None
    if value.upper().startswith("TAG:") or len(value) > 128:
        raise ValueError
    return value


_tag_key.allowed = "a tag key such as Spend_Category (without TAG:, at most 128 characters)"  # type: ignore[attr-defined]


def _prefix(raw: Any) -> str:
    """A key prefix inside the bucket. A leading '/' or a '..' segment would make the
    pages' relative links point outside the site: refused, not silently mended."""
    value = str(raw).strip()
    if value.startswith("/"):
        raise ValueError
    value = value.rstrip("/")
    if value and any(part in ("", ".", "..") for part in value.split("/")):
        raise ValueError
    return f"{value}/" if value else ""


_prefix.allowed = ("a key prefix such as reports/cost (no leading /, no empty, . or .. "  # type: ignore[attr-defined]
                   "segments)")


def _url(raw: Any) -> str | None:
    value = str(raw).strip()
    if not value:
        return None
    if not value.startswith(("http://", "https://")):
        raise ValueError
    return value.rstrip("/") + "/"


_url.allowed = "an http:// or https:// URL"  # type: ignore[attr-defined]


def _scale(raw: Any) -> tuple[int, int] | None:
    value = str(raw).strip().lower()
    if not value:
        return None
    services, _, groups = value.partition("x")
    if not (services.isdigit() and groups.isdigit()):
        raise ValueError
    scale = (int(services), int(groups))
    if not (1 <= scale[0] <= 10_000 and 1 <= scale[1] <= 1_000 and scale[0] * scale[1] <= 200_000):
        raise ValueError
    return scale


_scale.allowed = "SERVICESxGROUPS, e.g. 100x10 (at most 200,000 series)"  # type: ignore[attr-defined]


def _regions(raw: Any) -> tuple[str, ...]:
    """AWS region names, comma-separated (empty: the account's enabled regions)."""
    items = raw if isinstance(raw, list) else str(raw).split(",")
    values = tuple(dict.fromkeys(str(v).strip() for v in items if str(v).strip()))
    if any(not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d{1,2}", v) for v in values):
        raise ValueError
    return values


_regions.allowed = "AWS region names, comma-separated, e.g. us-east-1,eu-west-1 (or empty)"  # type: ignore[attr-defined]


@dataclass(frozen=True)
class SettingSpec:
    """One setting: its name (TOML key; env var is COST_TRACKING_ + NAME), parser, help."""

    name: str
    parse: Callable[[Any], Any]
    help: str
    env: str | None = None

    @property
    def env_var(self) -> str:
        return self.env or ENV_PREFIX + self.name.upper()

    @property
    def allowed(self) -> str:
        allowed = getattr(self.parse, "allowed", "a valid value")
        return allowed() if callable(allowed) else allowed


SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("source", _source,
                "Where the costs come from: cost-explorer (default), cur (the Cost and Usage "
                "Report, CUR 2.0) or demo (the built-in demo account; --demo is the shortcut)."),
    SettingSpec("cur_uri", _text, "With source cur: where the export's Parquet files are, s3://bucket/prefix/ or a local folder (holding its BILLING_PERIOD=YYYY-MM folders)."),
    SettingSpec("cur_engine", _choice(CUR_ENGINES), "With source cur: duckdb (default: aggregated on this machine) or athena."),
    SettingSpec("athena_database", _text, "With the athena engine: the Glue database of the CUR table."),
    SettingSpec("athena_table", _text, "With the athena engine: the CUR 2.0 table (partitioned by billing_period; DDL in the README)."),
    SettingSpec("athena_workgroup", _text, "With the athena engine: the workgroup queries run in (default primary)."),
    SettingSpec("athena_output", _text, "With the athena engine: s3://bucket/prefix/ for query results (default: the workgroup's)."),
    SettingSpec("athena_timeout_seconds", _float_between(1, 86400), "With the athena engine: how long a query may run before it is stopped (default 600)."),
    SettingSpec("output_dir", lambda raw: Path(str(raw)).expanduser(),
                "Folder for the database, site, Slack payloads, run records and logs (default ./output)."),
    SettingSpec("db_url", str, "SQLAlchemy URL of the database (default sqlite:///<output>/cost_tracking.db; "
                "MySQL: mysql+pymysql://user:pass@host/db)."),
    SettingSpec("metric", _choice(METRICS), "Cost Explorer metric (default UnblendedCost)."),
    SettingSpec("group_by", _group_by, "Second grouping after SERVICE (default TAG:Name)."),
    SettingSpec("account_names_from_organizations", _choice(("off", "on")),
                "With group_by LINKED_ACCOUNT: on also reads the accounts' names from AWS "
                "Organizations (organizations:ListAccounts); off (default): Cost Explorer's."),
    SettingSpec("lookback_days", _int_between(35, 390), "Days of history kept and analysed (default 365)."),
    SettingSpec("exclude_record_types", _record_types,
                "Record types left out of the costs (default Credit,Refund; empty for none)."),
    SettingSpec("coverage_tag", _tag_key, "A tag key, e.g. Spend_Category: the digest's Tag coverage section shows the share of spend that carries it (default unset: off)."),
    SettingSpec("coverage_drop_pct", _float_between(0, 100), "Tag coverage: a share this many points below its mean of the 7 days before is an alert in that section (default 5)."),
    SettingSpec("commitments", _choice(("auto", "on", "off")), "The Commitments section (Reserved Instances and Savings Plans): auto (default: when the account has any; one check a week otherwise), on, or off (no calls)."),
    SettingSpec("min_utilisation_pct", _float_between(0, 100), "Commitments: a plan or reservation used below this percentage on the day is an alert (default 80)."),
    SettingSpec("ec2_usage", _choice(("on", "off")), "The EC2 instance usage section (who ran which instances, for how long, from CloudTrail): on (default) or off (no calls)."),
    SettingSpec("ec2_usage_regions", _regions, "EC2 instance usage: the regions to read, comma-separated (default: the account's enabled regions)."),
    SettingSpec("idle", _choice(("on", "off")), "The Idle resources section (EC2 instances, ECS services and EKS node groups nobody used, from CloudWatch): on (default) or off (no calls)."),
    SettingSpec("idle_regions", _regions, "Idle resources and --schedule: the regions to look in, comma-separated (default: the account's enabled regions)."),
    SettingSpec("idle_days", _int_between(1, 30), "Idle resources: days in a row a resource must have run unused to be listed (default 7)."),
    SettingSpec("idle_cpu_pct", _float_between(0, 100), "Idle resources: a day counts as idle when the highest CPU stayed under this percentage (default 5)."),
    SettingSpec("idle_network_mb", _float_between(0, 1e9), "Idle resources: ... and the network in+out under this many megabytes that day (default 50; ECS services have no network metric)."),
    SettingSpec("idle_owner_tag", _tag_key, "Idle resources: the tag that names a resource's owner (default Owner)."),
    SettingSpec("schedule_tag", _tag_key, "The tag whose value names the [schedule.<name>] that stops and starts a resource (default cost-tracking:schedule); nothing without it is ever touched."),
    SettingSpec("schedule_actions", _choice(("off", "on")), "--schedule stops and starts resources only when on; off (default): it lists what it would do, like --dry-run."),
    SettingSpec("z", _float_between(0.5, 50), "Z-score threshold for spikes (default 3.0)."),
    SettingSpec("min_delta_usd", _float_between(0, 1e9), "A spike must move the cost by at least this many dollars (default 1.00)."),
    SettingSpec("min_delta_pct", _float_between(0, 10000), "A spike must move the cost by at least this percentage of its baseline mean (default 0, off)."),
    SettingSpec("min_history_days", _int_between(7, 365), "Baseline days a series needs before it can alert (default 28)."),
    SettingSpec("min_daily_usd", _float_between(0, 1e9), "Trend alerts need a 28-day mean daily cost of at least this (default 1.00)."),
    SettingSpec("trend_min_move_pct", _float_between(0, 10000), "A trend crossing fires only if the 7-day mean daily cost is at least this percentage of the 28-day mean away from it (default 5; with TREND_MIN_MOVE_USD 0, 0 turns the gate off)."),
    SettingSpec("trend_min_move_usd", _float_between(0, 1e9), "A trend crossing also needs the 7-day mean daily cost to be at least this many dollars away from the 28-day mean (default 1.00)."),
    SettingSpec("echo_days", _int_between(0, 28), "A trend alert on a series that had a spike alert on one of the last N days or on the day itself is the spike's echo: on the site, not in Slack (default 7; 0: no echoes)."),
    SettingSpec("seasonality", _choice(SEASONALITIES), "A spike's baseline: none (every earlier day, the default) or weekday (the earlier days with the same day of the week, at least 8 of them)."),
    SettingSpec("ema_fast", _int_between(2, 100), "Span of the fast EMA of the MACD (default 12)."),
    SettingSpec("ema_slow", _int_between(3, 200), "Span of the slow EMA of the MACD (default 26)."),
    SettingSpec("signal_span", _int_between(2, 100), "Span of the EWM signal line of the MACD (default 18)."),
    SettingSpec("label_window_days", _int_between(0, 90), "With --labels: an alert up to this many days after a known incident catches it (default 7)."),
    SettingSpec("s3_bucket", _text, "S3 bucket to mirror the site to (default none: local only)."),
    SettingSpec("s3_prefix", _prefix, "Key prefix inside the bucket (default empty)."),
    SettingSpec("site_url", _url, "Public base URL of the site; derived from the bucket's website endpoint when unset."),
    SettingSpec("slack_channel", _text, "Slack channel ID or name to post to."),
    SettingSpec("weekly_day", _choice(WEEKDAYS), "A day of the week, e.g. monday: that morning's run also sends each channel a weekly summary of the seven days before (default unset: off)."),
    SettingSpec("main_channel_gets", _choice(MAIN_CHANNEL_GETS), "With [[route]] entries: all (default: the main channel gets the whole digest) or unrouted (only the alerts no route takes)."),
    SettingSpec("slack_api_url", _url, "Slack Web API base URL (default https://slack.com/api/)."),
    SettingSpec("slack_max_retries", _int_between(0, 10), "Retries of a Slack post after a 429, 5xx or connection error (default 4; backoff 2, 4, 8, 16 s)."),
    SettingSpec("account_label", _text, "Label shown in the Slack header, e.g. the account's name."),
    SettingSpec("plot_workers", _int_between(1, MAX_PLOT_WORKERS), "Processes that render plots (default 2; forked from one more process, which imports matplotlib once for them and waits for them)."),
    SettingSpec("max_alert_plots", _int_between(1, 100_000), "Alert plots a run draws at most: those the Slack message links first, then the largest dollar changes (default 50); the report page lists every alert."),
    SettingSpec("lock_timeout_seconds", _float_between(0, 86400), "How long a run waits for another run's lock before giving up (default 0: exit at once)."),
    SettingSpec("demo_scale", _scale, "With --demo: add SERVICESxGROUPS synthetic series to the demo account, e.g. 500x20 (for benchmarks)."),
    SettingSpec("log_max_bytes", _int_between(10_000, 1_000_000_000), "Size at which logs/cost_tracking.log rotates (default 5000000; 5 files kept)."),
)
SPEC_BY_NAME = {spec.name: spec for spec in SETTINGS}
RULE_FIELDS = {f.name for f in dataclasses.fields(Rules)}
TOML_ONLY_KEYS = {"mute", "route", "commitment_mute", "schedule"}


def _parse(spec: SettingSpec, raw: Any, source: str) -> Any:
    try:
        return spec.parse(raw)
    except (ValueError, TypeError):
        shown = "" if raw is None else str(raw)
        raise ConfigError(
            f"{source} is {shown!r}; allowed: {spec.allowed}"
        ) from None


def read_toml(path: Path) -> dict[str, Any]:
    """Read the config file; a missing or malformed file is a ConfigError naming it."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"--config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"--config {path} is a folder: name the TOML file in it") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"--config file {path} is not UTF-8 text (byte {exc.start}): "
                          "save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"--config file {path} cannot be read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(SPEC_BY_NAME) - TOML_ONLY_KEYS)
    if unknown:
        raise ConfigError(
            f"--config file {path} has unknown setting(s): {', '.join(unknown)}; "
            f"known: {', '.join(sorted(SPEC_BY_NAME) + sorted(TOML_ONLY_KEYS))}"
        )
    return data


def _parse_mutes(raw: Any, path: Path | None) -> tuple[Mute, ...]:
    where = f"--config file {path}"
    mutes = []
    allowed = {"service", "group", "kind", "until", "reason"}
    for label, entry in table_entries(raw, "mute", where, allowed):
        service = entry.get("service")
        reason = entry.get("reason")
        if not isinstance(service, str) or not service:
            raise ConfigError(f"{label} needs a service")
        if not isinstance(reason, str) or not reason.strip():
            raise ConfigError(f"{label} ({service}) needs a reason")
        kind = entry.get("kind")
        if kind is not None and kind not in RULES:
            raise ConfigError(f"{label} kind is {kind!r}; allowed: "
                              f"{', '.join(RULES)}")
        until = entry_date(entry, "until", label)
        group = entry.get("group")
        if group is not None and not isinstance(group, str):
            raise ConfigError(f"{label} group must be text")
        mutes.append(Mute(service=service, reason=reason.strip(), group=group, kind=kind, until=until))
    return tuple(mutes)


# No AWS bill is older; a day much earlier would only overflow the date arithmetic.
OLDEST_DATE = dt.date(2006, 1, 1)


def check_day(day: dt.date, today: dt.date, skip_fetch: bool, flag: str = "--date") -> None:
    """The run's day must have complete data and, when fetched, still be in Cost Explorer."""
    if day < OLDEST_DATE:
        raise ConfigError(f"{flag} {day} is before AWS billed anything; the oldest day "
                          f"allowed is {OLDEST_DATE}")
    latest = today - dt.timedelta(days=1)
    if day > latest:
        raise ConfigError(
            f"--date {day} has no complete cost data yet; the latest day is {latest} (UTC)"
        )
    oldest = today - dt.timedelta(days=CE_DAILY_RETENTION_DAYS)
    if day < oldest and not skip_fetch:
        raise ConfigError(
            f"--date {day} is older than Cost Explorer keeps daily data (oldest {oldest}); "
            "use --skip-fetch to analyse it from the database"
        )


def load_settings(flags: Mapping[str, Any], environ: Mapping[str, str], today: dt.date) -> Settings:
    """Merge the sources into one validated Settings.

    `flags` holds only what the user passed on the command line (argparse values that
    are None are treated as not given); `today` is the UTC date, passed in for tests.
    """
    config_path = flags.get("config") or environ.get(ENV_PREFIX + "CONFIG")
    toml = read_toml(Path(config_path)) if config_path else {}

    values: dict[str, Any] = {}
    for spec in SETTINGS:
        if spec.name in toml:
            values[spec.name] = _parse(spec, toml[spec.name], f"{spec.name} in {config_path}")
        raw_env = environ.get(spec.env_var)
        if raw_env is not None and (raw_env.strip() or spec.name == "exclude_record_types"):
            values[spec.name] = _parse(spec, raw_env, spec.env_var)
    if flags.get("demo"):
        values["source"] = "demo"
    if flags.get("z") is not None:
        values["z"] = _parse(SPEC_BY_NAME["z"], flags["z"], "--z")

    output_dir = values.pop("output_dir", Path("output"))
    db_url = values.pop("db_url", None) or f"sqlite:///{OutputPaths(output_dir).database}"
    rules_kwargs = {k: values.pop(k) for k in list(values) if k in RULE_FIELDS}
    if "lookback_days" in values:
        rules_kwargs["lookback_days"] = values["lookback_days"]
    rules = Rules(**rules_kwargs)
    if rules.ema_fast >= rules.ema_slow:
        raise ConfigError(
            f"ema_fast ({rules.ema_fast}) must be smaller than ema_slow ({rules.ema_slow})"
        )
    if rules.min_history_days >= rules.lookback_days:
        raise ConfigError(
            f"min_history_days ({rules.min_history_days}) must be smaller than "
            f"lookback_days ({rules.lookback_days})"
        )

    day = flags.get("date") or (today - dt.timedelta(days=1))
    skip_fetch = bool(flags.get("skip_fetch"))
    backtest_from = flags.get("backtest_from")
    check_day(day, today, skip_fetch or backtest_from is not None)
    if backtest_from is not None and backtest_from > day:
        raise ConfigError(f"--backtest-from {backtest_from} is after --date {day}")
    if backtest_from is not None and backtest_from < OLDEST_DATE:
        raise ConfigError(f"--backtest-from {backtest_from} is before AWS billed anything; "
                          f"the oldest day allowed is {OLDEST_DATE}")
    labels_file = Path(flags["labels"]) if flags.get("labels") else None
    if labels_file is not None and backtest_from is None:
        raise ConfigError("--labels scores a backtest: add --backtest-from YYYY-MM-DD")
    write_demo_labels = Path(flags["write_demo_labels"]) if flags.get("write_demo_labels") else None
    if write_demo_labels is not None and values.get("source") != "demo":
        raise ConfigError("--write-demo-labels writes the demo account's planted events: add --demo")
    schedule_run = bool(flags.get("schedule"))
    if schedule_run and (backtest_from is not None or flags.get("date")):
        raise ConfigError("--schedule acts on the present: it takes no --date or --backtest-from")
    for tag_setting in ("idle_owner_tag", "schedule_tag"):
        if tag_setting in values and values[tag_setting] is None:
            del values[tag_setting]  # empty: the default

    return Settings(
        day=day,
        output_dir=output_dir,
        db_url=db_url,
        rules=rules,
        slack_token=(environ.get("SLACK_BOT_TOKEN") or "").strip() or None,
        mutes=_parse_mutes(toml.get("mute"), Path(config_path) if config_path else None),
        commitment_mutes=parse_commitment_mutes(toml.get("commitment_mute"),
                                                f"--config file {config_path}"),
        routes=parse_routes(toml.get("route"), f"--config file {config_path}",
                            values.get("group_by", "TAG:Name"), values.get("slack_channel")),
        dry_run=bool(flags.get("dry_run")),
        force=bool(flags.get("force")),
        skip_fetch=skip_fetch,
        backtest_from=backtest_from,
        labels=None if labels_file is None else LabelSet(
            labels_file, read_labels(labels_file), values.get("label_window_days", DEFAULT_WINDOW_DAYS)),
        write_demo_labels=write_demo_labels,
        schedule_run=schedule_run,
        schedules=parse_schedules(
            toml.get("schedule", DEMO_SCHEDULES if values.get("source") == "demo" else None),
            f"--config file {config_path}"),
        **values,
    )
