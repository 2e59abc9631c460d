#!/usr/bin/env python3
"""The driver: flags -> Settings -> stages -> exit code.

Run daily from cron. Stages: ingest (Cost Explorer or the demo account -> database),
detect and summarise (pure), plot (site folder), publish (S3), message and deliver (Slack).
Every run leaves <output>/runs/<date>.json; errors become one line and an exit code.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from _util.alert_kinds import CONTINUING
from _util.errors import (EXIT_OK, EXIT_PARTIAL, EXIT_UNEXPECTED, ConfigError,
                          CostTrackingError, DeliveryError, LockedError, SourceError,
                          StoreError)
from _util.logging_setup import FILE_ONLY, LOG_FILE_NAME, setup_logging
from _util.run.run_record import RunRecord
from _util.settings import ENV_PREFIX, SETTINGS, Settings, load_settings

log = logging.getLogger("runCostReporting")

# An undelivered digest is sent by a later run only while it is still news.
PENDING_MAX_AGE_DAYS = 7

EXIT_CODES_HELP = """exit codes:
  0  everything delivered (or nothing to deliver: --dry-run, no Slack token)
  1  unexpected error (traceback in <output>/logs/cost_tracking.log)
  2  settings, usage, credentials, permissions or database problem (nothing was
     analysed), or Cost Explorer failed and the database holds nothing to report
  3  delivery partial: Slack or S3 failed after retries, or Cost Explorer failed
     (down, or an answer that cannot be stored) and the report was made from stored,
     possibly stale, data (about the newest stored day when the run's day is missing)
  4  another run holds the lock for this output folder
     (waited COST_TRACKING_LOCK_TIMEOUT_SECONDS)
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
                        help="use the built-in demo account instead of AWS Cost Explorer")
    parser.add_argument("--dry-run", action="store_true",
                        help="nothing leaves the machine: no Slack post, no S3 upload")
    parser.add_argument("--config", metavar="FILE",
                        help="TOML file of settings (keys as in the README; also [[mute]] entries)")
    parser.add_argument("--force", action="store_true",
                        help="post to Slack even if this day was already delivered to the channel")
    parser.add_argument("--skip-fetch", action="store_true",
                        help="do not call Cost Explorer; analyse what the database holds")
    parser.add_argument("--z", metavar="Z",
                        help="z-score threshold for spikes (default 3.0; COST_TRACKING_Z)")
    parser.add_argument("--backtest-from", type=_date, metavar="YYYY-MM-DD",
                        help="replay the rules for every day from this date to --date over the "
                             "stored history (no fetch, no Slack, no upload)")
    parser.add_argument("--verbose", action="store_true", help="debug logging on stderr")
    return parser


@dataclass
class Outcome:
    """What went only partly right; any entry makes the exit code 3."""

    problems: list[str] = field(default_factory=list)


def _run_pipeline(settings: Settings, record: RunRecord, today: dt.date, outcome: Outcome) -> None:
    from _util.store.database import create_tables, make_engine
    from _util.store.cost_store import load_history

    engine = make_engine(settings.db_url)
    create_tables(engine)
    if settings.backtest_from is not None:
        # No fetch, no Slack, no upload: the backtest reads what the database holds.
        import procBacktest
        procBacktest.run_backtest(settings, engine, history_loader=load_history, record=record)
        return
    failure = None
    if not settings.skip_fetch:
        failure = _ingest(settings, engine, record, today, outcome)
        if failure is None:
            _catch_up(settings, engine, record, today, outcome)
    report_settings = settings
    if failure is not None:
        report_settings = replace(settings, day=_stale_report_day(settings, engine, failure, outcome))
    history = _load_day(report_settings, engine, record)
    _analyse_and_deliver(report_settings, engine, history, record, outcome,
                         stale=failure is not None, run_day=settings.day)


def _load_day(settings: Settings, engine, record: RunRecord):
    """The history frame of the lookback window ending on `settings.day`, the day the
    record's report is about."""
    from _util.store.cost_store import load_history

    with record.stage("load") as stage:
        start = settings.day - dt.timedelta(days=settings.lookback_days - 1)
        history = load_history(engine, settings.metric, start, settings.day)
        stage.counts["rows"] = len(history)
    record.report_day = settings.day.isoformat()
    return history


def missed_days(runs_dir: Path, day: dt.date, today: dt.date,
                stored_until: dt.date | None) -> dict[dt.date, dict]:
    """Days before `day`, and no more than PENDING_MAX_AGE_DAYS before yesterday, whose
    own run could not fetch them and so reported an earlier day or nothing (its record:
    the ingest stage failed, `report_day` is not the record's day), and that the database
    now holds (up to `stored_until`), oldest first, each with that failed run's record.

    A run that reported its own day from stored data (a re-run of a stored day while Cost
    Explorer was down) missed nothing."""
    if stored_until is None:
        return {}
    oldest = max(day, today - dt.timedelta(days=1)) - dt.timedelta(days=PENDING_MAX_AGE_DAYS)
    missed = {}
    for back in range((day - oldest).days, 0, -1):
        candidate = day - dt.timedelta(days=back)
        path = runs_dir / f"{candidate.isoformat()}.json"
        if candidate > stored_until or not path.is_file():
            continue
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        fetch_failed = any(s.get("name") == "ingest" and s.get("status") == "failed"
                           for s in record.get("stages", []))
        if fetch_failed and record.get("report_day") != candidate.isoformat():
            missed[candidate] = record
    return missed


def _catch_up(settings: Settings, engine, record: RunRecord, today: dt.date,
              outcome: Outcome) -> None:
    """Report the recent days whose run could not fetch them, now that their costs are
    stored, before the run's own day.

    That run reported an earlier, stored day instead (marked stale, in that day's folder)
    or nothing; without this a one-day spike on the missed day would never be reported.
    Each missed day gets its pages, report.json and digest, and a new runs/<day>.json
    that keeps the failed run's outcome under `replaces`; the folders the stale runs
    wrote into are made again from fresh data, without posting.
    """
    from _util.store.cost_store import read_source_state

    state = read_source_state(engine, settings.metric)
    runs_dir = settings.output_dir / "runs"
    days = missed_days(runs_dir, settings.day, today, state.last_day if state else None)
    if not days:
        return
    if settings.dry_run:
        # Nothing would be posted; the real run after it catches up.
        log.info("not catching up in a dry run: %s missed (the next real run reports them)",
                 ", ".join(d.isoformat() for d in days))
        return
    with record.stage("catch_up") as stage:
        stage.counts["days"] = [d.isoformat() for d in days]
        stale_folders = set()
        for missed, failed in days.items():
            log.info("catching up on %s: its run could not fetch it; reporting it now", missed)
            if failed.get("report_day"):
                stale_folders.add(dt.date.fromisoformat(failed["report_day"]))
            day_record = RunRecord(date=missed.isoformat(), replaces={
                k: failed.get(k) for k in ("started_at", "exit_code", "status", "error",
                                           "ce_requests", "report_day")})
            problems = _report_again(settings, engine, missed, day_record, deliver=True)
            # Written either way: a caught-up day, failed or not, is not tried again.
            day_record.write(runs_dir)
            outcome.problems += [f"catching up on {missed}: {p}" for p in problems]
        restored = sorted(stale_folders - set(days))
        stage.counts["pages_remade"] = [d.isoformat() for d in restored]
        for day in restored:
            problems = _report_again(settings, engine, day, RunRecord(date=day.isoformat()),
                                     deliver=False)
            outcome.problems += [f"making the pages of {day} again: {p}" for p in problems]


def _report_again(settings: Settings, engine, day: dt.date, record: RunRecord,
                  deliver: bool) -> list[str]:
    """Load, analyse, render and publish `day` (and post its digest, replacing any
    earlier one, if `deliver`); the problems met. An error ends only this day's report:
    the run's own day still gets reported."""
    day_settings = replace(settings, day=day, force=True)
    outcome = Outcome()
    try:
        history = _load_day(day_settings, engine, record)
        _analyse_and_deliver(day_settings, engine, history, record, outcome, stale=False,
                             run_day=day, deliver=deliver)
        record.finish(EXIT_PARTIAL if outcome.problems else EXIT_OK,
                      "partial" if outcome.problems else "ok",
                      "; ".join(outcome.problems) or None)
    except Exception as exc:  # noqa: BLE001 - logged; the run's own day comes next
        summary = _first_line(exc)
        log.error("reporting %s again failed: %s", day, summary, exc_info=True, extra=FILE_ONLY)
        record.finish(getattr(exc, "exit_code", EXIT_UNEXPECTED), "failed", summary)
        outcome.problems.append(summary)
    return outcome.problems


def _stale_report_day(settings: Settings, engine, failure: Exception, outcome: Outcome) -> dt.date:
    """The day a report from stored data can be about, after Cost Explorer failed.

    The run's day is usually not stored yet (a daily run fetches it); analysing it anyway
    would read every service as $0 and alert a spike down on each. The report is then
    about the newest day the database holds, marked stale. With nothing stored at all
    there is nothing to report: the Cost Explorer error ends the run (exit 2); so too when
    what is stored came from another account or grouping (the demo's, say).
    """
    from _util.store.cost_store import read_source_state

    state = read_source_state(engine, settings.metric)
    source = ("demo" if settings.demo else "aws", settings.group_by,
              ",".join(settings.exclude_record_types))
    if (state is None or state.first_day > settings.day
            or (state.account, state.group_by, state.record_types) != source):
        raise failure
    if state.last_day >= settings.day:
        return settings.day
    note = (f"the database holds no costs for {settings.day} yet: the report is about "
            f"{state.last_day}, the newest stored day")
    log.warning("%s", note)
    outcome.problems.append(note)
    return state.last_day


def _ingest(settings: Settings, engine, record: RunRecord, today: dt.date,
            outcome: Outcome) -> Exception | None:
    """Fetch new costs; returns Cost Explorer's error when it failed for good (the report
    is then made from stored, possibly stale, data), else None.

    A response that cannot be stored (UnusableResponse) counts as a failure too: nothing
    of it is written, so stored history never changes silently.
    """
    import procAmzData
    from _util.sources.cost_explorer import SourceUnavailable, make_ce_client
    from _util.sources.demo_account import DemoCostExplorer, scaled_account

    with record.stage("ingest") as stage:
        client = (DemoCostExplorer(today, scaled_account(settings.demo_scale)) if settings.demo
                  else make_ce_client())
        try:
            result = procAmzData.ingest(
                engine, client, day=settings.day, today=today, metric=settings.metric,
                group_by=settings.group_by, lookback_days=settings.lookback_days,
                exclude_record_types=settings.exclude_record_types,
                account="demo" if settings.demo else "aws")
        except (SourceError, StoreError) as exc:
            record.ce_requests = stage.counts["ce_requests"] = exc.ce_requests
            if not isinstance(exc, SourceUnavailable):
                raise
            log.error("%s; reporting from stored data", exc)
            outcome.problems.append(str(exc))
            stage.status = "failed"
            stage.counts["error"] = str(exc)
            return exc
        record.ce_requests = result.ce_requests
        record.rows_upserted = result.rows_upserted
        stage.counts.update(ce_requests=result.ce_requests, rows_upserted=result.rows_upserted,
                            fetched=f"{result.plan.start}..{result.plan.end}" if result.plan.start else None,
                            plan=result.plan.reason)
    return None


def _analyse_and_deliver(settings: Settings, engine, history, record: RunRecord,
                         outcome: Outcome, stale: bool, run_day: dt.date,
                         deliver: bool = True) -> None:
    import procAmzAlerts
    import procSummaries
    from _util.report import Report

    with record.stage("detect") as stage:
        alerts = procAmzAlerts.detect_alerts(history, settings.day, settings.rules)
        stage.counts["alerts"] = len(alerts)
    with record.stage("summarise"):
        summary = procSummaries.summarise(history, settings.day, settings.lookback_days)
    report = Report(day=settings.day, metric=settings.metric, group_by=settings.group_by,
                    rules=settings.rules, summary=summary, alerts=alerts, stale=stale)
    report = _apply_lifecycle(settings, engine, report, history, record)
    _render_publish_deliver(settings, engine, report, history, record, outcome, run_day,
                            deliver)


def _apply_lifecycle(settings: Settings, engine, report, history, record: RunRecord):
    """Episode status (new/continuing) and mutes."""
    import procLifecycle

    with record.stage("lifecycle") as stage:
        report = procLifecycle.apply(report, engine, settings.metric, settings.mutes, history)
        stage.counts.update(continuing=sum(a.status == CONTINUING for a in report.alerts),
                            muted=sum(a.muted for a in report.alerts))
        return report


def _site_url(settings: Settings) -> str | None:
    if settings.site_url:
        return settings.site_url
    if settings.s3_bucket:
        import boto3
        from _util.site.publish import website_url
        region = boto3.session.Session().region_name or "us-east-1"
        return website_url(settings.s3_bucket, region, settings.s3_prefix)
    return None


def _render_publish_deliver(settings: Settings, engine, report, history, record: RunRecord,
                            outcome: Outcome, run_day: dt.date, deliver: bool = True) -> None:
    """Plots and pages for the report's day; the Slack payload and delivery are the run's
    (`run_day`), which differs only when a stale report is about an earlier stored day.
    Without `deliver` the pages are made and published again, nothing is posted."""
    import procPlotting
    from _util.slack import message as slack_message
    from _util.report import report_to_dict

    site_url = _site_url(settings)
    with record.stage("plot") as stage:
        rendered = procPlotting.render(report, history, settings.site_dir, site_url,
                                       workers=settings.plot_workers,
                                       max_alert_plots=settings.max_alert_plots)
        report = rendered.report
        stage.counts["plots_rendered"] = rendered.plots_rendered
        stage.counts["alerts_not_plotted"] = rendered.alerts_not_plotted
    with record.stage("message") as stage:
        message = slack_message.build_message(report, settings.account_label)
        files = list(rendered.files) + _write_message(settings, message, run_day)
        stage.counts["blocks"] = len(message.blocks)

    uploaded = _publish(settings, files, record, outcome)
    if settings.s3_bucket and not settings.dry_run and not uploaded:
        # The links (to the bucket's website or to COST_TRACKING_SITE_URL in front of it)
        # would open pages that never arrived: send the message without them.
        report = slack_message.without_links(report)
        message = slack_message.build_message(report, settings.account_label)
        _write_message(settings, message, run_day)
        # render wrote report.json with the links; the local copy says what was sent.
        _write_report_json(settings, report_to_dict(report))
    if deliver:
        _deliver(replace(settings, day=run_day), engine, message, record, outcome)


def _write_report_json(settings: Settings, data: dict) -> None:
    path = settings.site_dir / "reports" / settings.day.isoformat() / "report.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_message(settings: Settings, message, run_day: dt.date) -> list[Path]:
    """Write the exact payload (slack/<run day>.json) and its preview page (in the report's
    folder); returns the site files written."""
    from _util.slack.preview import preview_page

    payload = message.payload(settings.slack_channel or "")
    slack_dir = settings.output_dir / "slack"
    slack_dir.mkdir(parents=True, exist_ok=True)
    (slack_dir / f"{run_day.isoformat()}.json").write_text(
        json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    preview = settings.site_dir / "reports" / settings.day.isoformat() / "slack.html"
    preview.parent.mkdir(parents=True, exist_ok=True)
    posted = False if settings.dry_run or not (settings.slack_token and settings.slack_channel) else None
    preview.write_text(preview_page(payload, settings.day, posted), encoding="utf-8")
    return [preview]


def _publish(settings: Settings, files: list[Path], record: RunRecord, outcome: Outcome) -> bool:
    if not settings.s3_bucket or settings.dry_run:
        return False
    from _util.site.publish import make_s3_client, publish

    with record.stage("publish") as stage:
        try:
            result = publish(files, settings.site_dir, settings.s3_bucket, settings.s3_prefix,
                             make_s3_client())
        except DeliveryError as exc:
            log.error("%s", exc)
            outcome.problems.append(str(exc))
            stage.status = "failed"
            stage.counts["error"] = str(exc)
            return False
        stage.counts["uploaded"] = result.uploaded
    return True


def _deliver(settings: Settings, engine, message, record: RunRecord, outcome: Outcome) -> None:
    from _util.store import delivery_log
    from _util.slack.delivery import make_slack_client

    if settings.dry_run:
        log.info("dry run: Slack message written to %s, not posted",
                 settings.output_dir / "slack" / f"{settings.day}.json")
        return
    if not settings.slack_token or not settings.slack_channel:
        missing = "SLACK_BOT_TOKEN" if not settings.slack_token else "COST_TRACKING_SLACK_CHANNEL"
        log.info("%s is not set: Slack message written, not posted", missing)
        return
    with record.stage("deliver") as stage:
        client = make_slack_client(settings.slack_token, settings.slack_api_url,
                                   retries=settings.slack_max_retries)
        try:
            for pending in delivery_log.pending_deliveries(engine, exclude_day=settings.day):
                if pending.channel != settings.slack_channel:
                    continue
                if (settings.day - pending.day).days > PENDING_MAX_AGE_DAYS:
                    log.warning("the digest of %s for %s was never delivered; it is older than "
                                "%d days and stays unsent (re-run with --date %s --force to send it)",
                                pending.day, pending.channel, PENDING_MAX_AGE_DAYS, pending.day)
                    continue
                delivery_log.deliver_once(engine, client, pending.day, pending.channel,
                                          pending.payload, force=False)
                log.info("delivered the pending digest of %s", pending.day)
            result = delivery_log.deliver_once(
                engine, client, settings.day, settings.slack_channel,
                message.payload(settings.slack_channel), force=settings.force)
        except DeliveryError as exc:
            log.error("%s", exc)
            outcome.problems.append(str(exc))
            stage.status = "failed"
            stage.counts["error"] = str(exc)
            return
        stage.counts["posted"] = result.posted
        if result.posted:
            log.info("posted to Slack %s (ts %s)", settings.slack_channel, result.ts)
        else:
            log.info("not posted: %s (use --force to post again)", result.skipped_reason)


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


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else "(no message)"


def _secrets(settings: Settings) -> tuple[str, ...]:
    """Values the logs must never show, beyond those SecretMask finds in the environment."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

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
    except ConfigError as exc:
        setup_logging(None)
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code

    setup_logging(settings.output_dir / "logs", settings.log_max_bytes,
                  extra_secrets=_secrets(settings), verbose=args.verbose)
    _warn_unknown_environment(environ)
    record = RunRecord(date=settings.day.isoformat() if settings.backtest_from is None
                       else f"backtest-{settings.backtest_from}_{settings.day}")
    outcome = Outcome()
    from _util.store.database import mask_url
    from _util.run.run_lock import run_lock

    log.info("run for %s (%s, db %s, output %s%s)", settings.day,
             "demo account" if settings.demo else "AWS Cost Explorer", mask_url(settings.db_url),
             settings.output_dir, ", dry run" if settings.dry_run else "")
    try:
        with run_lock(settings.output_dir / ".run.lock", settings.lock_timeout_seconds):
            try:
                _run_pipeline(settings, record, today, outcome)
            finally:
                code = EXIT_PARTIAL if outcome.problems else EXIT_OK
                record.finish(code, "partial" if outcome.problems else "ok",
                              "; ".join(outcome.problems) or None)
                record.write(settings.output_dir / "runs")
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
        record.finish(exc.exit_code, "failed", str(exc))
        record.write(settings.output_dir / "runs")
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - the last line of defence: log and exit 1
        summary = f"unexpected {type(exc).__name__}: {_first_line(exc)}"
        log.error("%s", summary, exc_info=True, extra=FILE_ONLY)
        record.finish(EXIT_UNEXPECTED, "failed", summary)
        record.write(settings.output_dir / "runs")
        print(f"error: {summary} (traceback in {settings.output_dir / 'logs' / LOG_FILE_NAME})",
              file=sys.stderr)
        return EXIT_UNEXPECTED
    if outcome.problems:
        print(f"partial: {'; '.join(outcome.problems)}", file=sys.stderr)
        return EXIT_PARTIAL
    if settings.backtest_from is not None:
        print(f"ok: backtest {settings.backtest_from}..{settings.day}")
    else:
        print(f"ok: report for {settings.day} in {settings.site_dir / 'reports' / settings.day.isoformat()}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
