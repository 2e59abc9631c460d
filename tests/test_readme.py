"""The README stays true: every setting, flag and exit code the code knows is documented."""
from __future__ import annotations

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
