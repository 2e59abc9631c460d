"""The examples in docstrings stay true: every module of the bot that has some runs them.

pytest collects only tests/ (pytest.ini), so without this the examples in _util/ and the
top-level modules would never run.
"""
from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Modules known to hold examples, and how many: losing one of them fails a test.
KNOWN_EXAMPLES = {"_util.site.slugs": 3, "_util.site.publish": 2}


def modules_with_examples() -> list[str]:
    """Dotted names of the top-level modules and those under _util/ whose text has '>>>'."""
    paths = sorted(ROOT.glob("*.py")) + sorted((ROOT / "_util").rglob("*.py"))
    return [".".join(path.relative_to(ROOT).with_suffix("").parts)
            for path in paths if ">>>" in path.read_text()]


def test_the_modules_known_to_hold_examples_are_found():
    assert set(KNOWN_EXAMPLES) <= set(modules_with_examples())


@pytest.mark.parametrize("name", modules_with_examples())
def test_docstring_examples_hold(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0
    assert result.attempted >= KNOWN_EXAMPLES.get(name, 1)
