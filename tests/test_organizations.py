"""Account names from AWS Organizations (moto's organization; botocore's Stubber for a
refusal moto does not make), and the run reading them before its report."""
from __future__ import annotations

import json
import logging

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from _util.run.job import Clients
from _util.run.pipeline import DailyRun, Outcome
from _util.run.run_record import RunRecord
from _util.settings import load_settings
from _util.sources.cost_explorer import CostExplorerSource
from _util.sources.demo_account import DemoCostExplorer
from _util.sources.organizations import (
    ORGANIZATIONS,
    make_organizations_client,
    organization_account_names,
)
from _util.store.account_names import (
    LINKED_ACCOUNT,
    account_name,
    load_account_names,
    save_account_names,
)
from _util.store.database import create_tables, make_engine
from tests.test_run import DAY, TODAY

# More than one page of ListAccounts (moto's pages hold 100).
ACCOUNTS = 120


@pytest.fixture(autouse=True)
def fake_aws_env(clean_env, monkeypatch):
    """Test credentials only, and AWS's own host names, which moto intercepts."""
    monkeypatch.delenv("AWS_ENDPOINT_URL")


@pytest.fixture
def organization():
    """An organization of ACCOUNTS member accounts plus its management account."""
    with mock_aws():
        client = make_organizations_client()
        client.create_organization(FeatureSet="ALL")
        for i in range(ACCOUNTS):
            client.create_account(AccountName=f"team-{i:03d}", Email=f"team-{i}@example.com")
        yield client


def test_every_account_of_the_organization_is_named_over_all_pages(organization):
    calls = []
    organization.meta.events.register("before-call.organizations.ListAccounts",
                                      lambda **kw: calls.append(1))
    names = organization_account_names(organization)
    assert len(names) == ACCOUNTS + 1
    assert {f"team-{i:03d}" for i in range(ACCOUNTS)} <= set(names.values())
    assert all(len(account_id) == 12 and account_id.isdigit() for account_id in names)
    assert len(calls) == 2


@pytest.mark.parametrize("code,advice", [
    ("AccessDeniedException", "organizations:ListAccounts"),
    ("AWSOrganizationsNotInUseException", "COST_TRACKING_ACCOUNT_NAMES_FROM_ORGANIZATIONS=off"),
    ("TooManyRequestsException", "Cost Explorer's names are still used"),
])
def test_a_refusal_is_a_warning_saying_what_to_do_not_an_error(caplog, code, advice):
    """moto answers an account outside any organization with no accounts; AWS refuses."""
    client = boto3.client("organizations", region_name="us-east-1")
    with Stubber(client) as stubber, caplog.at_level(logging.WARNING):
        stubber.add_client_error("list_accounts", code, "refused")
        assert organization_account_names(client) == {}
    assert code in caplog.text and advice in caplog.text


def _daily_run(tmp_path, organizations) -> tuple[DailyRun, RunRecord]:
    """A dry run of the demo's costs grouped by account, reading names from
    `organizations` (a client factory), as the driver would make it."""
    settings = load_settings({"dry_run": True}, {
        "COST_TRACKING_OUTPUT_DIR": str(tmp_path), "COST_TRACKING_GROUP_BY": LINKED_ACCOUNT,
        "COST_TRACKING_ACCOUNT_NAMES_FROM_ORGANIZATIONS": "on",
        # Sections that read other AWS services (moto has no CloudTrail lookups): off.
        "COST_TRACKING_COMMITMENTS": "off", "COST_TRACKING_EC2_USAGE": "off"}, TODAY)
    engine = make_engine(settings.db_url)
    create_tables(engine)
    clients = Clients(source=lambda: CostExplorerSource(DemoCostExplorer(TODAY)),
                      organizations=organizations)
    return DailyRun(settings, engine, clients, TODAY, Outcome()), RunRecord(date=DAY)


def test_a_run_stores_the_organizations_names_before_its_report_shows_names(
        tmp_path, organization):
    run, record = _daily_run(tmp_path, lambda: organization)
    # Names another source gave for the demo's accounts, shown wherever their IDs are.
    demo_ids = {f"1234567890{n:02d}" for n in (13, 14, 16, 23, 24, 28, 37, 45, 65, 74, 88, 92, 97)}
    save_account_names(run.engine, {i: f"account {i[-2:]}" for i in demo_ids}, "cur")

    run.run(record)

    assert run.outcome.problems == []
    expected = organization_account_names(organization)
    with run.engine.connect() as conn:
        rows = conn.execute(account_name.select()).all()
    from_organizations = {r.account_id: r.name for r in rows if r.source == ORGANIZATIONS}
    assert from_organizations == expected
    stage = next(s for s in record.stages if s.name == "account_names")
    assert stage.counts["accounts"] == ACCOUNTS + 1
    names = load_account_names(run.engine)
    data = json.loads((tmp_path / "site" / "reports" / DAY / "report.json").read_text())
    shown = [(a["group"], a["group_name"]) for a in data["alerts"] if a["group"] in names]
    shown += [(a["top_group"], a["top_group_name"]) for a in data["alerts"]
              if a["top_group"] in names]
    assert shown and all(name == names[group] for group, name in shown)


def test_a_run_whose_organizations_access_is_denied_goes_on_without_its_names(
        tmp_path, caplog):
    client = boto3.client("organizations", region_name="us-east-1")
    with Stubber(client) as stubber, caplog.at_level(logging.WARNING):
        stubber.add_client_error("list_accounts", "AccessDeniedException", "not allowed")
        run, record = _daily_run(tmp_path, lambda: client)
        run.run(record)
    assert run.outcome.problems == []
    assert "organizations:ListAccounts" in caplog.text
    assert (tmp_path / "site" / "reports" / DAY / "report.json").is_file()
