"""Cost Explorer requests and response parsing, against botocore's Stubber.

The Stubber checks every request and response against the real service model, so a
parameter the API would refuse fails here too.
"""
from __future__ import annotations

import datetime as dt

import pytest

from _util.errors import SourceError, SourceUnavailable, UnusableResponse
from _util.sources.cost_explorer import CostFetch, build_request
from _util.sources.demo_account import DemoCostExplorer

D = dt.date


def _period(day: str, groups: list[tuple[str, str, str]], estimated: bool = False) -> dict:
    start = D.fromisoformat(day)
    return {
        "TimePeriod": {"Start": day, "End": (start + dt.timedelta(days=1)).isoformat()},
        "Total": {},
        "Groups": [{"Keys": [svc, key], "Metrics": {"UnblendedCost": {"Amount": amt, "Unit": "USD"}}}
                   for svc, key, amt in groups],
        "Estimated": estimated,
    }


def _request(start: str, end_exclusive: str, token: str | None = None, **kw) -> dict:
    req = build_request(D.fromisoformat(start), D.fromisoformat(end_exclusive), "UnblendedCost",
                        kw.get("group_by", "TAG:Name"), kw.get("exclude", ("Credit", "Refund")))
    if token:
        req["NextPageToken"] = token
    return req


def test_request_has_one_time_period_daily_grouping_and_record_type_filter():
    req = build_request(D(2026, 1, 1), D(2026, 2, 1), "AmortizedCost", "TAG:team", ("Credit", "Refund"))
    assert req == {
        "TimePeriod": {"Start": "2026-01-01", "End": "2026-02-01"},
        "Granularity": "DAILY",
        "Metrics": ["AmortizedCost"],
        "GroupBy": [{"Type": "DIMENSION", "Key": "SERVICE"}, {"Type": "TAG", "Key": "team"}],
        "Filter": {"Not": {"Dimensions": {"Key": "RECORD_TYPE", "Values": ["Credit", "Refund"]}}},
    }


@pytest.mark.parametrize("group_by,expected", [
    ("NONE", [{"Type": "DIMENSION", "Key": "SERVICE"}]),
    ("REGION", [{"Type": "DIMENSION", "Key": "SERVICE"}, {"Type": "DIMENSION", "Key": "REGION"}]),
    ("LINKED_ACCOUNT", [{"Type": "DIMENSION", "Key": "SERVICE"},
                        {"Type": "DIMENSION", "Key": "LINKED_ACCOUNT"}]),
])
def test_group_by_setting_maps_to_cost_explorer_group_definitions(group_by, expected):
    assert build_request(D(2026, 1, 1), D(2026, 1, 2), "UnblendedCost", group_by, ())["GroupBy"] == expected


def test_empty_exclusion_sends_no_filter():
    assert "Filter" not in build_request(D(2026, 1, 1), D(2026, 1, 2), "UnblendedCost", "NONE", ())


def test_pages_are_followed_and_a_day_split_over_pages_is_merged(stubbed):
    client, stubber = stubbed
    stubber.add_response("get_cost_and_usage", {
        "ResultsByTime": [_period("2026-03-01", [("EC2", "Name$web", "10.5")]),
                          _period("2026-03-02", [("EC2", "Name$web", "1.25")])],
        "NextPageToken": "p2",
    }, _request("2026-03-01", "2026-03-04"))
    stubber.add_response("get_cost_and_usage", {
        "ResultsByTime": [_period("2026-03-02", [("EC2", "Name$", "2.00"), ("S3", "Name$web", "0.5")]),
                          _period("2026-03-03", [], estimated=True)],
    }, _request("2026-03-01", "2026-03-04", token="p2"))

    result = CostFetch(client, D(2026, 3, 1), D(2026, 3, 3), "UnblendedCost", "TAG:Name",
                       ("Credit", "Refund"))

    rows = {(r.usage_date, r.service, r.group_value): r.amount for r in result}
    assert result.requests == 2
    assert result.rows == 4
    assert rows == {(D(2026, 3, 1), "EC2", "web"): 10.5, (D(2026, 3, 2), "EC2", "web"): 1.25,
                    (D(2026, 3, 2), "EC2", ""): 2.0, (D(2026, 3, 2), "S3", "web"): 0.5}
    assert result.days == {D(2026, 3, 1), D(2026, 3, 2), D(2026, 3, 3)}
    assert result.unsettled_days == {D(2026, 3, 3)}


def test_same_key_on_two_pages_of_one_day_is_summed_not_duplicated(stubbed):
    client, stubber = stubbed
    stubber.add_response("get_cost_and_usage", {
        "ResultsByTime": [_period("2026-03-01", [("EC2", "Name$web", "1.10")])], "NextPageToken": "x"},
        _request("2026-03-01", "2026-03-02"))
    stubber.add_response("get_cost_and_usage", {
        "ResultsByTime": [_period("2026-03-01", [("EC2", "Name$web", "2.20")])]},
        _request("2026-03-01", "2026-03-02", token="x"))
    result = CostFetch(client, D(2026, 3, 1), D(2026, 3, 1), "UnblendedCost", "TAG:Name",
                       ("Credit", "Refund"))
    assert [(r.group_value, round(r.amount, 2)) for r in result] == [("web", 3.3)]


def test_each_day_is_given_out_once_the_answer_moves_past_it_not_after_the_last_page(stubbed):
    """A first backfill of a large account is millions of rows: a day is written while
    later pages are still to be fetched."""
    client, stubber = stubbed
    stubber.add_response("get_cost_and_usage", {
        "ResultsByTime": [_period("2026-03-01", [("EC2", "Name$web", "1.00")]),
                          _period("2026-03-02", [("EC2", "Name$web", "2.00")])],
        "NextPageToken": "p2"}, _request("2026-03-01", "2026-03-04"))
    stubber.add_response("get_cost_and_usage", {
        "ResultsByTime": [_period("2026-03-02", [("S3", "Name$web", "3.00")]),
                          _period("2026-03-03", [("S3", "Name$web", "4.00")])]},
        _request("2026-03-01", "2026-03-04", token="p2"))
    fetch = CostFetch(client, D(2026, 3, 1), D(2026, 3, 3), "UnblendedCost", "TAG:Name",
                      ("Credit", "Refund"))
    rows = iter(fetch)

    assert next(rows).usage_date == D(2026, 3, 1)
    assert fetch.requests == 1  # the second page is not asked for yet
    assert sorted((r.usage_date, r.service) for r in rows) == [
        (D(2026, 3, 2), "EC2"), (D(2026, 3, 2), "S3"), (D(2026, 3, 3), "S3")]
    assert fetch.requests == 2


def test_a_day_sent_again_after_other_days_is_refused_rather_than_stored_twice(stubbed):
    client, stubber = stubbed
    stubber.add_response("get_cost_and_usage", {
        "ResultsByTime": [_period("2026-03-01", [("EC2", "Name$web", "1.00")]),
                          _period("2026-03-02", [("EC2", "Name$web", "2.00")])],
        "NextPageToken": "p2"}, _request("2026-03-01", "2026-03-03"))
    stubber.add_response("get_cost_and_usage", {
        "ResultsByTime": [_period("2026-03-01", [("EC2", "Name$web", "5.00")])]},
        _request("2026-03-01", "2026-03-03", token="p2"))
    with pytest.raises(UnusableResponse, match="2026-03-01 again after other days"):
        list(CostFetch(client, D(2026, 3, 1), D(2026, 3, 2), "UnblendedCost", "TAG:Name",
                       ("Credit", "Refund")))


def test_a_day_outside_the_range_is_refused_on_the_page_that_holds_it(stubbed):
    client, stubber = stubbed
    stubber.add_response("get_cost_and_usage", {
        "ResultsByTime": [_period("2026-03-05", [("EC2", "Name$web", "1.00")])],
        "NextPageToken": "p2"}, _request("2026-03-01", "2026-03-02"))
    with pytest.raises(UnusableResponse, match="2026-03-05, outside the requested"):
        list(CostFetch(client, D(2026, 3, 1), D(2026, 3, 1), "UnblendedCost", "TAG:Name",
                       ("Credit", "Refund")))


@pytest.mark.parametrize("group,message", [
    ({"Keys": ["EC2", "Name$a"], "Metrics": {}}, "without UnblendedCost"),
    ({"Keys": ["EC2", "Name$a"], "Metrics": {"UnblendedCost": {"Amount": "abc", "Unit": "USD"}}},
     "non-numeric amount 'abc'"),
    ({"Keys": ["EC2", "Name$a"], "Metrics": {"UnblendedCost": {"Amount": "1.0", "Unit": "Hrs"}}},
     "unit 'Hrs'"),
])
def test_malformed_groups_are_rejected_with_a_clear_message(stubbed, group, message):
    client, stubber = stubbed
    period = _period("2026-03-01", [])
    period["Groups"] = [group]
    stubber.add_response("get_cost_and_usage", {"ResultsByTime": [period]},
                         _request("2026-03-01", "2026-03-02"))
    with pytest.raises(SourceError, match=message) as info:
        list(CostFetch(client, D(2026, 3, 1), D(2026, 3, 1), "UnblendedCost", "TAG:Name",
                       ("Credit", "Refund")))
    assert "nothing was stored" in str(info.value)


def test_a_unit_that_is_not_even_a_string_is_an_unusable_answer():
    """botocore's parser would not produce it; a proxy or a stand-in might."""
    class Client:
        def get_cost_and_usage(self, **_):
            period = _period("2026-03-01", [])
            period["Groups"] = [{"Keys": ["EC2", "Name$a"],
                                 "Metrics": {"UnblendedCost": {"Amount": "1.0", "Unit": ["USD"]}}}]
            return {"ResultsByTime": [period]}

    with pytest.raises(UnusableResponse, match=r"unit \['USD'\]"):
        list(CostFetch(Client(), D(2026, 3, 1), D(2026, 3, 1), "UnblendedCost", "TAG:Name", ()))


def test_negative_amounts_are_kept_as_credits(stubbed):
    client, stubber = stubbed
    stubber.add_response("get_cost_and_usage", {
        "ResultsByTime": [_period("2026-03-01", [("EC2", "Name$", "-12.50")])]},
        _request("2026-03-01", "2026-03-02", exclude=()))
    rows = list(CostFetch(client, D(2026, 3, 1), D(2026, 3, 1), "UnblendedCost", "TAG:Name", ()))
    assert rows[0].amount == -12.5


@pytest.mark.parametrize("code,expected,kind", [
    ("AccessDeniedException", "ce:GetCostAndUsage", SourceError),
    ("DataUnavailableException", "DataUnavailable", SourceError),
    ("UnrecognizedClientException", "credentials", SourceError),
    ("InternalServerException", "kept failing", SourceUnavailable),
])
def test_client_errors_become_one_line_source_errors(stubbed, code, expected, kind):
    client, stubber = stubbed
    stubber.add_client_error("get_cost_and_usage", service_error_code=code, service_message="nope")
    with pytest.raises(kind, match=expected) as info:
        list(CostFetch(client, D(2026, 3, 1), D(2026, 3, 1), "UnblendedCost", "TAG:Name", ()))
    assert "\n" not in str(info.value)
    assert (kind is SourceUnavailable) == isinstance(info.value, SourceUnavailable)


def _attributes(*pairs: tuple[str, str]) -> list[dict]:
    return [{"Value": value, "Attributes": {"description": name}} for value, name in pairs]


def test_account_names_are_read_from_every_pages_dimension_value_attributes(stubbed):
    """Grouped by LINKED_ACCOUNT, Cost Explorer names the accounts each page returns."""
    client, stubber = stubbed
    stubber.add_response("get_cost_and_usage", {
        "GroupDefinitions": [{"Type": "DIMENSION", "Key": "SERVICE"},
                             {"Type": "DIMENSION", "Key": "LINKED_ACCOUNT"}],
        "ResultsByTime": [_period("2026-03-01", [("EC2", "123456789012", "10.00")])],
        "DimensionValueAttributes": _attributes(("123456789012", "prod-web")),
        "NextPageToken": "p2",
    }, _request("2026-03-01", "2026-03-02", group_by="LINKED_ACCOUNT"))
    stubber.add_response("get_cost_and_usage", {
        "ResultsByTime": [_period("2026-03-01", [("S3", "210987654321", "2.00"),
                                                 ("S3", "555555555555", "1.00")])],
        "DimensionValueAttributes": _attributes(("210987654321", "staging <!here> \u202e"),
                                                ("555555555555", "")),
    }, _request("2026-03-01", "2026-03-02", token="p2", group_by="LINKED_ACCOUNT"))
    fetch = CostFetch(client, D(2026, 3, 1), D(2026, 3, 1), "UnblendedCost", "LINKED_ACCOUNT",
                      ("Credit", "Refund"))
    assert fetch.group_names == {}
    rows = list(fetch)
    assert {r.group_value for r in rows} == {"123456789012", "210987654321", "555555555555"}
    # Stored exactly as sent; an empty name is no name.
    assert fetch.group_names == {"123456789012": "prod-web",
                                 "210987654321": "staging <!here> \u202e"}


def test_other_groupings_take_no_names(stubbed):
    client, stubber = stubbed
    stubber.add_response("get_cost_and_usage", {
        "ResultsByTime": [_period("2026-03-01", [("EC2", "us-east-1", "1.00")])],
        "DimensionValueAttributes": _attributes(("us-east-1", "US East (N. Virginia)")),
    }, _request("2026-03-01", "2026-03-02", group_by="REGION"))
    fetch = CostFetch(client, D(2026, 3, 1), D(2026, 3, 1), "UnblendedCost", "REGION",
                      ("Credit", "Refund"))
    list(fetch)
    assert fetch.group_names == {}


def test_the_demo_names_its_invented_accounts_like_cost_explorer():
    demo = DemoCostExplorer(D(2026, 11, 23), page_groups=50)
    fetch = CostFetch(demo, D(2026, 11, 1), D(2026, 11, 22), "UnblendedCost", "LINKED_ACCOUNT",
                      ("Credit", "Refund"))
    accounts = {r.group_value for r in fetch}
    assert fetch.requests > 1  # names gathered over several pages
    assert set(fetch.group_names) == accounts
    assert fetch.group_names["123456789024"] == "demo-web-prod"
    assert all(name.startswith("demo-") for name in fetch.group_names.values())
    page = demo.get_cost_and_usage(**build_request(D(2026, 11, 1), D(2026, 11, 2),
                                                   "UnblendedCost", "TAG:Name", ()))
    assert page["DimensionValueAttributes"] == []
