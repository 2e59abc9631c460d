"""Account IDs shown with their names (group_by LINKED_ACCOUNT): the account_name table on
SQLite and MariaDB, naming a report's alerts, and the name reaching Slack, the pages, the
plots and report.json inert, by the same paths as the group value."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import sqlalchemy as sa

import procPlotting
import runCostReporting
from _util import sections
from _util.alert_kinds import SPIKE, TREND, UP
from _util.report import alert_to_dict, with_group_names
from _util.sections.base import SiteContext
from _util.settings import load_settings
from _util.site import pages as site_pages
from _util.site.plot_drawing import label
from _util.slack.message import build_message
from _util.store.account_names import (
    LINKED_ACCOUNT,
    load_account_names,
    save_account_names,
)
from tests.test_run import DAY, TODAY, _run
from tests.test_slack_message import alert, report, section_texts

ID = "123456789012"
OTHER = "210987654321"
HOSTILE_NAME = "<!channel> \u202eprod"


# ---- the table ------------------------------------------------------------------------

def test_names_round_trip_and_a_later_source_replaces_a_name(db_engine):
    assert load_account_names(db_engine) == {}
    assert save_account_names(db_engine, {ID: "prod-web", OTHER: "staging 🚀 ü"},
                              "cost-explorer") == 2
    assert load_account_names(db_engine) == {ID: "prod-web", OTHER: "staging 🚀 ü"}
    save_account_names(db_engine, {ID: "prod-web-renamed"}, "organizations")
    assert load_account_names(db_engine) == {ID: "prod-web-renamed", OTHER: "staging 🚀 ü"}


def test_empty_names_and_ids_are_ignored_not_stored(db_engine):
    assert save_account_names(db_engine, {ID: "", OTHER: "   ", "": "nameless id"}, "cur") == 0
    assert save_account_names(db_engine, {}, "cur") == 0
    assert load_account_names(db_engine) == {}


def test_a_hostile_name_is_stored_exactly_and_a_long_one_cut_to_the_column(db_engine):
    save_account_names(db_engine, {ID: HOSTILE_NAME, OTHER: "x" * 300}, "organizations")
    names = load_account_names(db_engine)
    assert names[ID] == HOSTILE_NAME
    assert names[OTHER] == "x" * 256


def test_the_table_is_created_with_the_others(db_engine):
    columns = {c["name"] for c in sa.inspect(db_engine).get_columns("account_name")}
    assert columns == {"account_id", "name", "source", "updated_at"}


# ---- naming a report's alerts ---------------------------------------------------------

def test_alerts_get_the_names_of_their_group_and_top_group_when_known():
    rep = report([alert(SPIKE, UP, top_group=ID, top_group_delta_usd=80.0),
                  alert(SPIKE, UP, group=ID), alert(TREND, UP, group=OTHER),
                  alert(TREND, UP, group="")], group_by=LINKED_ACCOUNT)
    named = with_group_names(rep, {ID: "prod-web"})
    service, group, unknown, untagged = named.alerts
    assert (service.group_name, service.top_group_name) == (None, "prod-web")
    assert (group.group_name, group.top_group_name) == ("prod-web", None)
    assert unknown.group_name is None and untagged.group_name is None
    assert alert_to_dict(service)["top_group_name"] == "prod-web"
    assert alert_to_dict(unknown)["group_name"] is None
    assert with_group_names(rep, {}) is rep


# ---- shown ----------------------------------------------------------------------------

def _named_report(name: str):
    alerts = [alert(SPIKE, UP, service="Amazon EC2", delta=300, top_group=ID,
                    top_group_delta_usd=250.0, top_group_name=name),
              alert(SPIKE, UP, service="Amazon RDS", group=ID, delta=90, group_name=name),
              alert(TREND, UP, service="AWS Lambda", group=ID, delta=20, group_name=name,
                    status="continuing", episode_days=3)]
    return report(alerts, group_by=LINKED_ACCOUNT)


def test_slack_shows_the_account_id_with_its_name():
    texts = "\n".join(section_texts(build_message(_named_report("prod-web"), None)))
    assert f"*Amazon RDS* › {ID} (prod-web)" in texts
    assert f"driven by {ID} (prod-web) (+$250.00)" in texts
    assert f"AWS Lambda › {ID} (prod-web)" in texts  # the continuing line


def test_a_hostile_account_name_is_inert_in_slack():
    message = build_message(_named_report(HOSTILE_NAME), None)
    texts = "\n".join(section_texts(message) + [message.text])
    assert f"{ID} (&lt;!channel&gt; \\u202eprod)" in texts
    assert "<!channel>" not in texts and "\u202e" not in texts


def test_pages_and_plots_show_the_account_id_with_its_name(tmp_path):
    rep = _named_report("prod-web")
    service, group, _ = rep.alerts
    assert site_pages.alert_label(group) == f"Amazon RDS · {ID} (prod-web)"
    assert dict(site_pages.alert_numbers(group, rep, "364 days"))["Group"] == f"{ID} (prod-web)"
    assert dict(site_pages.alert_numbers(service, rep, "364 days"))[
        f"Group that moved most ({LINKED_ACCOUNT})"] == f"{ID} (prod-web): +$250.00"
    assert f"Amazon RDS ({ID} (prod-web)) cost" in site_pages.alert_sentence(group, rep,
                                                                             "364 days")
    assert label(site_pages.alert_label(group, isolate=False)) == f"Amazon RDS · {ID} (prod-web)"
    page = sections.report_page(rep, sections.site_parts(
        rep, pd.DataFrame(), SiteContext(tmp_path, "reports/x", None)))
    assert f"{ID} (prod-web)" in page  # the Group column
    assert f"{ID} (prod-web): <span" in page  # Moved most


def test_a_hostile_account_name_is_inert_on_pages_and_plots(tmp_path):
    rep = _named_report(HOSTILE_NAME)
    _, group, _ = rep.alerts
    page = sections.report_page(rep, sections.site_parts(
        rep, pd.DataFrame(), SiteContext(tmp_path, "reports/x", None)))
    plot_page = site_pages.plot_page(
        f"Spike: {site_pages.alert_label(group)}", rep.day, "x.png", "alt",
        site_pages.alert_sentence(group, rep, "364 days"),
        site_pages.alert_numbers(group, rep, "364 days"), ["Date"], [["2024-05-14"]], "Recent")
    for html in (page, plot_page):
        assert "<!channel>" not in html and "&lt;!channel&gt;" in html
        # Every override is in the name's own isolation (FSI...PDI, inside a <bdi> or a
        # title), so it cannot turn the ID, the parentheses or what follows around.
        isolated_name = "\u2068&lt;!channel&gt; \u202eprod\u2069"
        assert html.count("\u202e") == html.count(isolated_name) > 0
    assert f"<bdi>{ID} ({isolated_name})</bdi>" in page
    title = label(site_pages.alert_label(group, isolate=False), procPlotting.TITLE_CHARS)
    assert title == f"Amazon RDS · {ID} (<!channel> \\u202eprod)"


# ---- the demo, end to end -------------------------------------------------------------

def test_the_demo_grouped_by_account_shows_account_names_everywhere(tmp_path, clean_env):
    """The demo's Cost Explorer names its accounts; ingest stores `fetch.group_names`
    (procAmzData) and the report shows them."""
    assert _run(["--demo", "--dry-run"], tmp_path, COST_TRACKING_GROUP_BY=LINKED_ACCOUNT) == 0
    data = json.loads((tmp_path / "site" / "reports" / DAY / "report.json").read_text())
    named = [a for a in data["alerts"] if a["group_name"] or a["top_group_name"]]
    assert named, "no alert names its account"
    for a in named:
        assert (a["group_name"] or a["top_group_name"]).startswith("demo-")
    payload = (tmp_path / "slack" / f"{DAY}.json").read_text()
    assert " (demo-" in payload
    page = (tmp_path / "site" / "reports" / DAY / "index.html").read_text()
    assert " (demo-" in page


@pytest.mark.parametrize("env,expected", [
    ({"COST_TRACKING_GROUP_BY": LINKED_ACCOUNT,
      "COST_TRACKING_ACCOUNT_NAMES_FROM_ORGANIZATIONS": "on"}, True),
    ({"COST_TRACKING_GROUP_BY": LINKED_ACCOUNT}, False),
    ({"COST_TRACKING_GROUP_BY": "REGION",
      "COST_TRACKING_ACCOUNT_NAMES_FROM_ORGANIZATIONS": "on"}, False),
    ({"COST_TRACKING_GROUP_BY": LINKED_ACCOUNT, "COST_TRACKING_SOURCE": "demo",
      "COST_TRACKING_ACCOUNT_NAMES_FROM_ORGANIZATIONS": "on"}, False),
])
def test_organizations_is_asked_only_for_account_groups_when_the_setting_is_on(
        tmp_path, env, expected):
    environ = {"COST_TRACKING_OUTPUT_DIR": str(tmp_path), **env}
    settings = load_settings({}, environ, TODAY)
    assert runCostReporting.make_clients(settings, TODAY).names_accounts is expected
    skipping = load_settings({"skip_fetch": True}, environ, TODAY)
    assert runCostReporting.make_clients(skipping, TODAY).names_accounts is False
