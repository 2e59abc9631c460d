"""The stages of a daily run, in order, and what each may leave behind.

ingest (source -> database) -> catch up (missed days) -> load -> detect -> summarise ->
lifecycle -> plot (site) -> message -> publish (S3) -> deliver (Slack). Each stage is
timed in the run record; the policies it follows (catching up, stale days, pending
digests) are modules of their own, and the work is the proc* modules' pure functions.
A problem that leaves the run only partly done is added to the `Outcome` (exit code 3);
an error that ends the run propagates to the driver.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import botocore.exceptions
import pandas as pd
from sqlalchemy.engine import Engine

import procAmzAlerts
import procAmzData
import procLifecycle
import procPlotting
import procSummaries
from _util import sections, weekly
from _util.alert_kinds import CONTINUING
from _util.atomic_files import write_text
from _util.errors import (
    EXIT_UNEXPECTED,
    CostTrackingError,
    DeliveryError,
    SourceError,
    SourceUnavailable,
    StoreError,
)
from _util.logging_setup import FILE_ONLY
from _util.money import in_currency
from _util.paths import OutputPaths
from _util.report import Report, with_group_names
from _util.run import routing
from _util.run.catch_up import plan_catch_up
from _util.run.job import Clients, RunJob
from _util.run.pending import deliver_pending
from _util.run.run_record import FAILED, INGEST_STAGE, RunRecord, StageRecord, replaced
from _util.run.stale_day import require_stored, stale_report_day
from _util.sections.base import DayContext, public_url
from _util.sections.tag_coverage import NAME as COVERAGE
from _util.settings import Settings
from _util.site import pages as site_pages
from _util.site.plot_workers import PlotWorkers
from _util.site.publish import publish, website_url
from _util.slack import message as slack_message
from _util.slack.delivery import with_metadata
from _util.slack.preview import preview_page
from _util.slack.weekly_message import build_weekly_message, coverage_line
from _util.sources.base import CostQuery
from _util.sources.organizations import ORGANIZATIONS, organization_account_names
from _util.store import delivery_log
from _util.store.account_names import (
    LINKED_ACCOUNT,
    load_account_names,
    save_account_names,
)
from _util.store.cost_store import read_source_state, stored_currency
from _util.store.database import mask_url
from _util.store.history_cache import load_cached_history

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChannelMessage:
    """A message as written: what is posted to its digest's channel, and its preview
    (the daily digest) or page (the weekly summary, `kind` WEEKLY)."""

    digest: routing.Digest
    message: slack_message.SlackMessage
    preview: Path
    kind: str = delivery_log.DAILY


@dataclass(frozen=True)
class ChannelWeek:
    """One channel's weekly summary and the page written for it."""

    digest: routing.Digest
    summary: weekly.WeeklySummary
    page: Path


@dataclass
class Outcome:
    """What went only partly right; any entry makes the exit code 3."""

    problems: list[str] = field(default_factory=list)


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else "(no message)"


@dataclass
class DailyRun:
    """One run of the bot for `settings.day`: the database, the clients and the site's
    public URL, made once, and what went wrong so far."""

    settings: Settings
    engine: Engine
    clients: Clients
    today: dt.date
    outcome: Outcome = field(default_factory=Outcome)
    # The run's plot workers, started by `run` before anything else (see PlotWorkers).
    plot_workers: PlotWorkers | None = None

    @cached_property
    def site_url(self) -> str | None:
        """The site's public base URL: the setting, or the bucket's website endpoint."""
        s = self.settings
        if s.site_url:
            return s.site_url
        if s.s3_bucket:
            import boto3  # with the first client: see cost_explorer.make_ce_client

            region = boto3.session.Session().region_name or "us-east-1"
            return website_url(s.s3_bucket, region, s.s3_prefix)
        return None

    @property
    def paths(self) -> OutputPaths:
        return self.settings.paths

    @property
    def digest_origin(self) -> str:
        """What tells this installation's digests from another bot's in one channel: the
        database it reports from (password masked)."""
        return mask_url(self.settings.db_url)

    @property
    def query(self) -> CostQuery:
        s = self.settings
        return CostQuery(s.metric, s.group_by, s.exclude_record_types)

    def run(self, record: RunRecord) -> None:
        """Fetch, catch up, and report the run's day (or, when the source failed, the
        newest stored day, marked stale).

        The plot workers start first (they are forked: before the fetch opens threads
        and connections of its own; when run as a script, the driver forked them before
        its imports and they are taken over here) and ready matplotlib while the run
        fetches and detects; they stop when the run ends, error or not."""
        with PlotWorkers(self.settings.plot_workers) as self.plot_workers:
            self.fetch_and_report(record)

    def fetch_and_report(self, record: RunRecord) -> None:
        day = self.settings.day
        job = RunJob(report_day=day, run_day=day, force=self.settings.force)
        failure = None
        if self.clients.fetches:
            failure = self.ingest(record)
            self.read_account_names(record)
            if failure is None:
                self.catch_up(record)
        else:
            require_stored(read_source_state(self.engine, self.settings.metric), day)
        if failure is not None:
            job = replace(job, report_day=self.stale_day(failure), stale=True)
        elif self.clients.fetches:
            job = replace(job, report_day=self.newest_fetched_day(day))
        self.report(job, record)

    # ---- ingest and the policies around it ------------------------------------------

    def ingest(self, record: RunRecord) -> Exception | None:
        """Fetch new costs; returns the source's error when it failed for good (the
        report is then made from stored, possibly stale, data), else None.

        An answer that cannot be stored (UnusableResponse) counts as a failure too:
        nothing of it is written, so stored history never changes silently.
        """
        with record.stage(INGEST_STAGE) as stage:
            try:
                result = procAmzData.ingest(
                    self.engine, self.clients.source, self.query, day=self.settings.day,
                    today=self.today, lookback_days=self.settings.lookback_days)
            except (SourceError, StoreError) as exc:
                # `ce_requests` (the run record's key) counts any source's requests.
                record.ce_requests = stage.counts["ce_requests"] = exc.requests
                if not isinstance(exc, SourceUnavailable):
                    raise
                self.partly_failed(stage, exc, "; reporting from stored data")
                return exc
            record.ce_requests = result.requests
            record.rows_upserted = result.rows_upserted
            plan = result.plan
            stage.counts.update(ce_requests=result.requests, rows_upserted=result.rows_upserted,
                                fetched=f"{plan.start}..{plan.end}" if plan.start else None,
                                plan=plan.reason)
        return None

    def partly_failed(self, stage: StageRecord, exc: Exception, then: str = "") -> None:
        """A stage that failed without ending the run: logged, the stage marked failed
        with its error, and a problem of the run's (exit 3)."""
        log.error("%s%s", exc, then)
        self.outcome.problems.append(str(exc))
        stage.status = FAILED
        stage.counts["error"] = str(exc)

    def newest_fetched_day(self, day: dt.date) -> dt.date:
        """`day`, or the newest stored day when the source has no costs for `day` yet (the
        Cost and Usage Report lags by hours to a day): reading an unstored day would make
        every service $0 and alert a spike down on each."""
        state = read_source_state(self.engine, self.settings.metric)
        if state is None or state.last_day >= day:
            return day
        if state.last_day < state.first_day:
            raise SourceError(f"the cost source ({self.clients.source.name}) holds no costs "
                              f"up to {day}: nothing to report")
        log.warning("the cost source has no costs for %s yet: the report is about %s, the "
                    "newest day it has", day, state.last_day)
        return state.last_day

    def stale_day(self, failure: Exception) -> dt.date:
        query = self.query
        day, note = stale_report_day(
            read_source_state(self.engine, query.metric),
            (self.clients.source.account, query.group_by, query.record_types),
            self.settings.day, failure)
        if note:
            self.outcome.problems.append(note)
        return day

    def catch_up(self, record: RunRecord) -> None:
        """Report the recent days whose run could not fetch them, now that their costs
        are stored, before the run's own day.

        That run reported an earlier, stored day instead (marked stale, in that day's
        folder) or nothing; without this a one-day spike on the missed day would never be
        reported. Each missed day gets its pages, report.json and digest, and a new
        runs/<day>.json that keeps the failed run's outcome under `replaces`; the folders
        the stale runs wrote into are made again from fresh data, without posting.
        """
        state = read_source_state(self.engine, self.settings.metric)
        plan = plan_catch_up(self.paths.runs, self.settings.day, self.today,
                             state.last_day if state else None)
        if not plan.missed:
            return
        if self.settings.dry_run:
            # Nothing would be posted; the real run after it catches up.
            log.info("not catching up in a dry run: %s missed (the next real run reports "
                     "them)", ", ".join(d.isoformat() for d in plan.missed))
            return
        with record.stage("catch_up") as stage:
            stage.counts["days"] = [d.isoformat() for d in plan.missed]
            for missed, failed in plan.missed.items():
                log.info("catching up on %s: its run %s; reporting it now", missed,
                         "could not fetch it" if failed else "never started")
                day_record = RunRecord(date=missed.isoformat(),
                                       replaces=replaced(failed) if failed else None)
                # A failed run posted a stale digest under this date: post the fresh one
                # anyway. A run that never started posted nothing: deliver once, as usual
                # (a digest a killed run may have left in Slack is looked for first).
                job = RunJob(missed, missed, force=failed is not None)
                problems = self.report_again(job, day_record)
                # Written either way: a caught-up day, failed or not, is not tried again.
                day_record.write(self.paths.runs)
                self.outcome.problems += [f"catching up on {missed}: {p}" for p in problems]
            stage.counts["pages_remade"] = [d.isoformat() for d in plan.remake]
            for day in plan.remake:
                job = RunJob(day, day, deliver=False, force=True)
                problems = self.report_again(job, RunRecord(date=day.isoformat()))
                self.outcome.problems += [f"making the pages of {day} again: {p}"
                                          for p in problems]

    def report_again(self, job: RunJob, record: RunRecord) -> list[str]:
        """Report an earlier day in a run of its own record; the problems met. An error
        ends only this day's report: the run's own day still gets reported."""
        run = replace(self, outcome=Outcome())
        try:
            run.report(job, record)
            record.finish_with(run.outcome.problems)
        except Exception as exc:  # noqa: BLE001 - logged; the run's own day comes next
            summary = first_line(exc)
            log.error("reporting %s again failed: %s", job.report_day, summary, exc_info=True,
                      extra=FILE_ONLY)
            record.finish(getattr(exc, "exit_code", EXIT_UNEXPECTED), FAILED, summary)
            run.outcome.problems.append(summary)
        return run.outcome.problems

    # ---- one report -----------------------------------------------------------------

    def load(self, day: dt.date, record: RunRecord) -> pd.DataFrame:
        """The history frame detection reads for `day` (its lookback window and the days
        before it that echoes look back on)."""
        with record.stage("load") as stage:
            start = procAmzAlerts.history_start(day, self.settings.rules)
            history = load_cached_history(self.engine, self.settings.metric, start, day,
                                          self.paths.history_cache)
            stage.counts["rows"] = len(history)
        record.report_day = day.isoformat()
        return history

    def analyse(self, job: RunJob, history: pd.DataFrame, record: RunRecord,
                currency: str = "USD") -> Report:
        s = self.settings
        day = job.report_day
        with record.stage("detect") as stage:
            alerts = procAmzAlerts.detect_alerts(history, day, s.rules)
            stage.counts.update(alerts=len(alerts), echoes=sum(a.is_echo for a in alerts))
        with record.stage("summarise"):
            summary = procSummaries.summarise(history, day, s.lookback_days)
        report = Report(day=day, metric=s.metric, group_by=s.group_by, rules=s.rules,
                        summary=summary, alerts=alerts, stale=job.stale, currency=currency)
        with record.stage("lifecycle") as stage:
            report = procLifecycle.apply(report, self.engine, s.metric, s.mutes, history)
            stage.counts.update(new=sum(a.counts_as_new for a in report.alerts),
                                continuing=sum(a.status == CONTINUING for a in report.alerts),
                                muted=sum(a.muted for a in report.alerts))
        if s.group_by == LINKED_ACCOUNT:
            # Account IDs read as "123456789012 (prod-web)" wherever they are shown.
            report = with_group_names(report, load_account_names(self.engine))
        if not sections.analysing():
            return report
        with record.stage("sections") as stage:
            ctx = DayContext(report, history, job, s, self.engine, self.clients)

            def failed(section, exc: Exception) -> None:
                log.error("the %s section failed: %s", section.name, first_line(exc),
                          exc_info=True, extra=FILE_ONLY)
                self.partly_failed(stage, CostTrackingError(
                    f"the {section.name} section failed ({first_line(exc)}); the digest "
                    "goes out without it"))

            found = sections.analyse(ctx, on_error=failed)
            stage.counts["sections"] = sorted(found)
            if ctx.requests.by_section:
                # Billed like the cost fetch's: the run record counts them together.
                stage.counts["requests"] = dict(ctx.requests.by_section)
                record.ce_requests += ctx.requests.total
        return replace(report, sections=found)

    def report(self, job: RunJob, record: RunRecord) -> None:
        """Load, analyse, render and publish `job`'s day, then deliver the digest.

        Plots and pages are the report's day's; the Slack payload and delivery are the
        run's (`job.run_day`), which differs only for a stale report. Without
        `job.deliver` the pages are made and published again, nothing is posted.
        Amounts read in the stored costs' currency throughout (`_util/money.py`)."""
        history = self.load(job.report_day, record)
        currency = stored_currency(self.engine, self.settings.metric, job.report_day)
        with in_currency(currency):
            self.report_in_currency(job, history, record, currency)

    def read_account_names(self, record: RunRecord) -> None:
        """Store the organization's account names before the report shows them, when the
        run reads them from AWS Organizations (grouped by LINKED_ACCOUNT with
        COST_TRACKING_ACCOUNT_NAMES_FROM_ORGANIZATIONS=on: see `Clients`). Organizations
        refusing (no permission, no organization, no credentials) is a warning, never a
        failed run: the names Cost Explorer gave are still shown."""
        if not self.clients.names_accounts:
            return
        with record.stage("account_names") as stage:
            try:
                client = self.clients.organizations
            except botocore.exceptions.BotoCoreError as exc:
                log.warning("no account names from AWS Organizations: %s", exc)
                return
            names = organization_account_names(client)
            stage.counts["accounts"] = save_account_names(self.engine, names, ORGANIZATIONS)
            if names:
                log.info("read %d account names from AWS Organizations", len(names))

    def report_in_currency(self, job: RunJob, history: pd.DataFrame, record: RunRecord,
                           currency: str) -> None:
        s = self.settings
        report = self.analyse(job, history, record, currency)
        with record.stage("plot") as stage:
            rendered = procPlotting.render(report, history, s.site_dir, self.site_url,
                                           workers=s.plot_workers,
                                           max_alert_plots=s.max_alert_plots,
                                           pool=self.plot_workers)
            report = rendered.report
            stage.counts["plots_rendered"] = rendered.plots_rendered
            stage.counts["alerts_not_plotted"] = rendered.alerts_not_plotted
        files = list(rendered.files)
        found = routing.digests(report, history, s.routes, s.slack_channel,
                                s.main_channel_gets, s.lookback_days, self.site_url)
        if s.routes:
            with record.stage("routes") as stage:
                files += routing.write_route_pages(found, history, s.site_dir, self.site_url,
                                                   rendered.alert_pages)
                report = replace(report, routes=routing.slices(found))
                files.append(procPlotting.write_report_json(s.site_dir, report))
                stage.counts["routes"] = {d.name: len(d.report.visible_alerts)
                                          for d in found if d.route}
        with record.stage("message") as stage:
            messages = self.write_messages(found, job)
            files += [m.preview for m in messages]
            stage.counts["blocks"] = len(messages[0].message.blocks)

        weeks = self.weekly_summaries(found, history, job, record)
        files += [w.page for w in weeks]

        uploaded = self.publish(files, record)
        links = uploaded or not self.clients.publishes
        if not links:
            # The links (to the bucket's website or to COST_TRACKING_SITE_URL in front of
            # it) would open pages that never arrived: send the messages without them.
            found = routing.without_links(found)
            messages = self.write_messages(found, job)
            # render wrote report.json with the links; the local copy says what was sent.
            report = replace(slack_message.without_links(report), routes=routing.slices(found))
            procPlotting.write_report_json(s.site_dir, report)
        messages += self.write_weekly_messages(weeks, job, links)
        if job.deliver:
            self.deliver(messages, job, record)

    def weekly_summaries(self, found: list[routing.Digest], history: pd.DataFrame,
                         job: RunJob, record: RunRecord) -> list[ChannelWeek]:
        """On the weekly day, each channel's summary of the seven days ending on the
        report's day (its slice and its alerts, as its daily digests show them), with its
        page written."""
        s = self.settings
        if not weekly.is_weekly_day(job.report_day, s.weekly_day):
            return []
        with record.stage("weekly") as stage:
            first = job.report_day - dt.timedelta(days=weekly.WEEK_DAYS - 1)
            active, _ = procLifecycle.split_mutes(s.mutes, job.report_day)
            by_day = {day: procLifecycle.apply_mutes(alerts, active) for day, alerts in
                      procAmzAlerts.detect_alerts_by_day(history, first, job.report_day,
                                                         s.rules).items()}
            weeks = []
            out = self.paths.report_dir(job.report_day)
            for d in found:
                slice_ = history if d.route is None else routing.slice_history(history, d.route)
                alerts = {day: routing.taken_by(d, day_alerts, s.routes, s.main_channel_gets)
                          for day, day_alerts in by_day.items()}
                summary = weekly.weekly_summary(slice_, job.report_day, alerts)
                page = out / (routing.weekly_page_name(d.route) if d.route else "weekly.html")
                up = "../../../" if d.route else "../../"
                write_text(page, site_pages.weekly_page(
                    summary, None if d.route is None else d.name, up,
                    "../index.html" if d.route else "index.html"))
                weeks.append(ChannelWeek(d, summary, page))
            stage.counts["channels"] = len(weeks)
        return weeks

    def write_weekly_messages(self, weeks: list[ChannelWeek], job: RunJob,
                              links: bool) -> list[ChannelMessage]:
        """Each weekly summary as its channel's message (slack/<date>.weekly.json, or
        slack/<date>.<route>.weekly.json), linking its page when the site has it."""
        s = self.settings
        written = []
        for week in weeks:
            d, summary, page = week.digest, week.summary, week.page
            rel = page.relative_to(s.site_dir).as_posix()
            url = public_url(self.site_url, rel) if links else None
            message = build_weekly_message(summary, d.label(s.account_label), d.mentions, url,
                                           coverage_line(d.report.sections.get(COVERAGE)))
            channel = d.channel or ""
            payload = with_metadata(message.payload(channel), job.run_day, channel,
                                    delivery_log.delivery_key(self.digest_origin,
                                                              delivery_log.WEEKLY))
            name = "weekly" if d.route is None else f"{d.name}.weekly"
            write_text(self.paths.slack_payload(job.run_day, name),
                       json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
            written.append(ChannelMessage(d, message, page, delivery_log.WEEKLY))
        return written

    def write_messages(self, found: list[routing.Digest], job: RunJob) -> list[ChannelMessage]:
        """Each channel's message: its exact payload (slack/<run day>.json for the main
        channel, slack/<run day>.<route>.json for a route), posted or not, and its preview
        page; a quiet route gets none (logged)."""
        s = self.settings
        written = []
        for d in found:
            if d.quiet:
                log.info("route %s (%s): no alerts today, no message (post_when_quiet = "
                         "true posts one anyway)", d.name, d.channel)
                continue
            message = slack_message.build_message(d.report, d.label(s.account_label),
                                                  mentions=d.mentions)
            channel = d.channel or ""
            payload = with_metadata(message.payload(channel), job.run_day, channel,
                                    self.digest_origin)
            name = None if d.route is None else d.name
            write_text(self.paths.slack_payload(job.run_day, name),
                       json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
            preview = (self.paths.slack_preview(job.report_day) if d.route is None else
                       self.paths.report_dir(job.report_day) / routing.preview_name(d.route))
            posted = None if self.clients.posts and d.channel else False  # None: not known yet
            write_text(preview, preview_page(payload, job.report_day, posted))
            written.append(ChannelMessage(d, message, preview))
        return written

    def publish(self, files: list[Path], record: RunRecord) -> bool:
        s = self.settings
        if not self.clients.publishes:
            return False
        with record.stage("publish") as stage:
            try:
                result = publish(files, s.site_dir, s.s3_bucket, s.s3_prefix, self.clients.s3)
            except DeliveryError as exc:
                self.partly_failed(stage, exc)
                return False
            stage.counts["uploaded"] = result.uploaded
        return True

    def channels(self) -> list[tuple[str, str | None]]:
        """Every channel the bot posts to, with its route's name (None: the main one)."""
        s = self.settings
        main = [(s.slack_channel, None)] if s.slack_channel else []
        return main + [(r.channel, r.name) for r in s.routes]

    def deliver(self, messages: list[ChannelMessage], job: RunJob, record: RunRecord) -> None:
        """Post each channel's message once a day (a channel that failed is tried again
        alone by the next run); one channel failing never stops the others."""
        s = self.settings
        if s.dry_run:
            log.info("dry run: Slack messages written to %s, not posted",
                     self.paths.slack_payload(job.run_day).parent)
            return
        if not self.clients.posts:
            missing = "SLACK_BOT_TOKEN" if not s.slack_token else "COST_TRACKING_SLACK_CHANNEL"
            log.info("%s is not set: Slack message written, not posted", missing)
            return
        with record.stage("deliver") as stage:
            # What earlier runs could not deliver goes first, to every channel, whether
            # or not it has a message today (a quiet route's pending digest too).
            for d_channel, name in self.channels():
                try:
                    deliver_pending(self.engine, self.clients.slack, d_channel, job.run_day,
                                    s.slack_max_retries, self.digest_origin)
                except DeliveryError as exc:
                    where = "" if name is None else f"route {name}: "
                    self.partly_failed(stage, type(exc)(f"{where}{exc}"))
            for m in messages:
                channel = m.digest.channel
                if not channel:
                    log.info("COST_TRACKING_SLACK_CHANNEL is not set: the main digest is "
                             "written, not posted")
                    continue
                where = "" if m.digest.route is None else f"route {m.digest.name}: "
                if m.kind == delivery_log.WEEKLY:
                    where += "weekly summary: "
                try:
                    result = delivery_log.deliver_once(
                        self.engine, self.clients.slack, job.run_day, channel,
                        m.message.payload(channel), force=job.force,
                        retries=s.slack_max_retries, origin=self.digest_origin, kind=m.kind)
                except DeliveryError as exc:
                    self.partly_failed(stage, type(exc)(f"{where}{exc}"))
                    continue
                stage.counts.setdefault("posted", {})[
                    m.digest.name + (".weekly" if m.kind else "")] = result.posted
                if result.posted:
                    log.info("%sposted to Slack %s (ts %s)", where, channel, result.ts)
                else:
                    log.info("%snot posted to %s: %s (use --force to post again)", where,
                             channel, result.skipped_reason)

