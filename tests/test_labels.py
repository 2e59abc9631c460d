"""A backtest scored against known incidents (--labels), bad labels files refused in one
line, and the demo's planted events written as a labels file (issue 13)."""
from __future__ import annotations

import csv
import datetime as dt
import logging

import pytest

import runCostReporting
from _util.alert_kinds import SPIKE, TREND, UP
from _util.detection.labels import ANY_RULE, Incident, read_labels, score
from _util.errors import ConfigError
from _util.report import Alert
from _util.sources.demo_account import planted_events, planted_incidents
from _util.store.database import create_tables, make_engine
from tests.test_alerts import frame
from tests.test_lifecycle import store

D = dt.date(2024, 5, 31)
FIRST = D - dt.timedelta(days=59)
TODAY = D + dt.timedelta(days=1)


def hand_made_history():
    """Four services at about $100 or $50 a day (an alternating cent wiggle, so spikes
    have a spread to stand out of):
    S/web spikes +$400 on 05-12 (its MACD crossing back down on 05-17 is an echo);
    T ramps up $3 a day from 05-02, a spike from 05-03 on, day after day;
    U does nothing; V spikes +$300 on 05-27, an incident nobody labelled."""
    n = 200
    wiggle = [100.0 + (i % 2) for i in range(n)]
    s, v = list(wiggle), list(wiggle)
    s[-20] += 400
    v[-5] += 300
    t = [50.0 + (i % 2) for i in range(n - 30)] + [50.0 + 3 * k for k in range(30)]
    return frame({("S", "web"): s, ("T", ""): t, ("U", ""): list(wiggle), ("V", ""): v})


LABELS = ("date,service,group,kind,direction\n"
          "2024-05-12,S,web,spike,up\n"     # caught on the day (the service's alert names web)
          "2024-05-01,T,,,\n"               # caught two days late, by the spike rule
          "2024-05-20,U,,,\n"               # missed
          "2023-01-01,S,,,\n")              # before the backtest: not scored


@pytest.fixture
def out(tmp_path, clean_env):
    engine = make_engine(f"sqlite:///{tmp_path / 'cost_tracking.db'}")
    create_tables(engine)
    store(engine, hand_made_history())
    engine.dispose()
    return tmp_path


def run(out, *args) -> int:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COST_TRACKING_OUTPUT_DIR", str(out))
        code = runCostReporting.main(list(args), None, TODAY)
    logging.getLogger().handlers.clear()
    return code


def test_caught_late_missed_and_unlabelled_counts_on_a_hand_made_history(out, capsys):
    labels = out / "incidents.csv"
    labels.write_text(LABELS, encoding="utf-8")
    code = run(out, "--backtest-from", FIRST.isoformat(), "--date", D.isoformat(),
               "--labels", str(labels))
    assert code == 0
    printed = capsys.readouterr().out
    with (out / "backtest" / f"{FIRST}_{D}_labels.csv").open(newline="", encoding="utf-8") as fh:
        rows = [r[:9] for r in csv.reader(fh)]
    assert rows == [
        ["date", "service", "group", "kind", "direction", "caught", "first_alert", "lag_days",
         "caught_by"],
        ["2024-05-12", "S", "web", "spike", "up", "yes", "2024-05-12", "0", "spike"],
        ["2024-05-01", "T", "", "", "", "yes", "2024-05-03", "2", "spike"],
        ["2024-05-20", "U", "", "", "", "no", "", "", ""],
    ]
    table = [line.split() for line in printed.splitlines()]
    # rule, incidents, on the day, late, missed, recall, median lag, unlabelled, per day
    assert ["spike", "3", "1", "1", "1", "67%", "1", "d", "2", "0.10"] in table
    assert ["trend", "2", "0", "0", "2", "0%", "-", "0", "0.00"] in table
    assert ["any", "3", "1", "1", "1", "67%", "1", "d", "2", "0.10"] in table
    page = (out / "site" / "backtest" / f"{FIRST}_{D}.html").read_text(encoding="utf-8")
    assert "Against known incidents" in page and "67%" in page


def test_an_echo_catches_no_incident_and_is_not_an_unlabelled_alert():
    day = dt.date(2024, 5, 17)
    trend = Alert(kind=TREND, direction=UP, service="S", group=None, usd=1.0,
                  baseline_mean=1.0, baseline_std=0.0, delta_usd=0.0, echo_of=day)
    scored = score([Incident(day=day, service="S")], {day: (trend,)}, window_days=7)
    [any_rule] = [s for s in scored.rules if s.rule == ANY_RULE]
    assert (any_rule.caught, any_rule.missed, any_rule.unlabelled, any_rule.new_alerts) == (0, 1, 0, 0)


def test_a_group_incident_is_caught_by_its_group_or_by_a_service_alert_naming_it():
    day = dt.date(2024, 5, 17)
    base = dict(kind=SPIKE, direction=UP, service="S", usd=1.0, baseline_mean=1.0,
                baseline_std=0.0, delta_usd=0.0)
    incident = Incident(day=day, service="S", group="web")
    assert incident.matches(day, Alert(group="web", **base), 7)
    assert incident.matches(day, Alert(group=None, top_group="web", **base), 7)
    assert not incident.matches(day, Alert(group="api", **base), 7)
    assert not incident.matches(day, Alert(group=None, top_group="api", **base), 7)
    assert not incident.matches(day + dt.timedelta(days=8), Alert(group="web", **base), 7)
    assert not incident.matches(day - dt.timedelta(days=1), Alert(group="web", **base), 7)


@pytest.mark.parametrize("text, message", [
    ("date,service,team\n2024-05-12,S,web\n",
     "row 1: unknown column(s) 'team'; the header is date,service and optionally group, "
     "kind, direction"),
    ("service,group\nS,web\n", "row 1: no date column"),
    ("date,service\n2024-05-12,S\n2024-13-01,S\n", "row 3: date '2024-13-01' is not YYYY-MM-DD"),
    ("date,service,kind\n2024-05-12,S,spiky\n", "row 2: kind 'spiky'; allowed: spike, trend or empty"),
    ("date,service,direction\n2024-05-12,S,sideways\n", "row 2: direction 'sideways'"),
    ("date,service\n2024-05-12,\n", "row 2: the service is empty"),
    ("date,service\n2024-05-12,S,extra\n", "row 2: 3 cells for 2 columns"),
    ("date,service,group\n2024-05-12,S\n", "row 2: 2 cells for 3 columns"),
    ("date,service\n20240512,S\n", "row 2: date '20240512' is not YYYY-MM-DD"),
    ('date,service\n2024-05-12,"S\nwith a line break"\n2024-05-40,S\n',
     "row 4: date '2024-05-40' is not YYYY-MM-DD"),
    ("date,service\n", "has a header and no incidents"),
    ("# nothing but a comment\n", "is empty"),
])
def test_a_bad_labels_file_is_one_line_naming_the_row_exit_2_and_nothing_written(
        out, capsys, text, message):
    labels = out / "incidents.csv"
    labels.write_text(text, encoding="utf-8")
    code = run(out, "--backtest-from", FIRST.isoformat(), "--date", D.isoformat(),
               "--labels", str(labels))
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith(f"error: --labels file {labels}") and message in err
    assert len(err.splitlines()) == 1
    assert_nothing_written(out)


def assert_nothing_written(out) -> None:
    """Only what the test put there: the database and the labels file."""
    assert sorted(p.name for p in out.iterdir()) == ["cost_tracking.db", "incidents.csv"]


def test_a_labelled_service_without_stored_costs_is_refused_before_anything_is_written(out, capsys):
    labels = out / "incidents.csv"
    labels.write_text("date,service\n2024-05-12,S\n2024-05-13,Amazon Nothing\n"
                      "2022-01-01,Retired Service\n", encoding="utf-8")  # outside: not checked
    code = run(out, "--backtest-from", FIRST.isoformat(), "--date", D.isoformat(),
               "--labels", str(labels))
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == (f"error: --labels file {labels} row 3: service 'Amazon Nothing' has no "
                   "stored costs (names are case-sensitive, as Cost Explorer spells them)")
    assert_nothing_written(out)


def test_labels_without_a_database_are_refused_and_no_database_is_made(tmp_path, clean_env, capsys):
    labels = tmp_path / "incidents.csv"
    labels.write_text("date,service\n2024-05-12,S\n", encoding="utf-8")
    code = run(tmp_path, "--backtest-from", FIRST.isoformat(), "--date", D.isoformat(),
               "--labels", str(labels))
    assert code == 2 and "service 'S' has no stored costs" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["incidents.csv"]


def test_labels_need_a_backtest_and_a_missing_file_is_named(out, capsys):
    assert run(out, "--date", D.isoformat(), "--labels", str(out / "x.csv")) == 2
    assert "--labels scores a backtest: add --backtest-from" in capsys.readouterr().err
    assert run(out, "--backtest-from", FIRST.isoformat(), "--date", D.isoformat(),
               "--labels", str(out / "missing.csv")) == 2
    assert f"--labels file {out / 'missing.csv'} not found" in capsys.readouterr().err


def test_demo_labels_are_the_planted_events_of_the_range_and_read_back(tmp_path, clean_env, capsys):
    path = tmp_path / "planted.csv"
    first, last = dt.date(2024, 1, 1), dt.date(2024, 3, 31)
    code = run(tmp_path, "--demo", "--write-demo-labels", str(path),
               "--backtest-from", first.isoformat(), "--date", last.isoformat())
    assert code == 0
    incidents = read_labels(path)
    events = planted_events(last, (last - first).days + 1)
    spikes = [e for e in events if e.kind == SPIKE and e.group is not None]
    turns = [e for e in events if e.kind == TREND]
    assert len(incidents) == len(spikes) + len(turns) > 20
    assert {(i.day, i.service, i.group, i.kind, i.direction) for i in incidents} == {
        (e.day, e.service, e.group, e.kind, e.direction) for e in spikes + turns}
    assert all(first <= i.day <= last for i in incidents)
    assert list(incidents) == planted_incidents(first, last)
    assert f"ok: {len(incidents)} planted events of {first}..{last} in {path}" in capsys.readouterr().out
    assert not (tmp_path / "cost_tracking.db").exists()


def test_demo_labels_need_the_demo(tmp_path, clean_env, capsys):
    assert run(tmp_path, "--write-demo-labels", str(tmp_path / "x.csv")) == 2
    assert "--write-demo-labels writes the demo account's planted events: add --demo" in \
        capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_reading_a_file_gives_the_rows_incidents_with_any_for_empty_cells(tmp_path):
    path = tmp_path / "l.csv"
    path.write_text("\ufeffDate, Service ,Group,Kind,\n2024-05-12,S,,,\n\n# known: ETL\n"
                    "2024-05-13,S,\"web, eu\",Spike,\n2024-05-14,S,(untagged),TREND\n",
                    encoding="utf-8")
    assert read_labels(path) == (
        Incident(day=dt.date(2024, 5, 12), service="S"),
        Incident(day=dt.date(2024, 5, 13), service="S", group="web, eu", kind=SPIKE),
        Incident(day=dt.date(2024, 5, 14), service="S", group="", kind=TREND))
    assert [i.row for i in read_labels(path)] == [2, 5, 6]
    with pytest.raises(ConfigError, match="not found"):
        read_labels(tmp_path / "none.csv")
    with pytest.raises(ConfigError, match="cannot be read"):
        read_labels(tmp_path)


def test_names_a_spreadsheet_would_run_are_written_as_text_and_read_back(tmp_path):
    from _util.detection.labels import write_labels

    hostile = [Incident(day=dt.date(2024, 5, 12), service='=HYPERLINK("http://x","y")',
                        group="+cmd", kind=SPIKE, direction=UP),
               Incident(day=dt.date(2024, 5, 13), service="@SUM(A1)", group="-2+3"),
               Incident(day=dt.date(2024, 5, 14), service="\tTab", group="web-prod")]
    path = tmp_path / "hostile.csv"
    write_labels(path, hostile)
    with path.open(newline="", encoding="utf-8") as fh:
        cells = [row[1:3] for row in csv.reader(fh)][1:]
    assert cells == [["'=HYPERLINK(\"http://x\",\"y\")", "'+cmd"], ["'@SUM(A1)", "'-2+3"],
                     ["'\tTab", "web-prod"]]
    assert read_labels(path) == tuple(hostile)
