"""Shared fixtures: real databases (a SQLite file always, MariaDB when configured)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")

from _util.store.database import create_tables, make_engine, metadata  # noqa: E402

MYSQL_URL = os.environ.get("COST_TRACKING_TEST_MYSQL_URL")


def _mysql_engine():
    if not MYSQL_URL:
        pytest.skip("COST_TRACKING_TEST_MYSQL_URL is not set (no MariaDB for this run)")
    engine = make_engine(MYSQL_URL)
    create_tables(engine)
    metadata.drop_all(engine)
    create_tables(engine)
    return engine


@pytest.fixture
def mariadb_engine():
    """The real MariaDB alone, with the bot's tables, for what only MySQL-family servers do."""
    engine = _mysql_engine()
    yield engine
    metadata.drop_all(engine)
    engine.dispose()


@pytest.fixture(params=["sqlite", "mariadb"])
def db_engine(request, tmp_path):
    """An empty database with the bot's tables: a SQLite file, then the real MariaDB."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'costs.db'}")
        create_tables(engine)
    else:
        engine = _mysql_engine()
    yield engine
    if request.param == "mariadb":
        metadata.drop_all(engine)
    engine.dispose()


@pytest.fixture
def clean_env(monkeypatch):
    """No COST_TRACKING_*, Slack or AWS variables leak in from the developer's shell."""
    for name in list(os.environ):
        if name.startswith(("COST_TRACKING_", "SLACK_", "AWS_")) and name != "COST_TRACKING_TEST_MYSQL_URL":
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # Any AWS call a test forgets to point elsewhere goes to a closed local port, never out.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    # The EC2 usage section reads CloudTrail and EC2 in every region, which no Cost
    # Explorer stand-in answers: off unless a test turns it on (the demo answers it).
    monkeypatch.setenv("COST_TRACKING_EC2_USAGE", "off")
    # The Commitments section's Cost Explorer calls would add to every run's request
    # count, which many tests pin: off unless a test turns it on.
    monkeypatch.setenv("COST_TRACKING_COMMITMENTS", "off")
    # The Idle resources section reads EC2, ECS, EKS and CloudWatch in every region: off
    # unless a test turns it on (moto and the demo answer it).
    monkeypatch.setenv("COST_TRACKING_IDLE", "off")
    return os.environ


@pytest.fixture
def slack():
    """A local stand-in for Slack's Web API, running for the test."""
    from tests.slack_standin import running_standin

    with running_standin() as standin:
        yield standin


@pytest.fixture
def stubbed(clean_env):
    """A real Cost Explorer client with botocore's Stubber on it (answers validated
    against the service model); every queued answer must be asked for."""
    import boto3
    from botocore.stub import Stubber

    client = boto3.client("ce", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()
