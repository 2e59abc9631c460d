#!/usr/bin/env python3
"""The driver: flags -> Settings -> stages -> exit code.

Run daily from cron. Stages: ingest (Cost Explorer or the demo account -> database),
detect and summarise (pure), plot (site folder), publish (S3), message and deliver (Slack).
Every run leaves <output>/runs/<date>.json; errors become one line and an exit code.
"""
from __future__ import annotations

import gc
import os
import sys

if __name__ == "__main__":
    # Before the imports below (pandas, SQLAlchemy, boto3: most of a second of the run),
    # so that the plot workers import matplotlib beside them (see start_early_plot_workers).
    from _util.site.plot_workers import start_early_plot_workers

    start_early_plot_workers(sys.argv[1:], os.environ)
    # The imports make about 95,000 objects, nearly all of which live as long as the run:
    # the garbage collector would walk them again and again while they are made (0.05-0.1
    # s of the demo's run), and in every full collection after. Not collected until they
    # are all made, then frozen (below the imports), the few cycles among them with them.
    gc.disable()

import argparse
import datetime as dt
import logging
from functools import partial
from pathlib import Path
from typing import Any, Mapping, Sequence

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

import procBacktest
from _util.atomic_files import check_writable
from _util.detection.labels import write_labels
from _util.errors import (
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_UNEXPECTED,
    ConfigError,
    CostTrackingError,
    LockedError,
    OutputError,
)
from _util.logging_setup import FILE_ONLY, LOG_FILE_NAME, setup_logging
from _util.run.job import Clients
from _util.run.pipeline import DailyRun, Outcome, first_line
from _util.run.run_lock import run_lock
from _util.run.run_record import FAILED, RunRecord
from _util.run.schedule_run import SCHEDULE_LOCK, run_schedule
from _util.sections.idle_resources import make_idle_clients
from _util.settings import ENV_PREFIX, SETTINGS, Settings, load_settings
from _util.site.plot_workers import stop_early_plot_workers
from _util.site.publish import make_s3_client
from _util.slack.delivery import make_slack_client
from _util.sources import SOURCES
from _util.sources.demo_account import DEMO_LABEL_DAYS, planted_incidents
from _util.sources.organizations import make_organizations_client
from _util.store.account_names import LINKED_ACCOUNT
from _util.store.cost_store import load_history
from _util.store.database import create_tables, make_engine, mask_url
from _util.store.database_lock import database_lock

if __name__ == "__main__":
    gc.freeze()
    gc.enable()

log = logging.getLogger("runCostReporting")

# How the first log line names a source.
SOURCE_NAMES = {"demo": "demo account", "cost-explorer": "AWS Cost Explorer"}

EXIT_CODES_HELP = """exit codes:
  0  everything delivered (or nothing to deliver: --dry-run, no Slack token)
  1  unexpected error (traceback in <output>/logs/cost_tracking.log)
  2  settings, usage, credentials, permissions or database problem (nothing was
     analysed), or Cost Explorer failed and the database holds nothing to report,
     or --skip-fetch for an unstored day, or the output folder cannot be written
  3  delivery partial: Slack or S3 failed after retries, or Cost Explorer failed
     (down, or an answer that cannot be stored) and the report was made from stored,
     possibly stale, data (about the newest stored day when the run's day is missing)
  4  another run holds the lock for this output folder or this database
     (waited COST_TRACKING_LOCK_TIMEOUT_SECONDS)
--schedule: 0 done or listed; 2 settings, schedules or database; 3 an action failed
  or was refused, a region could not be read, or its Slack message failed; 4 another
  --schedule run holds its lock
"""


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def build_parser() -> argparse.ArgumentParser:
    settings_help = "\n".join(f"  {s.env_var:<40} {s.help}" for s in SETTINGS)
    parser = argparse.ArgumentParser(
        prog="runCostReporting.py",
        description="Daily AWS cost-anomaly report: fetch costs, find spikes and trend "
                    "reversals, plot them, and post one Slack message.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"settings (flags > environment > --config TOML > defaults):\n{settings_help}\n"
               f"  {'SLACK_BOT_TOKEN':<40} Slack bot token (xoxb-...); without it nothing is posted.\n"
               f"  AWS access uses boto3's usual chain (AWS_PROFILE, AWS_REGION, instance role, "
               f"AWS_ENDPOINT_URL_COST_EXPLORER, AWS_ENDPOINT_URL_S3); AWS_MAX_ATTEMPTS sets "
               f"Cost Explorer's attempts with backoff (default 8).\n\n{EXIT_CODES_HELP}",
    )
    parser.add_argument("--date", type=_date, metavar="YYYY-MM-DD",
                        help="cost day to analyse (default: yesterday, UTC)")
    parser.add_argument("--demo", action="store_true",
                        help="use the built-in demo account instead of AWS Cost Explorer "
                             "(COST_TRACKING_SOURCE=demo)")
    parser.add_argument("--dry-run", action="store_true",
                        help="no Slack post, no S3 upload (costs are still fetched: add "
                             "--skip-fetch for no network at all)")
    parser.add_argument("--config", metavar="FILE",
                        help="TOML file of settings (keys as in the README; also [[mute]] entries)")
    parser.add_argument("--force", action="store_true",
                        help="post to Slack even if this day was already delivered to the channel")
    parser.add_argument("--skip-fetch", action="store_true",
                        help="do not call the cost source (no Cost Explorer request); "
                             "analyse what the database holds")
    parser.add_argument("--z", metavar="Z",
                        help="z-score threshold for spikes (default 3.0; COST_TRACKING_Z)")
    parser.add_argument("--backtest-from", type=_date, metavar="YYYY-MM-DD",
                        help="replay the rules for every day from this date to --date over the "
                             "stored history (no fetch, no Slack, no upload)")
    parser.add_argument("--labels", metavar="FILE",
                        help="with --backtest-from: a CSV of known incidents "
                             "(date,service[,group][,kind][,direction]) to score the rules against")
    parser.add_argument("--write-demo-labels", metavar="FILE",
                        help="with --demo: write the demo account's planted spikes and turns "
                             "from --backtest-from (default: 180 days before --date) to --date "
                             "as a labels file, and exit")
    parser.add_argument("--schedule", action="store_true",
                        help="instead of the report: stop and start the resources tagged with "
                             "a schedule (COST_TRACKING_SCHEDULE_TAG), as the config's "
                             "[schedule.<name>] tables say; run it from cron every 15 minutes. "
                             "Acts only with COST_TRACKING_SCHEDULE_ACTIONS=on; with --dry-run "
                             "it lists the actions and calls nothing that changes anything")
    parser.add_argument("--verbose", action="store_true", help="debug logging on stderr")
    return parser


def make_clients(settings: Settings, today: dt.date) -> Clients:
    """How the run's clients are made: each once, on first use, and only those the run
    will use."""
    fetching = not settings.skip_fetch and settings.backtest_from is None
    sending = not settings.dry_run
    # Account names from AWS Organizations: only for groups that are account IDs, only
    # when asked, and never for the demo or a run that stays off the network.
    naming = (fetching and not settings.demo and settings.group_by == LINKED_ACCOUNT
              and settings.account_names_from_organizations == "on")
    return Clients(
        source=partial(SOURCES[settings.source], settings, today) if fetching else None,
        s3=make_s3_client if sending and settings.s3_bucket else None,
        slack=(partial(make_slack_client, settings.slack_token, settings.slack_api_url,
                       retries=settings.slack_max_retries)
               if sending and settings.slack_token and (settings.slack_channel or settings.routes)
               else None),
        organizations=make_organizations_client if naming else None,
    )


def _run(settings: Settings, record: RunRecord, today: dt.date, outcome: Outcome) -> None:
    """The backtest, or the daily run (what goes only partly right lands in `outcome`)."""
    engine = make_engine(settings.db_url)
    create_tables(engine)
    if settings.backtest_from is not None:
        # No fetch, no Slack, no upload: the backtest reads what the database holds.
        procBacktest.run_backtest(engine, settings.backtest_from, settings.day, settings.rules,
                                  settings.metric, settings.paths, load_history, record,
                                  settings.labels)
        return
    clients = make_clients(settings, today)
    DailyRun(settings, engine, clients, today, outcome).run(record)


def _schedule(settings: Settings, today: dt.date) -> int:
    """--schedule: one scheduler run under its own locks (the daily report holds others)."""
    with (run_lock(settings.paths.root / SCHEDULE_LOCK, settings.lock_timeout_seconds),
          database_lock(settings.db_url, settings.lock_timeout_seconds, purpose="schedule")):
        now = dt.datetime.now(dt.timezone.utc)  # after the wait: the run acts on its time
        engine = make_engine(settings.db_url)
        create_tables(engine)
        sending = not settings.dry_run and settings.slack_token and settings.slack_channel
        slack = (partial(make_slack_client, settings.slack_token, settings.slack_api_url,
                         retries=settings.slack_max_retries) if sending else None)
        outcome = run_schedule(settings, engine, make_idle_clients(settings, today), slack, now)
    if outcome.problems:
        print(f"partial: {'; '.join(outcome.problems)}", file=sys.stderr)
        return EXIT_PARTIAL
    taken = sum(1 for a in outcome.actions if a.result == "ok")
    planned = len(outcome.actions) if not outcome.acting else taken
    print(f"ok: schedule {'took' if outcome.acting else 'would take'} {planned} action(s); "
          f"{settings.paths.runs / (outcome.run_id + '.json')}")
    return EXIT_OK


def _write_demo_labels(settings: Settings) -> int:
    """--write-demo-labels: the demo's planted events as a labels file (nothing else runs)."""
    last = settings.day
    first = settings.backtest_from or last - dt.timedelta(days=DEMO_LABEL_DAYS - 1)
    incidents = planted_incidents(first, last, settings.demo_scale)
    rows = write_labels(settings.write_demo_labels, incidents)
    print(f"ok: {rows} planted events of {first}..{last} in {settings.write_demo_labels}")
    return EXIT_OK


def _check_slack_settings(settings: Settings) -> None:
    """A token without a channel would post nothing, every day, with exit code 0."""
    if settings.slack_token and not settings.slack_channel and not settings.dry_run:
        raise ConfigError("SLACK_BOT_TOKEN is set but COST_TRACKING_SLACK_CHANNEL is not: set the "
                          "channel to post to (a channel ID such as C0123456789, or a name)")


def _warn_unknown_environment(environ: Mapping[str, str]) -> None:
    """A misspelt COST_TRACKING_ variable would be ignored silently: name it in the log."""
    known = {spec.env_var for spec in SETTINGS} | {ENV_PREFIX + "CONFIG"}
    unknown = sorted(name for name in environ if name.startswith(ENV_PREFIX)
                     and name not in known and not name.startswith(ENV_PREFIX + "TEST_"))
    if unknown:
        log.warning("ignoring unknown environment variable(s) %s: not settings of the bot "
                    "(--help lists them)", ", ".join(unknown))


def _write_record(record: RunRecord, runs_dir: Path) -> None:
    """The run record, unless the disk refuses it too: then the log says so and the run's
    own error (the same full disk, say) stays the one line it ends with."""
    try:
        record.write(runs_dir)
    except OutputError as exc:
        log.error("run record not written: %s", exc, extra=FILE_ONLY)


def _secrets(settings: Settings) -> tuple[str, ...]:
    """Values the logs must never show, beyond those SecretMask finds in the environment."""
    secrets = [settings.slack_token]
    try:
        secrets.append(make_url(settings.db_url).password)
    except ArgumentError:
        pass
    return tuple(str(s) for s in secrets if s)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None,
         today: dt.date | None = None) -> int:
    environ = os.environ if environ is None else environ
    today = today or dt.datetime.now(dt.timezone.utc).date()
    args = build_parser().parse_args(argv)
    flags: dict[str, Any] = {k: v for k, v in vars(args).items() if v not in (None, False)}
    try:
        settings = load_settings(flags, environ, today)
        _check_slack_settings(settings)
        if settings.write_demo_labels is None:
            check_writable(settings.output_dir)
        if settings.labels is not None and settings.backtest_from is not None:
            procBacktest.check_labels_stored(settings.labels, settings.db_url, settings.metric,
                                             settings.backtest_from, settings.day, settings.rules)
    except CostTrackingError as exc:  # settings, or the labels: nothing written yet
        setup_logging(None)
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if settings.write_demo_labels is not None:
        return _write_demo_labels(settings)

    setup_logging(settings.paths.logs, settings.log_max_bytes,
                  extra_secrets=_secrets(settings), verbose=args.verbose)
    _warn_unknown_environment(environ)
    if settings.schedule_run:
        try:
            return _schedule(settings, today)
        except CostTrackingError as exc:
            log.error("%s", exc, extra=FILE_ONLY)
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
        except Exception as exc:  # noqa: BLE001 - the last line of defence: log and exit 1
            summary = f"unexpected {type(exc).__name__}: {first_line(exc)}"
            log.error("%s", summary, exc_info=True, extra=FILE_ONLY)
            print(f"error: {summary} (traceback in {settings.paths.logs / LOG_FILE_NAME})",
                  file=sys.stderr)
            return EXIT_UNEXPECTED
    record = RunRecord(date=settings.day.isoformat() if settings.backtest_from is None
                       else f"backtest-{settings.backtest_from}_{settings.day}",
                       scheduled=(not flags.get("date") and not settings.dry_run
                                  and not settings.skip_fetch and settings.backtest_from is None))
    runs_dir = settings.paths.runs
    outcome = Outcome()
    log.info("run for %s (%s, db %s, output %s%s)", settings.day,
             SOURCE_NAMES.get(settings.source, settings.source), mask_url(settings.db_url),
             settings.output_dir, ", dry run" if settings.dry_run else "")
    try:
        with (run_lock(settings.paths.lock, settings.lock_timeout_seconds),
              database_lock(settings.db_url, settings.lock_timeout_seconds)):
            try:
                _run(settings, record, today, outcome)
            finally:
                record.finish_with(outcome.problems)
                _write_record(record, runs_dir)
    except LockedError as exc:
        # The run holding the lock owns runs/<date>.json: leave it alone.
        log.error("%s", exc, extra=FILE_ONLY)
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except CostTrackingError as exc:
        # stderr gets the one line below; the log file the same line and, with --verbose,
        # the traceback.
        log.error("%s", exc, extra=FILE_ONLY)
        log.debug("traceback", exc_info=True, extra=FILE_ONLY)
        record.finish(exc.exit_code, FAILED, str(exc))
        _write_record(record, runs_dir)
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - the last line of defence: log and exit 1
        summary = f"unexpected {type(exc).__name__}: {first_line(exc)}"
        log.error("%s", summary, exc_info=True, extra=FILE_ONLY)
        record.finish(EXIT_UNEXPECTED, FAILED, summary)
        _write_record(record, runs_dir)
        print(f"error: {summary} (traceback in {settings.paths.logs / LOG_FILE_NAME})",
              file=sys.stderr)
        return EXIT_UNEXPECTED
    if outcome.problems:
        print(f"partial: {'; '.join(outcome.problems)}", file=sys.stderr)
        return EXIT_PARTIAL
    if settings.backtest_from is not None:
        print(f"ok: backtest {settings.backtest_from}..{settings.day}")
    else:
        print(f"ok: report for {settings.day} in {settings.paths.report_dir(settings.day)}")
    return EXIT_OK


if __name__ == "__main__":
    exit_code = main()
    stop_early_plot_workers()
    # The interpreter's last garbage collection would walk every object of the run
    # (pandas, SQLAlchemy, boto3: ~0.2 s) only to free memory the process is about to
    # give back whole; frozen objects are left to the exit. Files, logs and locks are
    # closed by then (context managers, atexit), so nothing is lost.
    gc.freeze()
    sys.exit(exit_code)
