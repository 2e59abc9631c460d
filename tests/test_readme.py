"""The README stays true: every setting, flag and exit code the code knows is documented."""
from __future__ import annotations

import json
import re
from itertools import dropwhile, takewhile
from pathlib import Path

import runCostReporting
from _util import errors
from _util.settings import SETTINGS

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_documented_with_its_environment_variable_and_toml_key():
    for spec in SETTINGS:
        assert f"`{spec.env_var}`" in README, spec.env_var
        assert f"`{spec.name}`" in README, spec.name


def test_every_environment_variable_the_code_reads_is_documented():
    root = Path(__file__).resolve().parent.parent
    sources = [p for p in root.glob("*.py")] + list((root / "_util").rglob("*.py"))
    names = set()
    for path in sources:
        names |= set(re.findall(r"\"((?:COST_TRACKING|SLACK|AWS)_[A-Z0-9_]+)\"", path.read_text()))
    names -= {"COST_TRACKING_"}
    names = {n for n in names if not n.startswith("COST_TRACKING_TEST_")}
    missing = sorted(n for n in names if n not in README)
    assert missing == []


def test_every_flag_is_documented():
    parser = runCostReporting.build_parser()
    flags = [opt for action in parser._actions for opt in action.option_strings
             if opt.startswith("--") and opt != "--help"]
    assert flags
    for flag in flags:
        assert f"`{flag}" in README, flag


def test_quick_start_is_exactly_two_commands_and_ci_runs_the_test_one():
    block = README.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "make test" in ci


def exit_code_table() -> list[str]:
    """The rows of the first table in the README's "Exit codes" section (none without it)."""
    if "\n## Exit codes\n" not in README:
        return []
    section = README.split("\n## Exit codes\n", 1)[1].split("\n## ", 1)[0].splitlines()
    rows = dropwhile(lambda line: not line.startswith("|"), section)
    return list(takewhile(lambda line: line.startswith("|"), rows))


def test_the_exit_code_table_lists_exactly_the_codes_the_bot_exits_with():
    table = exit_code_table()
    assert table[:2] == ["| code | meaning |", "| --- | --- |"]
    documented = [int(row.split("|")[1]) for row in table[2:]]
    codes = sorted(value for name, value in vars(errors).items() if name.startswith("EXIT_"))
    assert documented == codes


def _cron_command(schedule: bool = False) -> str:
    """The command of the README's crontab line (after the five time fields): the daily
    report's, or with `schedule` the scheduler's."""
    blocks = [part.split("```", 1)[0] for part in README.split("```cron")[1:]]
    lines = [ln for block in blocks for ln in block.splitlines() if re.match(r"^[\d*]", ln)]
    [line] = [ln for ln in lines if ("--schedule" in ln) == schedule]
    assert "%" not in line  # cron would turn it into a newline
    return line.split(None, 5)[5]


def _fresh_install(tmp_path: Path, env_lines: list[str]) -> Path:
    """An empty /opt/cost-bot stand-in: the bot, a .venv/bin/python and bot.env, no output/."""
    import sys

    root = Path(__file__).resolve().parent.parent
    home = tmp_path / "cost-bot"
    (home / ".venv" / "bin").mkdir(parents=True)
    python = home / ".venv" / "bin" / "python"
    python.write_text(f'#!/bin/sh\nPYTHONPATH={root} exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    (home / "runCostReporting.py").symlink_to(root / "runCostReporting.py")
    (home / "bot.env").write_text("\n".join(env_lines) + "\n")
    return home


def _run_cron_line(home: Path, schedule: bool = False):
    import os
    import subprocess

    command = _cron_command(schedule).replace("/opt/cost-bot", str(home))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("COST_TRACKING_", "SLACK_", "AWS_"))}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    return subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_crontab_line_works_as_written_on_a_fresh_install_and_is_silent(tmp_path):
    home = _fresh_install(tmp_path, ["COST_TRACKING_SOURCE=demo",
                                     f"COST_TRACKING_OUTPUT_DIR={tmp_path / 'cost-bot' / 'output'}"])
    done = _run_cron_line(home)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert (home / "output" / "logs" / "cost_tracking.log").stat().st_size > 0
    assert list((home / "output" / "site" / "reports").glob("*/report.json"))


def test_the_schedule_crontab_line_works_as_written_and_is_silent(tmp_path):
    home = _fresh_install(tmp_path, ["COST_TRACKING_SOURCE=demo",
                                     f"COST_TRACKING_OUTPUT_DIR={tmp_path / 'cost-bot' / 'output'}"])
    done = _run_cron_line(home, schedule=True)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    [run] = list((home / "output" / "runs").glob("schedule-*.json"))
    assert json.loads(run.read_text())["acting"] is False  # actions are off by default


def test_the_crontab_line_prints_the_error_when_the_run_fails(tmp_path):
    home = _fresh_install(tmp_path, ["COST_TRACKING_SOURCE=demo", "COST_TRACKING_Z=loud"])
    done = _run_cron_line(home)
    assert done.stdout.strip() == "error: COST_TRACKING_Z is 'loud'; allowed: a number from 0.5 to 50"
