"""Cost Explorer as a cost source: the client factory, the GetCostAndUsage request, and
response parsing.

The client is anything with boto3's `get_cost_and_usage` (boto3's own, a Stubber-wrapped
one in tests, or the demo account), so the same code runs in production and in the demo.
"""
from __future__ import annotations

import datetime as dt
import logging
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

import botocore.exceptions

from _util.errors import SourceError, SourceUnavailable, UnusableResponse
from _util.sources.base import CostQuery
from _util.store.account_names import LINKED_ACCOUNT
from _util.store.cost_store import CostRow

if TYPE_CHECKING:
    from botocore.config import Config

    from _util.settings import Settings

log = logging.getLogger(__name__)

# Throttling (LimitExceededException, ThrottlingException), 5xx and connection errors are
# retried with exponential backoff and jitter by botocore's standard retry mode. A daily
# cron run can afford patience: 8 attempts in all (about half a minute of backoff on
# average), unless the AWS config says otherwise (AWS_MAX_ATTEMPTS, or max_attempts in the
# profile), which an explicit count in the client Config would silently override.
CE_MAX_ATTEMPTS = 8
# Cost Explorer keeps daily data for about 14 months; stay a month inside that.
CE_DAILY_RETENTION_DAYS = 395
_CURRENCY = re.compile(r"^[A-Z]{3}$")


# What botocore raises when Cost Explorer could not be reached (after its retries).
CONNECTION_ERRORS = (botocore.exceptions.EndpointConnectionError,
                     botocore.exceptions.ConnectionClosedError,
                     botocore.exceptions.ReadTimeoutError,
                     botocore.exceptions.ConnectTimeoutError)

def ce_retry_config() -> Config:
    """Standard retry mode; CE_MAX_ATTEMPTS attempts unless the AWS config sets a count."""
    import botocore.session
    from botocore.config import Config

    retries = {"mode": "standard"}
    if botocore.session.get_session().get_config_variable("max_attempts") is None:
        retries["total_max_attempts"] = CE_MAX_ATTEMPTS
    return Config(retries=retries, connect_timeout=10, read_timeout=60)


def make_ce_client() -> Any:
    """boto3's Cost Explorer client with the standard credential chain and endpoint settings.

    Cost Explorer has one endpoint, in us-east-1; AWS_ENDPOINT_URL_COST_EXPLORER (or
    AWS_ENDPOINT_URL) redirects it as usual.

    boto3 (and botocore's client machinery) is imported here, with the first client, not
    with the bot: about 0.1 s that a run making no AWS client (the demo, --skip-fetch
    with --dry-run) does without. The other client factories do the same.
    """
    import boto3

    session = boto3.session.Session()  # fresh: never credentials cached by an earlier client
    return session.client("ce", region_name=session.region_name or "us-east-1",
                          config=ce_retry_config())


def group_definitions(group_by: str) -> list[dict[str, str]]:
    groups = [{"Type": "DIMENSION", "Key": "SERVICE"}]
    if group_by.startswith("TAG:"):
        groups.append({"Type": "TAG", "Key": group_by[4:]})
    elif group_by != "NONE":
        groups.append({"Type": "DIMENSION", "Key": group_by})
    return groups


def build_request(start: dt.date, end_exclusive: dt.date, metric: str, group_by: str,
                  exclude_record_types: tuple[str, ...]) -> dict[str, Any]:
    """The GetCostAndUsage parameters for one time range (End is exclusive)."""
    request: dict[str, Any] = {
        "TimePeriod": {"Start": start.isoformat(), "End": end_exclusive.isoformat()},
        "Granularity": "DAILY",
        "Metrics": [metric],
        "GroupBy": group_definitions(group_by),
    }
    if exclude_record_types:
        request["Filter"] = {"Not": {"Dimensions": {
            "Key": "RECORD_TYPE", "Values": list(exclude_record_types)}}}
    return request


def _group_value(key: str | None, group_by: str) -> str:
    """The stored group: the tag's value without its `Key$` prefix; "" when untagged."""
    if key is None:
        return ""
    if group_by.startswith("TAG:"):
        return key.split("$", 1)[1] if "$" in key else key
    return key


def _amount(group: dict, metric: str, day: dt.date, units: set[str]) -> tuple[float, str]:
    """The group's amount and unit; `units` holds the units already found to be currency
    codes (one or two per account), so the check runs once per unit, not once per row."""
    keys = group.get("Keys")
    metrics = group.get("Metrics")
    metrics = metrics if isinstance(metrics, dict) else {}
    if metric not in metrics:
        raise UnusableResponse(
            f"Cost Explorer returned a group without {metric} on {day} (keys {keys}); "
            "nothing was stored"
        )
    value = metrics[metric] if isinstance(metrics[metric], dict) else {}
    raw_amount = value.get("Amount")
    unit = value.get("Unit")
    try:
        amount = float(raw_amount)
    except (TypeError, ValueError):
        raise UnusableResponse(
            f"Cost Explorer returned a non-numeric amount {raw_amount!r} on {day} "
            f"(keys {keys}); nothing was stored") from None
    if not math.isfinite(amount):
        raise UnusableResponse(f"Cost Explorer returned amount {raw_amount!r} on {day} "
                               f"(keys {keys}); nothing was stored")
    if not isinstance(unit, str) or unit not in units:
        if not isinstance(unit, str) or not _CURRENCY.match(unit):
            raise UnusableResponse(
                f"Cost Explorer returned the unit {unit!r} on {day} (keys {keys}), not a "
                "currency code; nothing was stored")
        units.add(unit)
    return amount, unit


def dimension_names(response: dict) -> dict[str, str]:
    """Account ID -> name from a page's `DimensionValueAttributes` (Cost Explorer sends
    `{"Value": "123456789012", "Attributes": {"description": "prod-web"}}` per linked
    account it returns). A name only decorates a group: an entry without one is skipped,
    never a reason to refuse the page."""
    names = {}
    for entry in response.get("DimensionValueAttributes") or []:
        if not isinstance(entry, dict):
            continue
        value, attributes = entry.get("Value"), entry.get("Attributes")
        name = attributes.get("description") if isinstance(attributes, dict) else None
        if isinstance(value, str) and value and isinstance(name, str) and name.strip():
            names[value] = name
    return names


def _period_day(period: Any) -> dt.date:
    try:
        return dt.date.fromisoformat(period["TimePeriod"]["Start"])
    except (KeyError, TypeError, ValueError):
        shown = repr(period)[:120]
        raise UnusableResponse(f"Cost Explorer returned a period without a valid start date "
                               f"({shown}); nothing was stored") from None


def _explain(exc: botocore.exceptions.ClientError) -> SourceError:
    code = exc.response.get("Error", {}).get("Code", "")
    message = exc.response.get("Error", {}).get("Message", "")
    if code in ("AccessDeniedException", "AccessDenied", "UnauthorizedOperation"):
        return SourceError("Cost Explorer denied access: the bot's role needs the IAM action "
                           f"ce:GetCostAndUsage ({code})")
    if code in ("UnrecognizedClientException", "InvalidClientTokenId", "ExpiredTokenException",
                "InvalidSignatureException"):
        return SourceError(f"AWS rejected the credentials ({code}): check AWS_PROFILE or the "
                           "instance role")
    if code == "DataUnavailableException":
        return SourceError("Cost Explorer has no data for the range (DataUnavailable): is Cost "
                           "Explorer enabled for this account, and is the date within 14 months?")
    if code == "BillExpirationException":
        return SourceError(f"Cost Explorer refused the range ({code}): {message}")
    if code in ("ValidationException", "InvalidNextTokenException", "RequestChangedException"):
        return SourceError(f"Cost Explorer refused the request ({code}): {message}")
    return SourceUnavailable(f"Cost Explorer kept failing ({code or 'error'}): {message}")


class CostFetch:
    """Days start..end (inclusive) from Cost Explorer: one TimePeriod, every page followed,
    given out as rows a day at a time while the pages arrive.

    A first backfill of 50,000 series is 18M rows; holding them until the last page would
    take gigabytes, so the caller writes each day as soon as the answer has moved past it
    (Cost Explorer splits a day's groups over consecutive pages, never sends a day twice
    apart). Inside one day, keys that coincide once stored (`Name$` and no tag are both the
    untagged group "") are summed. Iterate once, inside the transaction that stores the
    rows: an unusable answer raises on the page where it shows, so nothing is stored.
    `requests`, `days`, `unsettled_days` (those still Estimated) and `rows` are complete
    when iteration ends. Grouped by LINKED_ACCOUNT, `group_names` gathers the accounts'
    names the pages carry (account ID -> name), for ingest to store.
    """

    def __init__(self, client: Any, start: dt.date, end: dt.date, metric: str, group_by: str,
                 exclude_record_types: tuple[str, ...]) -> None:
        self.client = client
        self.start, self.end = start, end
        self.metric, self.group_by = metric, group_by
        self.request = build_request(start, end + dt.timedelta(days=1), metric, group_by,
                                     exclude_record_types)
        self.requests = 0
        self.rows = 0
        self.days: set[dt.date] = set()
        self.unsettled_days: set[dt.date] = set()
        self.group_names: dict[str, str] = {}

    def __iter__(self) -> Iterator[CostRow]:
        units: set[str] = set()
        day: dt.date | None = None  # the day being gathered
        merged: dict[tuple[str, str], list] = {}  # (service, group) -> [amount, unit, estimated]
        for response in self._pages():
            if self.group_by == LINKED_ACCOUNT:
                self.group_names.update(dimension_names(response))
            for period in response.get("ResultsByTime", []):
                period_day = _period_day(period)
                if not self.start <= period_day <= self.end:
                    raise UnusableResponse(
                        f"Cost Explorer returned {period_day}, outside the requested "
                        f"{self.start}..{self.end}; nothing was stored")
                if period_day != day:
                    if period_day in self.days:
                        raise UnusableResponse(
                            f"Cost Explorer returned {period_day} again after other days; "
                            "nothing was stored")
                    yield from self._day_rows(day, merged)
                    day, merged = period_day, {}
                    self.days.add(day)
                estimated = bool(period.get("Estimated", False))
                if estimated:
                    self.unsettled_days.add(day)
                self._fold(period, day, estimated, merged, units)
        yield from self._day_rows(day, merged)
        log.info("fetched %s..%s: %d rows over %d days in %d request(s)",
                 self.start, self.end, self.rows, len(self.days), self.requests)

    def _fold(self, period: dict, day: dt.date, estimated: bool, merged: dict,
              units: set[str]) -> None:
        for group in period.get("Groups") or []:
            keys = (group.get("Keys") if isinstance(group, dict) else None) or []
            if not keys:
                raise UnusableResponse(f"Cost Explorer returned a group without keys on {day}; "
                                       "nothing was stored")
            key = (keys[0], _group_value(keys[1] if len(keys) > 1 else None, self.group_by))
            amount, unit = _amount(group, self.metric, day, units)
            slot = merged.get(key)
            if slot is None:
                merged[key] = [amount, unit, estimated]
            else:
                slot[0] += amount
                slot[2] = slot[2] or estimated

    def _day_rows(self, day: dt.date | None, merged: dict) -> Iterator[CostRow]:
        self.rows += len(merged)
        for (service, group), (amount, unit, estimated) in merged.items():
            yield CostRow(day, service, group, amount, unit, estimated)

    def _pages(self) -> Iterator[dict]:
        token = None
        while True:
            params = dict(self.request, NextPageToken=token) if token else self.request
            try:
                response = self.client.get_cost_and_usage(**params)
            except botocore.exceptions.NoCredentialsError:
                raise SourceError("no AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID/"
                                  "AWS_SECRET_ACCESS_KEY, or run on an instance with a role") from None
            except botocore.exceptions.ClientError as exc:
                self.requests += 1
                raise _explain(exc) from exc
            except CONNECTION_ERRORS as exc:
                raise SourceUnavailable(f"cannot reach Cost Explorer: {exc}") from exc
            self.requests += 1
            yield response
            token = response.get("NextPageToken")
            if not token:
                return


@dataclass
class CostExplorerSource:
    """Cost Explorer's GetCostAndUsage as a `CostSource`; `client` is boto3's client or
    anything that answers like it (the demo account, a stand-in in tests)."""

    client: Any
    account: str = "aws"
    name: str = "cost-explorer"
    retention_days: int = CE_DAILY_RETENTION_DAYS

    def fetch(self, start: dt.date, end: dt.date, query: CostQuery) -> CostFetch:
        return CostFetch(self.client, start, end, query.metric, query.group_by,
                         query.exclude_record_types)


def cost_explorer_source(settings: "Settings", today: dt.date) -> CostExplorerSource:
    """The production source: boto3's client for this account's Cost Explorer."""
    return CostExplorerSource(make_ce_client())
