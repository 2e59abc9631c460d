"""No change of behaviour while the code is reshaped: what users get is pinned byte for byte.

Two scenarios, each reduced to a digest of its outputs and compared with the digest
checked in as tests/golden/outputs.json:
- the demo end to end for a fixed day (site URL, account label, a mute, a plot cap small
  enough to leave alerts without a plot): report.json, the Slack payload, every HTML
  page of the site, and the names of the plots;
- a hand-made report with what the demo never produces (continuing episodes, spikes
  down, group alerts folded into their service, muted alerts, hostile names, a stale and
  Estimated day, more alerts than a message holds) through the page renderer and the
  message builder.

JSON is compared as canonical JSON (keys sorted), pages as exact bytes; PNGs by name only
(their bytes follow matplotlib's version, which the golden test must not). After a change
that is meant to change what users see, rewrite the digest with
COST_TRACKING_TEST_UPDATE_GOLDEN=1 and say why in the commit.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
from pathlib import Path

import procPlotting
import runCostReporting
from _util.alert_kinds import DOWN, SPIKE, TREND, UP
from _util.slack.message import build_message
from tests.test_plotting import report_for, spike, synthetic_history, trend

GOLDEN = Path(__file__).resolve().parent / "golden" / "outputs.json"
TODAY = dt.date(2026, 11, 22)
DAY = "2026-11-21"
SITE_URL = "https://costs.example.com/"
# Read at import: the clean_env fixture clears COST_TRACKING_* variables.
UPDATE = bool(os.environ.get("COST_TRACKING_TEST_UPDATE_GOLDEN"))


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical_json(path: Path) -> bytes:
    return json.dumps(json.loads(path.read_text(encoding="utf-8")), sort_keys=True,
                      ensure_ascii=False).encode()


def outputs_digest(root: Path) -> dict[str, str]:
    """path -> sha256 of every JSON and HTML output under `root`; PNGs by name."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if not path.is_file() or rel.startswith(("runs/", "logs/")):
            continue
        if path.suffix == ".json":
            out[rel] = _digest(_canonical_json(path))
        elif path.suffix == ".html":
            out[rel] = _digest(path.read_bytes())
        elif path.suffix == ".png":
            out[rel] = "png"
    return out


def _compare(name: str, actual: dict[str, str]) -> None:
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    if UPDATE:
        golden[name] = actual
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
        return
    expected = golden[name]
    changed = sorted(p for p in expected.keys() | actual.keys()
                     if expected.get(p) != actual.get(p))
    assert changed == [], f"{name}: outputs differ from tests/golden/outputs.json"


def test_demo_run_writes_the_same_report_json_slack_payload_and_pages(tmp_path, clean_env,
                                                                       monkeypatch):
    config = tmp_path / "config.toml"
    config.write_text('[[mute]]\nservice = "AWS Backup"\nreason = "known: nightly backups"\n')
    # A relative output folder: the database's URL (which names the installation in the
    # digest's metadata) is then the same on every machine.
    monkeypatch.chdir(tmp_path)
    for name, value in {"COST_TRACKING_OUTPUT_DIR": "out",
                        "COST_TRACKING_SITE_URL": SITE_URL,
                        "COST_TRACKING_ACCOUNT_LABEL": "demo <prod> & co",
                        "COST_TRACKING_MAX_ALERT_PLOTS": "6"}.items():
        monkeypatch.setenv(name, value)
    code = runCostReporting.main(["--demo", "--dry-run", "--date", DAY, "--config", str(config)],
                                 None, TODAY)
    logging.getLogger().handlers.clear()
    assert code == 0
    digest = outputs_digest(tmp_path / "out")
    assert f"site/reports/{DAY}/report.json" in digest and f"slack/{DAY}.json" in digest
    _compare("demo", digest)


def _rich_report():
    day = dt.date(2024, 3, 10)
    names = ["Amazon EC2", "Amazon S3", 'Svc "<script>alert(1)</script>" & *bold*', "AWS Lambda"]
    groups = ["", "team-a", "<b>team&co</b>"]
    history = synthetic_history(day, {(s, g): 100.0 + 10 * i
                                      for i, s in enumerate(names) for g in groups})
    alerts = [
        spike(names[0], None, 900.0),
        spike(names[0], "team-a", 500.0),
        spike(names[0], "<b>team&co</b>", 400.0),
        dataclasses.replace(spike(names[1], None, 30.0), direction=DOWN, delta_usd=-70.0,
                            zscore=-8.0, top_group="team-a", top_group_delta_usd=-50.0),
        dataclasses.replace(trend(names[2], None, UP), status="continuing",
                            episode_start=day - dt.timedelta(days=3), episode_days=4),
        dataclasses.replace(trend(names[3], "", DOWN), muted=True, mute_reason="known"),
        dataclasses.replace(spike(names[3], "team-a"), status="continuing",
                            episode_start=day - dt.timedelta(days=1), episode_days=2),
    ]
    alerts += [dataclasses.replace(spike(f"Service {i:02d}", None, 150.0 + i),
                                   kind=TREND if i % 2 else SPIKE) for i in range(50)]
    report = dataclasses.replace(report_for(history, day, alerts), stale=True)
    return report, history


def test_hand_made_report_renders_the_same_pages_and_message(tmp_path):
    report, history = _rich_report()
    rendered = procPlotting.render(report, history, tmp_path / "site", SITE_URL, workers=1,
                                   max_alert_plots=20)
    message = build_message(rendered.report, "Prod <account>")
    (tmp_path / "message.json").write_text(json.dumps(message.payload("C0123")))
    assert len(rendered.report.alerts) == 57 and SPIKE in {a.kind for a in report.alerts}
    _compare("hand_made", outputs_digest(tmp_path))
