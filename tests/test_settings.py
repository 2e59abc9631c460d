"""Settings: precedence, validation, and one-line errors that name the setting."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from _util.errors import ConfigError
from _util.settings import SETTINGS, load_settings

TODAY = dt.date(2026, 11, 23)


def _load(flags=None, env=None, today=TODAY):
    return load_settings(flags or {}, env or {}, today)


def test_defaults_follow_the_readme():
    s = _load()
    assert s.day == dt.date(2026, 11, 22)
    assert s.output_dir == Path("output")
    assert s.db_url == "sqlite:///output/cost_tracking.db"
    assert (s.metric, s.group_by, s.lookback_days) == ("UnblendedCost", "TAG:Name", 365)
    assert s.exclude_record_types == ("Credit", "Refund")
    assert (s.rules.z, s.rules.min_delta_usd, s.rules.min_history_days, s.rules.min_daily_usd) == (3.0, 1.0, 28, 1.0)
    assert (s.rules.ema_fast, s.rules.ema_slow, s.rules.signal_span) == (12, 26, 18)
    assert s.slack_api_url == "https://slack.com/api/"


def test_flags_beat_environment_which_beats_toml(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('z = 2.0\nmetric = "AmortizedCost"\ngroup_by = "REGION"\n')
    s = _load({"config": str(config), "z": "4.5"},
              {"COST_TRACKING_METRIC": "BlendedCost"})
    assert s.rules.z == 4.5
    assert s.metric == "BlendedCost"
    assert s.group_by == "REGION"


def test_output_dir_moves_the_default_database(tmp_path):
    s = _load(env={"COST_TRACKING_OUTPUT_DIR": str(tmp_path)})
    assert s.db_url == f"sqlite:///{tmp_path}/cost_tracking.db"


def test_empty_exclusion_means_no_record_type_filter():
    assert _load(env={"COST_TRACKING_EXCLUDE_RECORD_TYPES": ""}).exclude_record_types == ()


def test_slack_token_never_appears_in_the_settings_repr():
    s = _load(env={"SLACK_BOT_TOKEN": "xoxb-secret-123456"})
    assert s.slack_token == "xoxb-secret-123456"
    assert "xoxb" not in repr(s)


@pytest.mark.parametrize("env,message", [
    ({"COST_TRACKING_METRIC": "Cost"}, "COST_TRACKING_METRIC is 'Cost'; allowed: one of UnblendedCost"),
    ({"COST_TRACKING_GROUP_BY": "TEAM"}, "COST_TRACKING_GROUP_BY is 'TEAM'; allowed: TAG:<tag key>"),
    ({"COST_TRACKING_GROUP_BY": "TAG:"}, "COST_TRACKING_GROUP_BY is 'TAG:'"),
    ({"COST_TRACKING_LOOKBACK_DAYS": "1000"}, "COST_TRACKING_LOOKBACK_DAYS is '1000'; allowed: a whole number from 35 to 390"),
    ({"COST_TRACKING_LOOKBACK_DAYS": "ten"}, "COST_TRACKING_LOOKBACK_DAYS is 'ten'"),
    ({"COST_TRACKING_Z": "-1"}, "COST_TRACKING_Z is '-1'; allowed: a number from 0.5 to 50"),
    ({"COST_TRACKING_MIN_DELTA_USD": "lots"}, "COST_TRACKING_MIN_DELTA_USD is 'lots'"),
    ({"COST_TRACKING_EXCLUDE_RECORD_TYPES": "Credits"}, "COST_TRACKING_EXCLUDE_RECORD_TYPES is 'Credits'"),
    ({"COST_TRACKING_SITE_URL": "example.com"}, "COST_TRACKING_SITE_URL is 'example.com'; allowed: an http"),
    ({"COST_TRACKING_EMA_FAST": "30"}, "ema_fast (30) must be smaller than ema_slow (26)"),
])
def test_invalid_values_fail_in_one_line_naming_the_setting(env, message):
    with pytest.raises(ConfigError) as info:
        _load(env=env)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert info.value.exit_code == 2


@pytest.mark.parametrize("text,message", [
    ("z = [", "is not valid TOML"),
    ('z = 3.0\ncolour = "red"\n', "unknown setting(s): colour"),
    ("z = 100\n", "z in "),
    ('[[mute]]\nservice = "EC2"\n', "needs a reason"),
    ('[[mute]]\nservice = "EC2"\nreason = "known"\nkind = "blip"\n', "kind is 'blip'"),
    ('[[mute]]\nservice = "EC2"\nreason = "known"\nuntil = "soon"\n', "until is 'soon'"),
])
def test_bad_config_files_are_refused_with_what_is_wrong(tmp_path, text, message):
    config = tmp_path / "c.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        _load({"config": str(config)})


def test_missing_config_file_is_named():
    with pytest.raises(ConfigError, match="--config file not found: /nope.toml"):
        _load({"config": "/nope.toml"})


@pytest.mark.parametrize("day,message", [
    (TODAY, "has no complete cost data yet; the latest day is 2026-11-22"),
    (dt.date(2027, 1, 1), "has no complete cost data yet"),
    (dt.date(2025, 6, 1), "older than Cost Explorer keeps daily data"),
])
def test_dates_in_the_future_or_beyond_retention_are_refused(day, message):
    with pytest.raises(ConfigError, match=message):
        _load({"date": day})


def test_an_old_date_is_allowed_when_analysing_stored_data_only():
    assert _load({"date": dt.date(2025, 6, 1), "skip_fetch": True}).day == dt.date(2025, 6, 1)


def test_mute_entries_are_parsed_from_toml(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[[mute]]\nservice = "Tax"\nreason = "monthly"\n\n'
                      '[[mute]]\nservice = "AWS Glue"\ngroup = ""\nkind = "spike"\nuntil = 2026-12-01\nreason = "migration"\n')
    mutes = _load({"config": str(config)}).mutes
    assert [(m.service, m.group, m.kind, m.until) for m in mutes] == [
        ("Tax", None, None, None), ("AWS Glue", "", "spike", dt.date(2026, 12, 1))]


def test_every_setting_has_an_environment_variable_and_help():
    names = [spec.env_var for spec in SETTINGS]
    assert len(names) == len(set(names))
    assert all(name.startswith("COST_TRACKING_") and spec.help for name, spec in zip(names, SETTINGS))
