"""Reserved Instances and Savings Plans from Cost Explorer: each call through botocore's
Stubber (request shapes and responses validated against the service model), pages, the
incremental plan (days still changing fetched again), figures stored exactly, the request
count of a daily run, the weekly check of an account without commitments, and access
denied naming every missing action."""
from __future__ import annotations

import datetime as dt

import boto3
import pytest
from botocore.stub import Stubber

from _util.sources import commitments as cm
from _util.sources.demo_account import DemoCostExplorer
from _util.store.commitments import (
    RESERVATIONS,
    SAVINGS_PLANS,
    TOTAL,
    commitment_fetch,
    fetched_days,
    load_coverage,
    load_recommendations,
    load_utilisation,
    read_check,
    replace_days,
)

DAY = dt.date(2026, 11, 22)
TODAY = DAY + dt.timedelta(days=1)
ACCOUNT = "aws"


def _period(start: dt.date, end: dt.date) -> dict:
    return {"Start": start.isoformat(), "End": (end + dt.timedelta(days=1)).isoformat()}


def _ri_utilisation(day: dt.date, pct: str, unused_cost: str) -> dict:
    figures = {"UtilizationPercentage": pct, "PurchasedHours": "48", "TotalActualHours": "36",
               "UnusedHours": "12", "RICostForUnusedHours": unused_cost,
               "NetRISavings": "3.5"}
    return {"TimePeriod": _period(day, day), "Total": figures, "Groups": [
        {"Key": "SUBSCRIPTION_ID", "Value": "sub-1",
         "Attributes": {"instanceType": "r5.large", "region": "eu-west-1",
                        "endDateTime": "2026-12-10T00:00:00.000Z"},
         "Utilization": figures}]}


def _sp_item(day: dt.date, pct: str) -> dict:
    return {"TimePeriod": _period(day, day),
            "Utilization": {"TotalCommitment": "240", "UsedCommitment": "144.5",
                            "UnusedCommitment": "95.5", "UtilizationPercentage": pct},
            "Savings": {"NetSavings": "12.25", "OnDemandCostEquivalent": "200"}}


def _ri_coverage(day: dt.date) -> dict:
    hours = {"CoverageHours": {"OnDemandHours": "24", "ReservedHours": "72",
                               "TotalRunningHours": "96", "CoverageHoursPercentage": "75"},
             "CoverageCost": {"OnDemandCost": "4.608"}}
    return {"TimePeriod": _period(day, day), "Total": hours,
            "Groups": [{"Attributes": {"instanceType": "m5.xlarge", "region": "us-east-1"},
                        "Coverage": hours}]}


def _sp_coverage(day: dt.date, service: str, covered: str, on_demand: str) -> dict:
    return {"Attributes": {"service": service}, "TimePeriod": _period(day, day),
            "Coverage": {"SpendCoveredBySavingsPlans": covered, "OnDemandCost": on_demand,
                         "TotalCost": str(float(covered) + float(on_demand)),
                         "CoveragePercentage": "50"}}


RI_UTIL = {"Granularity": "DAILY", "GroupBy": [{"Type": "DIMENSION", "Key": "SUBSCRIPTION_ID"}]}
RI_COV = {"Granularity": "DAILY", "Metrics": ["Hour", "Cost"],
          "GroupBy": [{"Type": "DIMENSION", "Key": "INSTANCE_TYPE"},
                      {"Type": "DIMENSION", "Key": "REGION"}]}
SP_COV = {"Granularity": "DAILY", "Metrics": ["SpendCoveredBySavingsPlans"],
          "MaxResults": cm.SP_COVERAGE_PAGE,
          "GroupBy": [{"Type": "DIMENSION", "Key": "SERVICE"}]}


def _queue_two_days(stubber: Stubber, first: dt.date) -> None:
    """Every call for days first..first+1, with pages on the ranged calls that have them."""
    second = first + dt.timedelta(days=1)
    period = _period(first, second)
    stubber.add_response("get_reservation_utilization",
                         {"UtilizationsByTime": [_ri_utilisation(first, "75", "0.996")],
                          "NextPageToken": "p2"}, dict(RI_UTIL, TimePeriod=period))
    stubber.add_response("get_reservation_utilization",
                         {"UtilizationsByTime": [_ri_utilisation(second, "75.0000000001", "1.25")]},
                         dict(RI_UTIL, TimePeriod=period, NextPageToken="p2"))
    stubber.add_response("get_savings_plans_utilization",
                         {"SavingsPlansUtilizationsByTime": [_sp_item(first, "60.2083333333"),
                                                             _sp_item(second, "61")],
                          "Total": {"Utilization": {"TotalCommitment": "480"}}},
                         {"TimePeriod": period, "Granularity": "DAILY"})
    stubber.add_response("get_reservation_coverage",
                         {"CoveragesByTime": [_ri_coverage(first), _ri_coverage(second)]},
                         dict(RI_COV, TimePeriod=period))
    stubber.add_response("get_savings_plans_coverage",
                         {"SavingsPlansCoverages": [
                             _sp_coverage(first, "Amazon EC2", "100", "100"),
                             _sp_coverage(first, "AWS Lambda", "10", "0.5")],
                          "NextToken": "t2"}, dict(SP_COV, TimePeriod=period))
    stubber.add_response("get_savings_plans_coverage",
                         {"SavingsPlansCoverages": [
                             _sp_coverage(second, "Amazon EC2", "90", "110")]},
                         dict(SP_COV, TimePeriod=period, NextToken="t2"))
    for day in (first, second):
        stubber.add_response("get_savings_plans_utilization_details", {
            "SavingsPlansUtilizationDetails": [{
                "SavingsPlanArn": "arn:aws:savingsplans::1:savingsplan/sp-1",
                "Attributes": {"SavingsPlansType": "ComputeSavingsPlans",
                               "EndDateTime": "2028-03-01T00:00:00.000Z"},
                **{k: v for k, v in _sp_item(day, "60.2083333333").items()
                   if k != "TimePeriod"}}],
            "TimePeriod": _period(day, day)}, {"TimePeriod": _period(day, day)})


def test_each_call_asks_for_daily_figures_follows_its_pages_and_stores_them_exactly(
        stubbed, db_engine):
    client, stubber = stubbed
    first = DAY - dt.timedelta(days=1)
    _queue_two_days(stubber, first)
    # Only the last two days are due: the rest of the window is stored and settled.
    older = DAY - dt.timedelta(days=cm.COMMITMENT_DAYS - 1)
    replace_days(db_engine, ACCOUNT, older, first - dt.timedelta(days=1), [], [],
                 {older + dt.timedelta(days=i) for i in range(cm.COMMITMENT_DAYS - 2)})
    refresh = cm.refresh_commitments(db_engine, client, ACCOUNT, day=DAY, today=TODAY,
                                     mode="on")
    assert (refresh.start, refresh.end, refresh.requests) == (first, DAY, 8)
    util = {(r.usage_date, r.kind, r.subject): r
            for r in load_utilisation(db_engine, ACCOUNT, first, DAY)}
    ri = util[(DAY, RESERVATIONS, "sub-1")]
    assert (ri.utilisation_pct, ri.unused_usd, ri.unused_hours, ri.purchased, ri.used,
            ri.end_date, ri.subject_type) == (75.0000000001, 1.25, 12.0, 48.0, 36.0,
                                              dt.date(2026, 12, 10), "r5.large eu-west-1")
    assert util[(first, RESERVATIONS, TOTAL)].unused_usd == 0.996
    sp = util[(first, SAVINGS_PLANS, "arn:aws:savingsplans::1:savingsplan/sp-1")]
    assert (sp.utilisation_pct, sp.purchased, sp.used, sp.unused_usd, sp.net_savings_usd,
            sp.end_date) == (60.2083333333, 240.0, 144.5, 95.5, 12.25, dt.date(2028, 3, 1))
    assert util[(DAY, SAVINGS_PLANS, TOTAL)].utilisation_pct == 61.0
    cover = {(r.usage_date, r.kind, r.key): r for r in load_coverage(db_engine, ACCOUNT, first, DAY)}
    assert cover[(first, RESERVATIONS, "m5.xlarge / us-east-1")].on_demand_usd == 4.608
    assert cover[(first, RESERVATIONS, TOTAL)].coverage_pct == 75.0
    assert cover[(first, SAVINGS_PLANS, "AWS Lambda")].on_demand_usd == 0.5
    total = cover[(first, SAVINGS_PLANS, TOTAL)]  # summed from the services
    assert (total.covered_usd, total.on_demand_usd) == (110.0, 100.5)
    assert total.coverage_pct == pytest.approx(100 * 110 / 210.5)
    # Both days are within two days of the run's today: still changing, asked again.
    assert fetched_days(db_engine, ACCOUNT, first, DAY) == {first: False, DAY: False}


def test_a_day_fetched_again_replaces_its_rows_and_never_doubles_them(db_engine):
    client = DemoCostExplorer(TODAY)
    cm.refresh_commitments(db_engine, client, ACCOUNT, day=DAY, today=TODAY, mode="on")
    before = load_utilisation(db_engine, ACCOUNT, DAY - dt.timedelta(days=89), DAY)
    with db_engine.begin() as conn:  # as if every day were still changing
        conn.execute(commitment_fetch.update().values(settled=False))
    cm.refresh_commitments(db_engine, client, ACCOUNT, day=DAY, today=TODAY, mode="on")
    assert load_utilisation(db_engine, ACCOUNT, DAY - dt.timedelta(days=89), DAY) == before


def test_a_daily_run_asks_for_the_days_still_changing_and_the_new_one_in_seven_requests(
        db_engine):
    """First run: the 90 days (ranged calls paged, a details request per day); each later
    daily run: the two days fetched while still changing and the new day, 7 requests."""
    first = cm.refresh_commitments(db_engine, DemoCostExplorer(TODAY), ACCOUNT, day=DAY,
                                   today=TODAY, mode="auto")
    assert first.start == DAY - dt.timedelta(days=89) and first.found
    assert first.requests == 100  # 3 + 1 + 3 + 3 pages, 90 details
    for n in range(1, 4):
        day = DAY + dt.timedelta(days=n)
        client = DemoCostExplorer(day + dt.timedelta(days=1))
        refresh = cm.refresh_commitments(db_engine, client, ACCOUNT, day=day,
                                         today=day + dt.timedelta(days=1), mode="auto")
        assert refresh.start == day - dt.timedelta(days=2)
        assert refresh.requests == len(client.calls) == 7
        starts = {c["TimePeriod"]["Start"] for c in client.calls}
        assert min(starts) == (day - dt.timedelta(days=2)).isoformat()


def test_an_account_without_commitments_costs_two_requests_a_week(stubbed, db_engine):
    client, stubber = stubbed
    window = DAY - dt.timedelta(days=cm.COMMITMENT_DAYS - 1)

    def queue_empty_check(day: dt.date) -> None:
        period = _period(day - dt.timedelta(days=cm.COMMITMENT_DAYS - 1), day)
        stubber.add_response("get_reservation_utilization", {"UtilizationsByTime": [
            {"TimePeriod": _period(window, window), "Groups": [], "Total": {}}]},
            dict(RI_UTIL, TimePeriod=period))
        stubber.add_client_error("get_savings_plans_utilization", "DataUnavailableException",
                                 expected_params={"TimePeriod": period, "Granularity": "DAILY"})

    queue_empty_check(DAY)
    refresh = cm.refresh_commitments(db_engine, client, ACCOUNT, day=DAY, today=TODAY,
                                     mode="auto")
    assert (refresh.found, refresh.requests, refresh.rows) == (False, 2, 0)
    assert read_check(db_engine, ACCOUNT).found is False
    for n in range(1, cm.RECHECK_DAYS):  # no request at all: the Stubber holds none
        day = DAY + dt.timedelta(days=n)
        skipped = cm.refresh_commitments(db_engine, client, ACCOUNT, day=day,
                                         today=day + dt.timedelta(days=1), mode="auto")
        assert skipped.requests == 0 and skipped.found is False
    day = DAY + dt.timedelta(days=cm.RECHECK_DAYS)
    queue_empty_check(day)
    again = cm.refresh_commitments(db_engine, client, ACCOUNT, day=day,
                                   today=day + dt.timedelta(days=1), mode="auto")
    assert again.requests == 2
    assert load_utilisation(db_engine, ACCOUNT, window, day) == []


def test_access_denied_names_every_refused_action_and_stores_nothing(stubbed, db_engine):
    client, stubber = stubbed
    period = _period(DAY - dt.timedelta(days=cm.COMMITMENT_DAYS - 1), DAY)
    stubber.add_client_error("get_reservation_utilization", "AccessDeniedException",
                             expected_params=dict(RI_UTIL, TimePeriod=period))
    stubber.add_response("get_savings_plans_utilization",
                         {"SavingsPlansUtilizationsByTime": [_sp_item(DAY, "90")],
                          "Total": {"Utilization": {"TotalCommitment": "240"}}},
                         {"TimePeriod": period, "Granularity": "DAILY"})
    stubber.add_client_error("get_reservation_coverage", "AccessDeniedException",
                             expected_params=dict(RI_COV, TimePeriod=period))
    stubber.add_client_error("get_savings_plans_coverage", "AccessDeniedException",
                             expected_params=dict(SP_COV, TimePeriod=period))
    stubber.add_client_error("get_savings_plans_utilization_details", "AccessDeniedException",
                             expected_params={"TimePeriod": _period(DAY, DAY)})
    with pytest.raises(cm.CommitmentsDenied) as denied:
        cm.refresh_commitments(db_engine, client, ACCOUNT, day=DAY, today=TODAY, mode="auto")
    assert denied.value.actions == ["ce:GetReservationCoverage", "ce:GetReservationUtilization",
                                    "ce:GetSavingsPlansCoverage",
                                    "ce:GetSavingsPlansUtilizationDetails"]
    assert denied.value.requests == 5
    assert fetched_days(db_engine, ACCOUNT, DAY - dt.timedelta(days=89), DAY) == {}


def test_recommendations_are_asked_once_a_week_for_each_reservable_service_and_compute_plans(
        stubbed, db_engine):
    client, stubber = stubbed
    terms = {"TermInYears": "ONE_YEAR", "PaymentOption": "NO_UPFRONT",
             "LookbackPeriodInDays": "THIRTY_DAYS"}
    demo = DemoCostExplorer(TODAY)
    for service in cm.RESERVABLE_SERVICES:
        stubber.add_response("get_reservation_purchase_recommendation",
                             demo.get_reservation_purchase_recommendation(Service=service),
                             {"Service": service, **terms})
    stubber.add_response("get_savings_plans_purchase_recommendation",
                         demo.get_savings_plans_purchase_recommendation(),
                         {"SavingsPlansType": "COMPUTE_SP", **terms})
    assert cm.refresh_recommendations(db_engine, client, ACCOUNT, day=DAY) == 6
    assert [(r.service, r.detail, r.monthly_savings_usd) for r in
            load_recommendations(db_engine, ACCOUNT)] == [
        ("Compute Savings Plans", "2.50 USD/hour commitment", 412.0),
        ("Amazon Elastic Compute Cloud - Compute", "2 x c5.2xlarge in us-east-1", 146.0)]
    for n in range(1, 7):  # no request: the Stubber holds none
        assert cm.refresh_recommendations(db_engine, client, ACCOUNT,
                                          day=DAY + dt.timedelta(days=n)) == 0


class _Validated:
    """The demo account's answers, each passed through a Stubber so botocore checks the
    request and the response against the service model."""

    def __init__(self, demo: DemoCostExplorer) -> None:
        self.demo = demo
        self.client = boto3.client("ce", region_name="us-east-1")

    def __getattr__(self, name: str):
        def call(**kwargs):
            with Stubber(self.client) as stubber:
                stubber.add_response(name, getattr(self.demo, name)(**kwargs), kwargs)
                return getattr(self.client, name)(**kwargs)
        return call


def test_the_demo_account_answers_every_call_in_the_service_models_shapes(clean_env, db_engine):
    client = _Validated(DemoCostExplorer(TODAY))
    refresh = cm.refresh_commitments(db_engine, client, "demo", day=DAY, today=TODAY, mode="on")
    assert refresh.rows > 0 and refresh.found
    assert cm.refresh_recommendations(db_engine, client, "demo", day=DAY) == 6


class NoDailyWithGroupBy:
    """The demo's Cost Explorer, refusing a granularity together with a GroupBy as AWS's
    documentation says these calls may (ValidationException), counting what it answers."""

    def __init__(self, demo: DemoCostExplorer) -> None:
        self.demo = demo
        self.calls: list[tuple[str, dict]] = []

    def __getattr__(self, method: str):
        def call(**kwargs):
            self.calls.append((method, kwargs))
            if "Granularity" in kwargs and "GroupBy" in kwargs:
                from botocore.exceptions import ClientError
                raise ClientError({"Error": {"Code": "ValidationException", "Message":
                                             "Granularity can't be set when GroupBy is set"}},
                                  method)
            return getattr(self.demo, method)(**kwargs)
        return call


def test_a_refused_daily_granularity_with_groups_is_asked_day_by_day_with_the_same_figures():
    today = dt.date(2026, 11, 23)
    start, end = dt.date(2026, 11, 19), dt.date(2026, 11, 22)
    plain = cm.fetch_commitments(DemoCostExplorer(today), start, end)
    strict = NoDailyWithGroupBy(DemoCostExplorer(today))
    refused = cm.fetch_commitments(strict, start, end)
    key = lambda r: repr(r)  # noqa: E731
    assert sorted(map(key, refused.utilisation)) == sorted(map(key, plain.utilisation))
    assert sorted(map(key, refused.coverage)) == sorted(map(key, plain.coverage))
    grouped = [(m, k) for m, k in strict.calls if "GroupBy" in k]
    # Each grouped call: one refused DAILY request, then one a day (4 days) without it.
    for method in ("get_reservation_utilization", "get_reservation_coverage",
                   "get_savings_plans_coverage"):
        asked = [k for m, k in grouped if m == method]
        assert len(asked) == 5 and "Granularity" in asked[0]
        assert [k["TimePeriod"]["Start"] for k in asked[1:]] == [
            (start + dt.timedelta(days=i)).isoformat() for i in range(4)]
    assert refused.requests == plain.requests + 3 * 4
