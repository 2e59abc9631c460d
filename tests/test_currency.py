"""Costs in another currency than US dollars: shown in it everywhere, and never mixed.

Cost Explorer answers in the account's billing unit (`"Unit": "EUR"`); the demo account
answers in any currency it is given. Runs go through real boto3 to the Cost Explorer
stand-in and post to the Slack stand-in; the database is a real SQLite file (and the real
MariaDB for the store's refusal).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from _util.errors import MixedCurrencies
from _util.money import USD, current_currency, in_currency, money, signed_money
from _util.site import plot_drawing, plot_workers
from _util.sources.demo_account import DemoAccount, DemoCostExplorer
from _util.store.cost_store import CostRow, SourceState, replace_days, stored_currency
from tests.ce_standin import CostExplorerStandIn
from tests.ops_support import (
    DAY,
    METRIC,
    TODAY,
    backfill,
    copy_template,
    cost_rows,
    run_bot,
    slack_env,
)
from tests.slack_standin import running_standin

NEXT_TODAY = TODAY + dt.timedelta(days=1)
NEXT_DAY = DAY + dt.timedelta(days=1)
# A dollar amount as the bot writes one: "$12.00", "-$3.50", "+$1,234.56".
DOLLARS = re.compile(r"\$\d")


def _euro_demo(today: dt.date) -> DemoCostExplorer:
    return DemoCostExplorer(today, DemoAccount(currency="EUR"))


# ---------------------------------------------------------------- formatting


@pytest.mark.parametrize(("code", "value", "text"), [
    ("USD", 1234.5, "$1,234.50"),
    ("EUR", 1234.5, "€1,234.50"),
    ("GBP", -3.5, "-£3.50"),
    ("JPY", 1234.5, "¥1,234"),  # no decimals; Python rounds half to even
    ("CAD", 10.0, "CA$10.00"),
    ("CHF", 10.0, "CHF\u00a010.00"),  # a code as its own symbol, then a no-break space
    ("XTS", 10.0, "XTS\u00a010.00"),  # a code CLDR has no symbol for reads as itself
])
def test_amounts_read_in_the_currency_of_the_costs(code, value, text):
    with in_currency(code):
        assert money(value) == text
    assert money(value).startswith(("$", "-$"))  # outside the block: dollars again


def test_a_change_keeps_its_sign_and_the_site_its_typographic_minus():
    with in_currency("EUR"):
        assert signed_money(12) == "+€12.00"
        assert signed_money(-12, minus="−") == "−€12.00"
        assert money(None) == "n/a"
    assert current_currency() == USD


def test_plot_ticks_read_in_the_currency():
    with in_currency("EUR"):
        assert [plot_drawing._money_tick(v) for v in (2.5e6, 250_000, 120, 1.5, -4)] == [
            "€2.5M", "€250k", "€120", "€1.50", "−€4"]
    with in_currency("JPY"):
        assert plot_drawing._money_tick(1.5) == "¥2"


@dataclasses.dataclass(frozen=True)
class CurrencyProbe:
    """A plot job that writes the currency its worker drew in next to its PNG."""

    path: Path

    def draw(self) -> Figure:
        self.path.with_suffix(".currency").write_text(current_currency().code)
        return Figure(figsize=(1, 1))


def test_plot_workers_draw_in_the_currency_of_the_run(tmp_path):
    """Workers are separate processes: the run's currency goes with each job."""
    jobs = [CurrencyProbe(tmp_path / f"p{i}.png") for i in range(plot_workers.MIN_PARALLEL_JOBS)]
    with in_currency("EUR"):
        plot_drawing.run_jobs(jobs, workers=2)
    assert {job.path.with_suffix(".currency").read_text() for job in jobs} == {"EUR"}


# ---------------------------------------------------------------- a run in euros


def test_a_run_in_euros_shows_euros_in_slack_the_pages_and_report_json(tmp_path, clean_env):
    db_url = f"sqlite:///{tmp_path / 'cost_tracking.db'}"
    backfill(db_url, account="aws", client=_euro_demo(TODAY))
    with CostExplorerStandIn(TODAY) as ce, running_standin() as slack:
        ce.demo = _euro_demo(TODAY)  # DAY has a planted spike: alerts with plot pages
        code = run_bot([], tmp_path, TODAY, AWS_ENDPOINT_URL_COST_EXPLORER=ce.url,
                       **slack_env(slack))
        (delivered,) = slack.delivered()
    assert code == 0
    report_dir = tmp_path / "site" / "reports" / DAY.isoformat()
    report = json.loads((report_dir / "report.json").read_text())
    assert report["currency"] == "EUR" and report["alerts"]
    message = json.dumps(delivered.fields, ensure_ascii=False)
    assert "€" in message and not DOLLARS.search(message)
    pages = list(report_dir.rglob("*.html"))
    assert len(pages) > 3
    for page in pages:
        text = page.read_text()
        assert "€" in text and not DOLLARS.search(text), page.name


# ---------------------------------------------------------------- never mixed


def test_a_fetch_in_another_currency_than_the_stored_costs_is_refused_whole(
        tmp_path, tmp_path_factory, clean_env, capsys):
    """The account's currency changed overnight: a series half in dollars and half in
    euros cannot be compared. Nothing of the fetch is stored; the report is the stored
    dollars', marked stale, exit 3, with one line saying what to do."""
    db = copy_template(tmp_path_factory, "aws", tmp_path)
    before = cost_rows(db)
    with CostExplorerStandIn(NEXT_TODAY) as ce:
        ce.demo = _euro_demo(NEXT_TODAY)
        code = run_bot(["--dry-run"], tmp_path, NEXT_TODAY, AWS_ENDPOINT_URL_COST_EXPLORER=ce.url)
    assert code == 3
    assert cost_rows(db) == before
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if "mix currencies" in x)
    assert "returned UnblendedCost in EUR from" in line
    assert "holds it in USD" in line and "COST_TRACKING_DB_URL" in line
    report = json.loads((tmp_path / "site" / "reports" / DAY.isoformat() / "report.json").read_text())
    assert report["stale"] is True and report["currency"] == "USD"


def _rows(day: dt.date, unit: str, services: tuple[str, ...] = ("Amazon EC2", "AWS Lambda")):
    return [CostRow(day, s, "", 10.0, unit, False) for s in services]


STATE = SourceState("aws", "TAG:Name", "Credit,Refund", DAY - dt.timedelta(days=9), DAY, None)


def test_the_store_refuses_two_currencies_in_one_fetch(db_engine):
    rows = _rows(DAY - dt.timedelta(days=1), "USD") + _rows(DAY, "EUR")
    with pytest.raises(MixedCurrencies, match=r"in USD .* and in EUR .*nothing of the fetch"):
        replace_days(db_engine, METRIC, DAY - dt.timedelta(days=1), DAY, rows, STATE)
    assert stored_currency(db_engine, METRIC, DAY) == "USD"  # nothing stored: the default


def test_the_store_refuses_a_currency_other_than_the_stored_one_and_keeps_what_it_had(db_engine):
    first = DAY - dt.timedelta(days=3)
    replace_days(db_engine, METRIC, first, DAY - dt.timedelta(days=1),
                 _rows(first, "EUR") + _rows(DAY - dt.timedelta(days=1), "EUR"), STATE)
    with pytest.raises(MixedCurrencies, match=r"in USD from .* holds it in EUR"):
        replace_days(db_engine, METRIC, DAY, DAY, _rows(DAY, "USD"), STATE)
    assert stored_currency(db_engine, METRIC, DAY) == "EUR"
    # Fetching the stored days again in their own currency is fine, and so is a wipe
    # (the grouping changed: every row of the metric goes) in a new one.
    replace_days(db_engine, METRIC, first, first, _rows(first, "EUR"), STATE)
    replace_days(db_engine, METRIC, DAY, DAY, _rows(DAY, "USD"), STATE, wipe_metric=True)
    assert stored_currency(db_engine, METRIC, DAY) == "USD"
