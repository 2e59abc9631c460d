"""Reserved Instances and Savings Plans from Cost Explorer: coverage, utilisation and
purchase recommendations, fetched incrementally into `_util/store/commitments.py`.

The calls, for the days start..end (one TimePeriod, End exclusive, DAILY, pages followed):
`GetReservationUtilization` (grouped by SUBSCRIPTION_ID: each reservation and the day's
total), `GetSavingsPlansUtilization` (the day's total), `GetReservationCoverage` (grouped
by INSTANCE_TYPE and REGION, hours and on-demand cost), `GetSavingsPlansCoverage` (grouped
by SERVICE), and `GetSavingsPlansUtilizationDetails` once per day (it has no granularity:
each plan's figures for the period asked), only for days the plans had a commitment.
Once a week `GetReservationPurchaseRecommendation` (EC2, RDS, ElastiCache, OpenSearch,
Redshift) and `GetSavingsPlansPurchaseRecommendation` (Compute Savings Plans).

Cost Explorer bills $0.01 a request, so a run asks only for the days not stored yet or
still changing: commitment answers carry no Estimated flag, and AWS revises them for a
couple of days, so a day fetched less than SETTLE_DAYS + 1 days after it is fetched again
(as the costs' two Estimated days are). A daily run asks for 3 days: 4 range requests and
3 details requests. The two utilisation calls come first and tell whether the account has
any commitment at all; in `auto` mode an account without one costs those 2 requests a
week and nothing else.

The client is boto3's Cost Explorer client (`make_ce_client`: standard retries, 8
attempts) or anything that answers like it: the demo account, a Stubber in tests.
"""
from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Iterator

import botocore.exceptions
from sqlalchemy.engine import Engine

from _util.errors import SourceError, SourceUnavailable, UnusableResponse
from _util.sources.cost_explorer import CONNECTION_ERRORS
from _util.store.commitments import (
    RESERVATIONS,
    SAVINGS_PLANS,
    TOTAL,
    CoverageRow,
    Recommendation,
    UtilisationRow,
    fetched_days,
    read_check,
    replace_days,
    replace_recommendations,
    save_check,
)

log = logging.getLogger(__name__)

COMMITMENT_DAYS = 90  # the history the pages plot and the alerts look back on
SETTLE_DAYS = 2  # a day fetched within this many days before the run's today may change
RECHECK_DAYS = 7  # an account without commitments is looked at again after a week
RECOMMEND_DAYS = 7  # purchase recommendations are fetched once a week
SP_COVERAGE_PAGE = 100  # items a Savings Plans coverage page holds (AWS's default is 20)

ACTIONS = {
    "get_reservation_utilization": "ce:GetReservationUtilization",
    "get_savings_plans_utilization": "ce:GetSavingsPlansUtilization",
    "get_reservation_coverage": "ce:GetReservationCoverage",
    "get_savings_plans_coverage": "ce:GetSavingsPlansCoverage",
    "get_savings_plans_utilization_details": "ce:GetSavingsPlansUtilizationDetails",
    "get_reservation_purchase_recommendation": "ce:GetReservationPurchaseRecommendation",
    "get_savings_plans_purchase_recommendation": "ce:GetSavingsPlansPurchaseRecommendation",
}
# The services Cost Explorer recommends reservations for, by its names.
RESERVABLE_SERVICES = ("Amazon Elastic Compute Cloud - Compute",
                       "Amazon Relational Database Service", "Amazon ElastiCache",
                       "Amazon OpenSearch Service", "Amazon Redshift")
_DENIED = ("AccessDeniedException", "AccessDenied", "UnauthorizedOperation")


class CommitmentsDenied(SourceError):
    """Cost Explorer refused some of the commitment calls: the role lacks their actions."""

    def __init__(self, actions: list[str], requests: int = 0) -> None:
        self.actions = actions
        self.requests = requests
        super().__init__("Cost Explorer denied access to the commitment figures: the bot's "
                         f"role needs the IAM action(s) {', '.join(actions)}")


# ---------------------------------------------------------------- calls and pages


class GranularityRefused(Exception):
    """Cost Explorer refused a granularity together with a GroupBy (its documentation
    says the grouped reservation and Savings Plans calls may): asked again day by day."""


@dataclass
class Caller:
    """Calls one client, following pages and counting requests (each page is one billed
    request; botocore's retries of one call count once). Denied calls are gathered, so
    one warning can name every missing action."""

    client: Any
    requests: int = 0
    denied: list[str] = field(default_factory=list)

    def pages(self, method: str, params: dict, token_in: str = "NextPageToken",
              token_out: str = "NextPageToken") -> Iterator[dict]:
        token = None
        while True:
            request = dict(params, **{token_in: token}) if token else params
            try:
                response = getattr(self.client, method)(**request)
            except botocore.exceptions.NoCredentialsError:
                raise SourceError("no AWS credentials found: set AWS_PROFILE or "
                                  "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run on an "
                                  "instance with a role") from None
            except botocore.exceptions.ClientError as exc:
                self.requests += 1
                code = exc.response.get("Error", {}).get("Code", "")
                if code in _DENIED:
                    self.denied.append(ACTIONS[method])
                    return
                if code == "DataUnavailableException":  # nothing to report for the range
                    return
                message = exc.response.get("Error", {}).get("Message", "")
                if (code == "ValidationException" and "granularity" in message.lower()
                        and "Granularity" in params and "GroupBy" in params):
                    raise GranularityRefused(message) from exc
                raise SourceUnavailable(f"Cost Explorer {ACTIONS[method]} failed "
                                        f"({code or 'error'}): {message}") from exc
            except CONNECTION_ERRORS as exc:
                raise SourceUnavailable(f"cannot reach Cost Explorer: {exc}") from exc
            self.requests += 1
            yield response
            token = response.get(token_out)
            if not token:
                return


def _period(start: dt.date, end: dt.date) -> dict[str, str]:
    """Days start..end as Cost Explorer's TimePeriod (End exclusive)."""
    return {"Start": start.isoformat(), "End": (end + dt.timedelta(days=1)).isoformat()}


def _number(value: Any, what: str) -> float:
    """A figure as Cost Explorer sends it (a string); a missing one is 0."""
    if value in (None, ""):
        return 0.0
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UnusableResponse(f"Cost Explorer sent {value!r} as {what}; nothing of the "
                               "commitments was stored") from None
    if not math.isfinite(number):
        raise UnusableResponse(f"Cost Explorer sent {value!r} as {what}; nothing of the "
                               "commitments was stored")
    return number


def _pct(value: Any, what: str) -> float | None:
    return None if value in (None, "") else _number(value, what)


def _day(period: Any) -> dt.date:
    try:
        return dt.date.fromisoformat(period["Start"])
    except (KeyError, TypeError, ValueError):
        raise UnusableResponse(f"Cost Explorer sent a period without a valid start "
                               f"({str(period)[:80]}); nothing of the commitments was "
                               "stored") from None


def _attribute(attributes: Any, *names: str) -> str:
    """An attribute by any of `names`, whatever its case (AWS spells them variously)."""
    lowered = {str(k).lower(): v for k, v in (attributes or {}).items()}
    for name in names:
        value = lowered.get(name.lower())
        if value:
            return str(value)
    return ""


def _end_date(attributes: Any) -> dt.date | None:
    raw = _attribute(attributes, "endDateTime", "EndDateTime", "endDate")
    try:
        return dt.datetime.fromisoformat(raw.replace("Z", "+00:00")).date() if raw else None
    except ValueError:
        return None


# ---------------------------------------------------------------- the answers as rows


def reservation_utilisation(pages: Iterator[dict]) -> list[UtilisationRow]:
    """Each day's total (subject "") and each reservation, from GetReservationUtilization
    grouped by SUBSCRIPTION_ID."""
    rows = []
    for page in pages:
        for period in page.get("UtilizationsByTime") or []:
            day = _day(period.get("TimePeriod"))
            total = period.get("Total")
            if total:
                rows.append(_ri_row(day, TOTAL, "Reserved Instances", None, total))
            for group in period.get("Groups") or []:
                attrs = group.get("Attributes") or {}
                kind = " ".join(x for x in (_attribute(attrs, "instanceType"),
                                            _attribute(attrs, "region")) if x)
                rows.append(_ri_row(day, str(group.get("Value") or ""),
                                    kind or "Reserved Instance", _end_date(attrs),
                                    group.get("Utilization") or {}))
    return [r for r in rows if r.purchased > 0 or r.subject != TOTAL]


def _ri_row(day: dt.date, subject: str, subject_type: str, end: dt.date | None,
            u: dict) -> UtilisationRow:
    what = f"a reservation's figure on {day}"
    return UtilisationRow(
        day, RESERVATIONS, subject, subject_type, end,
        _pct(u.get("UtilizationPercentage"), what), _number(u.get("PurchasedHours"), what),
        _number(u.get("TotalActualHours"), what), _number(u.get("RICostForUnusedHours"), what),
        _number(u.get("UnusedHours"), what), _number(u.get("NetRISavings"), what))


def savings_plans_utilisation(pages: Iterator[dict]) -> list[UtilisationRow]:
    """Each day's total from GetSavingsPlansUtilization (DAILY)."""
    rows = []
    for page in pages:
        for item in page.get("SavingsPlansUtilizationsByTime") or []:
            day = _day(item.get("TimePeriod"))
            row = _sp_row(day, TOTAL, "Savings Plans", None, item)
            if row.purchased > 0:
                rows.append(row)
    return rows


def _sp_row(day: dt.date, subject: str, subject_type: str, end: dt.date | None,
            item: dict) -> UtilisationRow:
    what = f"a Savings Plans figure on {day}"
    u, s = item.get("Utilization") or {}, item.get("Savings") or {}
    return UtilisationRow(
        day, SAVINGS_PLANS, subject, subject_type, end,
        _pct(u.get("UtilizationPercentage"), what), _number(u.get("TotalCommitment"), what),
        _number(u.get("UsedCommitment"), what), _number(u.get("UnusedCommitment"), what),
        None, _number(s.get("NetSavings"), what))


def savings_plans_details(day: dt.date, pages: Iterator[dict]) -> list[UtilisationRow]:
    """Each plan's figures on `day`, from GetSavingsPlansUtilizationDetails for that day."""
    rows = []
    for page in pages:
        for item in page.get("SavingsPlansUtilizationDetails") or []:
            attrs = item.get("Attributes") or {}
            kind = _attribute(attrs, "SavingsPlansType", "savingsPlanType") or "Savings Plan"
            rows.append(_sp_row(day, str(item.get("SavingsPlanArn") or ""), kind,
                                _end_date(attrs), item))
    return rows


def reservation_coverage(pages: Iterator[dict]) -> list[CoverageRow]:
    """Each day's total (key "") and each instance type in a region, from
    GetReservationCoverage (hours, and the on-demand cost of the hours not covered)."""
    rows = []
    for page in pages:
        for period in page.get("CoveragesByTime") or []:
            day = _day(period.get("TimePeriod"))
            if period.get("Total"):
                rows.append(_ri_coverage(day, TOTAL, period["Total"]))
            for group in period.get("Groups") or []:
                attrs = group.get("Attributes") or {}
                key = " / ".join(x for x in (_attribute(attrs, "instanceType"),
                                             _attribute(attrs, "region")) if x)
                rows.append(_ri_coverage(day, key or "(other)", group.get("Coverage") or {}))
    return rows


def _ri_coverage(day: dt.date, key: str, coverage: dict) -> CoverageRow:
    what = f"a reservation coverage figure on {day}"
    hours, cost = coverage.get("CoverageHours") or {}, coverage.get("CoverageCost") or {}
    return CoverageRow(day, RESERVATIONS, key, _number(hours.get("ReservedHours"), what),
                       _number(hours.get("OnDemandHours"), what), None,
                       _number(cost.get("OnDemandCost"), what),
                       _pct(hours.get("CoverageHoursPercentage"), what))


def savings_plans_coverage(pages: Iterator[dict]) -> list[CoverageRow]:
    """Each service's coverage per day from GetSavingsPlansCoverage, and the day's total
    (key ""), summed from them (the call sends no total)."""
    rows = []
    totals: dict[dt.date, list[float]] = {}
    for page in pages:
        for item in page.get("SavingsPlansCoverages") or []:
            day = _day(item.get("TimePeriod"))
            what = f"a Savings Plans coverage figure on {day}"
            c = item.get("Coverage") or {}
            covered = _number(c.get("SpendCoveredBySavingsPlans"), what)
            on_demand = _number(c.get("OnDemandCost"), what)
            key = next(iter((item.get("Attributes") or {}).values()), "") or "(other)"
            rows.append(CoverageRow(day, SAVINGS_PLANS, str(key), None, None, covered,
                                    on_demand, _pct(c.get("CoveragePercentage"), what)))
            slot = totals.setdefault(day, [0.0, 0.0])
            slot[0] += covered
            slot[1] += on_demand
    for day, (covered, on_demand) in sorted(totals.items()):
        spend = covered + on_demand
        rows.append(CoverageRow(day, SAVINGS_PLANS, TOTAL, None, None, covered, on_demand,
                                100.0 * covered / spend if spend else None))
    return rows


# ---------------------------------------------------------------- one fetch


@dataclass
class CommitmentFetch:
    """What a fetch of days start..end found."""

    start: dt.date
    end: dt.date
    utilisation: list[UtilisationRow]
    coverage: list[CoverageRow]
    requests: int
    found: bool  # any reservation or plan with a commitment in the days


def daily_groups(call: Caller, method: str, params: dict, start: dt.date, end: dt.date,
                 **tokens: str) -> Iterator[dict]:
    """The pages of a grouped call for days start..end: one DAILY range, or, when Cost
    Explorer refuses a granularity with a GroupBy, one request per day without it (each
    answer then covers its one day)."""
    try:
        pages = list(call.pages(method, {**params, "Granularity": "DAILY"}, **tokens))
    except GranularityRefused as exc:
        log.info("Cost Explorer %s refused DAILY with GroupBy (%s): asking day by day",
                 ACTIONS[method], exc)
    else:
        yield from pages
        return
    for i in range((end - start).days + 1):
        day = start + dt.timedelta(days=i)
        yield from call.pages(method, {**params, "TimePeriod": _period(day, day)}, **tokens)


def fetch_commitments(client: Any, start: dt.date, end: dt.date, *,
                      check_only_first: bool = False) -> CommitmentFetch:
    """Every figure of days start..end. With `check_only_first`, the two utilisation
    calls come first and, when they find no commitment at all, nothing else is asked.
    Raises CommitmentsDenied naming every refused action (after trying the others)."""
    call = Caller(client)
    period = _period(start, end)
    utilisation = reservation_utilisation(daily_groups(
        call, "get_reservation_utilization",
        {"TimePeriod": period, "GroupBy": [{"Type": "DIMENSION", "Key": "SUBSCRIPTION_ID"}]},
        start, end))
    sp_totals = savings_plans_utilisation(call.pages(
        "get_savings_plans_utilization", {"TimePeriod": period, "Granularity": "DAILY"}))
    utilisation += sp_totals
    found = any(r.purchased > 0 for r in utilisation)
    coverage: list[CoverageRow] = []
    if found or not check_only_first or call.denied:
        coverage += reservation_coverage(daily_groups(
            call, "get_reservation_coverage",
            {"TimePeriod": period, "Metrics": ["Hour", "Cost"],
             "GroupBy": [{"Type": "DIMENSION", "Key": "INSTANCE_TYPE"},
                         {"Type": "DIMENSION", "Key": "REGION"}]}, start, end))
        coverage += savings_plans_coverage(daily_groups(
            call, "get_savings_plans_coverage",
            {"TimePeriod": period, "Metrics": ["SpendCoveredBySavingsPlans"],
             "MaxResults": SP_COVERAGE_PAGE,
             "GroupBy": [{"Type": "DIMENSION", "Key": "SERVICE"}]},
            start, end, token_in="NextToken", token_out="NextToken"))
        for day in sorted({r.usage_date for r in sp_totals}):
            utilisation += savings_plans_details(day, call.pages(
                "get_savings_plans_utilization_details", {"TimePeriod": _period(day, day)},
                token_in="NextToken", token_out="NextToken"))
    if call.denied:
        raise CommitmentsDenied(sorted(set(call.denied)), call.requests)
    return CommitmentFetch(start, end, utilisation, coverage, call.requests, found)


def fetch_recommendations(client: Any) -> tuple[list[Recommendation], int]:
    """This week's purchase recommendations (1-year, no upfront, 30 days looked back), as
    Cost Explorer estimates them; and the requests made."""
    call = Caller(client)
    found: list[Recommendation] = []
    terms = {"TermInYears": "ONE_YEAR", "PaymentOption": "NO_UPFRONT",
             "LookbackPeriodInDays": "THIRTY_DAYS"}
    for service in RESERVABLE_SERVICES:
        for page in call.pages("get_reservation_purchase_recommendation",
                               {"Service": service, **terms}):
            for rec in page.get("Recommendations") or []:
                for d in rec.get("RecommendationDetails") or []:
                    found.append(Recommendation(
                        RESERVATIONS, service, _instance_detail(d),
                        _number(d.get("EstimatedMonthlySavingsAmount"), "a saving"),
                        _number(d.get("UpfrontCost"), "an upfront cost")))
    for page in call.pages("get_savings_plans_purchase_recommendation",
                           {"SavingsPlansType": "COMPUTE_SP", **terms}):
        rec = page.get("SavingsPlansPurchaseRecommendation") or {}
        for d in rec.get("SavingsPlansPurchaseRecommendationDetails") or []:
            hourly = _number(d.get("HourlyCommitmentToPurchase"), "a commitment")
            found.append(Recommendation(
                SAVINGS_PLANS, "Compute Savings Plans",
                f"{hourly:,.2f} {d.get('CurrencyCode') or 'USD'}/hour commitment",
                _number(d.get("EstimatedMonthlySavingsAmount"), "a saving"),
                _number(d.get("UpfrontCost"), "an upfront cost")))
    if call.denied:
        raise CommitmentsDenied(sorted(set(call.denied)), call.requests)
    found.sort(key=lambda r: -r.monthly_savings_usd)
    return found, call.requests


def _instance_detail(detail: dict) -> str:
    """What to buy, in words: "3 x m5.large in us-east-1"."""
    instance = next(iter((detail.get("InstanceDetails") or {}).values()), {}) or {}
    what = " in ".join(x for x in (instance.get("InstanceType") or instance.get("NodeType"),
                                   instance.get("Region")) if x)
    count = detail.get("RecommendedNumberOfInstancesToPurchase")
    return f"{count} x {what}" if count and what else what or "(unspecified)"


# ---------------------------------------------------------------- incremental refresh


@dataclass(frozen=True)
class Refresh:
    """What one refresh did: the days fetched (none: up to date or skipped), the requests
    made, the rows stored, and whether the account has commitments (None: not asked)."""

    start: dt.date | None
    end: dt.date
    requests: int
    rows: int
    found: bool | None
    reason: str


def days_to_fetch(fetched: dict[dt.date, bool], day: dt.date,
                  window_days: int = COMMITMENT_DAYS) -> dt.date | None:
    """The first day of the window ending on `day` not stored yet or not settled when
    fetched (the fetch runs from it to `day`); None when every day is settled.

    >>> d = dt.date(2026, 11, 22)
    >>> days_to_fetch({d - dt.timedelta(days=i): i > 1 for i in range(1, 90)}, d)
    datetime.date(2026, 11, 21)
    """
    first = day - dt.timedelta(days=window_days - 1)
    for i in range(window_days):
        d = first + dt.timedelta(days=i)
        if not fetched.get(d, False):
            return d
    return None


def refresh_commitments(engine: Engine, client: Any, account: str, *, day: dt.date,
                        today: dt.date, mode: str) -> Refresh:
    """Fetch and store the commitment days of the window ending on `day` that are not
    stored yet or may still change; `mode` `auto` skips an account found to have no
    commitment less than RECHECK_DAYS ago (and asks the rest only when the first two
    calls find one), `on` always asks."""
    check = read_check(engine, account)
    if (mode == "auto" and check is not None and not check.found
            and 0 <= (day - check.checked_on).days < RECHECK_DAYS):
        return Refresh(None, day, 0, 0, False,
                       f"no commitments found on {check.checked_on}; next check "
                       f"{check.checked_on + dt.timedelta(days=RECHECK_DAYS)}")
    first = day - dt.timedelta(days=COMMITMENT_DAYS - 1)
    start = days_to_fetch(fetched_days(engine, account, first, day), day)
    if start is None:
        return Refresh(None, day, 0, 0, None, "up to date")
    fetch = fetch_commitments(client, start, day, check_only_first=mode == "auto")
    found = fetch.found
    if mode == "auto" and not found:
        save_check(engine, account, day, False)
        return Refresh(start, day, fetch.requests, 0, False, "no commitments in the window")
    settled = {start + dt.timedelta(days=i) for i in range((day - start).days + 1)}
    settled = {d for d in settled if (today - d).days > SETTLE_DAYS}
    rows = replace_days(engine, account, start, day, fetch.utilisation, fetch.coverage, settled)
    save_check(engine, account, day, found)
    return Refresh(start, day, fetch.requests, rows, found, "fetched")


def refresh_recommendations(engine: Engine, client: Any, account: str, *,
                            day: dt.date) -> int:
    """Fetch the recommendations when those stored are a week old or more; the requests
    made (0 when they are recent)."""
    check = read_check(engine, account)
    if check is not None and check.recommended_on is not None \
            and 0 <= (day - check.recommended_on).days < RECOMMEND_DAYS:
        return 0
    recommendations, requests = fetch_recommendations(client)
    replace_recommendations(engine, account, day, recommendations)
    return requests
