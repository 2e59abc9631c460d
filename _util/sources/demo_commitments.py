"""The demo account's commitments: the Cost Explorer calls about Reserved Instances and
Savings Plans, answered with the real calls' parameters and response shapes (figures as
strings, TimePeriod End exclusive, NextPageToken / NextToken pages), so `--demo` runs the
production fetch, store, alerts and section end to end.

What it holds, every figure a pure function of its day (a database filled day by day
equals one backfilled at once), with planted events on a calendar schedule so every run
date has recent ones:
- a Compute Savings Plan of $10 an hour, used at about 92%, that drops to about 60% for
  a week every FLEET_CYCLE days (a planted fleet change: the fleet shrank);
- two EC2 reservations: m5.xlarge in us-east-1 (4 instances, fully used, ends 2027) and
  r5.large in eu-west-1 (2 instances, about 95% used) renewed as a new reservation every
  RENEWAL_CYCLE days, so it expires within the month half of the time;
- coverage: EC2 and Lambda mostly covered by the plan, c5.2xlarge instances on demand,
  and Amazon SageMaker, a new service that grows on demand for GROWTH_DAYS days every
  GROWTH_CYCLE days, so coverage falls while it grows.
"""
from __future__ import annotations

import datetime as dt
import hashlib

SP_ARN = "arn:aws:savingsplans::123456789012:savingsplan/3f8e2a1c-demo-compute"
SP_HOURLY = 10.0
SP_END = "2028-03-01T00:00:00.000Z"
RI_WEB = "4f1d2c3b-demo-m5xlarge"
RI_WEB_END = "2027-06-30T00:00:00.000Z"
RI_CACHE = "7a9e0b1d-demo-r5large"
FLEET_CYCLE, FLEET_DAYS = 28, 7
RENEWAL_CYCLE = 60
GROWTH_CYCLE, GROWTH_DAYS = 63, 21
# Phases: on 2026-11-22 (the README's demo day) the fleet change is on its third day and
# the r5.large reservation ends 18 days later.
_FLEET_START = dt.date(2026, 11, 20)
_RENEWAL_END = dt.date(2026, 12, 10)
_GROWTH_START = dt.date(2026, 11, 17)
DAYS_PER_PAGE = 31  # ranged answers are paged by this many days


def _noise(*parts: object) -> float:
    """A number in [-1, 1) fixed by its inputs."""
    digest = hashlib.sha256("|".join(map(str, ("commitments",) + parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**63 - 1.0


def _in_cycle(day: dt.date, anchor: dt.date, cycle: int) -> int:
    """Which day of its cycle `day` is (0 on `anchor` and every `cycle` days from it)."""
    return (day - anchor).days % cycle


def _s(value: float) -> str:
    return f"{value:.10f}"


def _period(day: dt.date) -> dict[str, str]:
    return {"Start": day.isoformat(), "End": (day + dt.timedelta(days=1)).isoformat()}


def _iso(day: dt.date) -> str:
    return f"{day.isoformat()}T00:00:00.000Z"


# ---------------------------------------------------------------- the day's figures


def sp_utilisation_pct(day: dt.date) -> float:
    """The Savings Plan's use that day: ~92%, ~60% during a fleet change."""
    low = _in_cycle(day, _FLEET_START, FLEET_CYCLE) < FLEET_DAYS
    return (60.0 if low else 92.0) + 1.5 * _noise("sp", day)


def cache_reservation(day: dt.date) -> tuple[str, dt.date]:
    """The r5.large reservation in force that day (its subscription ID and end date)."""
    cycles = (day - _RENEWAL_END).days // RENEWAL_CYCLE + 1
    end = _RENEWAL_END + dt.timedelta(days=RENEWAL_CYCLE * cycles)
    return f"{RI_CACHE}-{end:%Y%m%d}", end


def sagemaker_on_demand(day: dt.date) -> float:
    """The new service's on-demand spend: it grows fast for GROWTH_DAYS days, then stops."""
    i = _in_cycle(day, _GROWTH_START, GROWTH_CYCLE)
    return 0.0 if i >= GROWTH_DAYS else 8.0 * (i + 1) * (1 + 0.05 * _noise("sm", day))


def _reservations(day: dt.date) -> list[dict]:
    """Each reservation's figures: (id, type, region, instances, used share, hourly, end)."""
    cache_id, cache_end = cache_reservation(day)
    return [
        {"id": RI_WEB, "type": "m5.xlarge", "region": "us-east-1", "count": 4,
         "used": 1.0, "hourly": 0.121, "od": 0.192, "end": RI_WEB_END,
         "start": "2024-06-30T00:00:00.000Z"},
        {"id": cache_id, "type": "r5.large", "region": "eu-west-1", "count": 2,
         "used": 0.95 + 0.02 * _noise("ri", day), "hourly": 0.083, "od": 0.141,
         "end": _iso(cache_end),
         "start": _iso(cache_end - dt.timedelta(days=365))},
    ]


def _ri_utilisation(purchased: float, used: float, hourly: float, od: float) -> dict:
    unused = purchased - used
    return {
        "UtilizationPercentage": _s(100.0 * used / purchased if purchased else 0.0),
        "PurchasedHours": _s(purchased), "TotalActualHours": _s(used),
        "UnusedHours": _s(unused), "OnDemandCostOfRIHoursUsed": _s(used * od),
        "NetRISavings": _s(used * od - purchased * hourly),
        "TotalPotentialRISavings": _s(purchased * (od - hourly)),
        "AmortizedUpfrontFee": _s(0.0), "AmortizedRecurringFee": _s(purchased * hourly),
        "TotalAmortizedFee": _s(purchased * hourly), "RICostForUnusedHours": _s(unused * hourly),
        "RealizedSavings": _s(used * (od - hourly)),
        "UnrealizedSavings": _s(unused * (od - hourly)),
    }


def _ri_utilisation_period(day: dt.date) -> dict:
    groups, totals = [], [0.0, 0.0, 0.0, 0.0]
    for r in _reservations(day):
        purchased = 24.0 * r["count"]
        used = purchased * r["used"]
        groups.append({"Key": "SUBSCRIPTION_ID", "Value": r["id"], "Attributes": {
            "subscriptionId": r["id"], "instanceType": r["type"], "region": r["region"],
            "numberOfInstances": str(r["count"]), "platform": "Linux/UNIX",
            "subscriptionType": "No Upfront", "subscriptionStatus": "Active",
            "startDateTime": r["start"], "endDateTime": r["end"],
            "accountId": "123456789012"},
            "Utilization": _ri_utilisation(purchased, used, r["hourly"], r["od"])})
        totals = [totals[0] + purchased, totals[1] + used, totals[2] + purchased * r["hourly"],
                  totals[3] + used * r["od"]]
    total = _ri_utilisation(totals[0], totals[1], 0.0, 0.0)
    unused_cost = sum(float(g["Utilization"]["RICostForUnusedHours"]) for g in groups)
    total.update(RICostForUnusedHours=_s(unused_cost), TotalAmortizedFee=_s(totals[2]),
                 AmortizedRecurringFee=_s(totals[2]), OnDemandCostOfRIHoursUsed=_s(totals[3]),
                 NetRISavings=_s(totals[3] - totals[2]))
    return {"TimePeriod": _period(day), "Groups": groups, "Total": total}


def _sp_item(*days: dt.date) -> dict:
    """The Savings Plan's figures summed over `days` (one day, or a detail call's range)."""
    commitment = 24 * SP_HOURLY * len(days)
    used = sum(24 * SP_HOURLY * sp_utilisation_pct(d) / 100.0 for d in days)
    on_demand_equivalent = used / 0.72  # the plan's rate: 28% below on demand
    return {
        "Utilization": {"TotalCommitment": _s(commitment), "UsedCommitment": _s(used),
                        "UnusedCommitment": _s(commitment - used),
                        "UtilizationPercentage": _s(100.0 * used / commitment
                                                    if commitment else 0.0)},
        "Savings": {"NetSavings": _s(on_demand_equivalent - commitment),
                    "OnDemandCostEquivalent": _s(on_demand_equivalent)},
        "AmortizedCommitment": {"AmortizedRecurringCommitment": _s(commitment),
                                "AmortizedUpfrontCommitment": _s(0.0),
                                "TotalAmortizedCommitment": _s(commitment)},
    }


def _ri_coverage_groups(day: dt.date) -> list[tuple[str, str, float, float, float]]:
    """(instance type, region, reserved hours, on-demand hours, on-demand rate)."""
    rows = []
    for r in _reservations(day):
        rows.append((r["type"], r["region"], 24.0 * r["count"] * r["used"],
                     24.0 if r["type"] == "m5.xlarge" else 0.0, r["od"]))
    rows.append(("c5.2xlarge", "us-east-1", 0.0, 48.0 + 4 * _noise("c5", day), 0.34))
    return rows


def _coverage_hours(reserved: float, on_demand: float, rate: float) -> dict:
    total = reserved + on_demand
    return {"CoverageHours": {"OnDemandHours": _s(on_demand), "ReservedHours": _s(reserved),
                              "TotalRunningHours": _s(total),
                              "CoverageHoursPercentage": _s(100.0 * reserved / total
                                                            if total else 0.0)},
            "CoverageCost": {"OnDemandCost": _s(on_demand * rate)}}


def _ri_coverage_period(day: dt.date) -> dict:
    groups = _ri_coverage_groups(day)
    reserved = sum(g[2] for g in groups)
    on_demand = sum(g[3] for g in groups)
    total = _coverage_hours(reserved, on_demand, 0.0)
    total["CoverageCost"] = {"OnDemandCost": _s(sum(g[3] * g[4] for g in groups))}
    return {"TimePeriod": _period(day),
            "Groups": [{"Attributes": {"instanceType": t, "region": r},
                        "Coverage": _coverage_hours(res, od, rate)}
                       for t, r, res, od, rate in groups],
            "Total": total}


def _sp_coverage_items(day: dt.date) -> list[dict]:
    used = 24 * SP_HOURLY * sp_utilisation_pct(day) / 100.0
    services = [("Amazon Elastic Compute Cloud - Compute", used * 0.95,
                 60.0 + 3 * _noise("ec2", day)),
                ("AWS Lambda", used * 0.05, 2.5),
                ("Amazon SageMaker", 0.0, sagemaker_on_demand(day))]
    items = []
    for service, covered, on_demand in services:
        if covered + on_demand <= 0:
            continue
        items.append({"Attributes": {"service": service}, "TimePeriod": _period(day),
                      "Coverage": {"SpendCoveredBySavingsPlans": _s(covered),
                                   "OnDemandCost": _s(on_demand),
                                   "TotalCost": _s(covered + on_demand),
                                   "CoveragePercentage": _s(100.0 * covered / (covered + on_demand))}})
    return items


# ---------------------------------------------------------------- the calls


class DemoCommitments:
    """The commitment calls of boto3's Cost Explorer client, for `DemoCostExplorer`
    (which sets `today`, the day the demo runs, and `calls`, every request it took)."""

    today: dt.date
    calls: list[dict]

    def _days(self, kwargs: dict) -> list[dt.date]:
        """The requested days that have figures (up to the day before the demo runs)."""
        if kwargs.get("Granularity", "DAILY") != "DAILY":
            raise ValueError("the demo account only answers DAILY requests")
        start = dt.date.fromisoformat(kwargs["TimePeriod"]["Start"])
        end = min(dt.date.fromisoformat(kwargs["TimePeriod"]["End"]), self.today)
        return [start + dt.timedelta(days=i) for i in range(max((end - start).days, 0))]

    def _paged(self, kwargs: dict, token_key: str, items: list, size: int) -> tuple[list, dict]:
        """The page of `items` the request's token points at, and its next token."""
        self.calls.append(kwargs)
        offset = int(kwargs.get(token_key) or 0)
        more = {token_key: str(offset + size)} if offset + size < len(items) else {}
        return items[offset:offset + size], more

    def get_reservation_utilization(self, **kwargs) -> dict:
        periods = [_ri_utilisation_period(d) for d in self._days(kwargs)]
        page, more = self._paged(kwargs, "NextPageToken", periods, DAYS_PER_PAGE)
        total = _ri_utilisation(0.0, 0.0, 0.0, 0.0)
        return {"UtilizationsByTime": page, "Total": total, **more}

    def get_savings_plans_utilization(self, **kwargs) -> dict:
        self.calls.append(kwargs)
        days = self._days(kwargs)
        return {"SavingsPlansUtilizationsByTime": [{"TimePeriod": _period(d), **_sp_item(d)}
                                                   for d in days],
                "Total": _sp_item(*days)}

    def get_savings_plans_utilization_details(self, **kwargs) -> dict:
        days = self._days({**kwargs, "Granularity": "DAILY"})
        details = [] if not days else [{"SavingsPlanArn": SP_ARN, "Attributes": {
            "SavingsPlansType": "ComputeSavingsPlans", "PaymentOption": "No Upfront",
            "HourlyCommitment": _s(SP_HOURLY), "PurchaseTerm": "3yr",
            "StartDateTime": "2025-03-01T00:00:00.000Z", "EndDateTime": SP_END,
            "Region": "Any", "AccountId": "123456789012"}, **_sp_item(*days)}]
        page, more = self._paged(kwargs, "NextToken", details, kwargs.get("MaxResults", 20))
        return {"SavingsPlansUtilizationDetails": page, "Total": _sp_item(*days),
                "TimePeriod": kwargs["TimePeriod"], **more}

    def get_reservation_coverage(self, **kwargs) -> dict:
        periods = [_ri_coverage_period(d) for d in self._days(kwargs)]
        page, more = self._paged(kwargs, "NextPageToken", periods, DAYS_PER_PAGE)
        return {"CoveragesByTime": page, **more}

    def get_savings_plans_coverage(self, **kwargs) -> dict:
        items = [i for d in self._days(kwargs) for i in _sp_coverage_items(d)]
        page, more = self._paged(kwargs, "NextToken", items, kwargs.get("MaxResults", 20))
        return {"SavingsPlansCoverages": page, **more}

    def get_reservation_purchase_recommendation(self, **kwargs) -> dict:
        self.calls.append(kwargs)
        metadata = {"RecommendationId": f"demo-{self.today:%Y%m%d}",
                    "GenerationTimestamp": _iso(self.today)}
        if kwargs.get("Service") != "Amazon Elastic Compute Cloud - Compute":
            return {"Metadata": metadata, "Recommendations": []}
        return {"Metadata": metadata, "Recommendations": [{
            "AccountScope": "PAYER", "LookbackPeriodInDays": "THIRTY_DAYS",
            "TermInYears": "ONE_YEAR", "PaymentOption": "NO_UPFRONT",
            "RecommendationDetails": [{
                "AccountId": "123456789012",
                "InstanceDetails": {"EC2InstanceDetails": {
                    "Family": "c5", "InstanceType": "c5.2xlarge", "Region": "us-east-1",
                    "Platform": "Linux/UNIX", "Tenancy": "shared", "CurrentGeneration": True,
                    "SizeFlexEligible": True}},
                "RecommendedNumberOfInstancesToPurchase": "2",
                "EstimatedMonthlySavingsAmount": "146.00", "UpfrontCost": "0.00",
                "CurrencyCode": "USD"}],
            "RecommendationSummary": {"TotalEstimatedMonthlySavingsAmount": "146.00",
                                      "TotalEstimatedMonthlySavingsPercentage": "29.4",
                                      "CurrencyCode": "USD"}}]}

    def get_savings_plans_purchase_recommendation(self, **kwargs) -> dict:
        self.calls.append(kwargs)
        return {"Metadata": {"RecommendationId": f"demo-sp-{self.today:%Y%m%d}",
                             "GenerationTimestamp": _iso(self.today)},
                "SavingsPlansPurchaseRecommendation": {
                    "AccountScope": "PAYER", "SavingsPlansType": "COMPUTE_SP",
                    "TermInYears": "ONE_YEAR", "PaymentOption": "NO_UPFRONT",
                    "LookbackPeriodInDays": "THIRTY_DAYS",
                    "SavingsPlansPurchaseRecommendationDetails": [{
                        "AccountId": "123456789012", "HourlyCommitmentToPurchase": "2.50",
                        "EstimatedMonthlySavingsAmount": "412.00", "UpfrontCost": "0.00",
                        "CurrencyCode": "USD", "EstimatedAverageUtilization": "96.1"}],
                    "SavingsPlansPurchaseRecommendationSummary": {
                        "EstimatedMonthlySavingsAmount": "412.00",
                        "HourlyCommitmentToPurchase": "2.50", "TotalRecommendationCount": "1",
                        "CurrencyCode": "USD"}}}
