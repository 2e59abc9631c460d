"""Slugs: any service or group name becomes a safe, unique, repeatable file name."""
from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _util.site.slugs import is_safe, simplify, slug, unique_slugs

HOSTILE = [
    'Amazon "Quoted" Service',
    "<script>alert('x')</script> & co",
    "../../etc/passwd",
    "a/b\\c:d*e?f|g",
    "💸 cost 🚀",
    "Служба хранения",
    "東京リージョン",
    "x" * 300,
    "",
    " ",
    "CON",
    ".hidden",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_slug_of_hostile_name_is_a_safe_ascii_file_name(name):
    value = slug("spike", "up", name, "group")
    assert is_safe(value + ".png")
    assert value.isascii()
    assert "/" not in value and "\\" not in value and ".." not in value
    assert len(value) <= 80


def test_slug_is_deterministic_across_calls():
    assert slug("trend", "down", "Amazon S3", "team/a") == slug(
        "trend", "down", "Amazon S3", "team/a"
    )


def test_names_that_simplify_alike_get_different_slugs():
    names = ["a/b", "a-b", "a b", "A B", "a&b", "a<b", "a_b"]
    slugs = {slug("spike", n) for n in names}
    assert len(slugs) == len(names)
    # The readable part is the same; only the hash tells them apart.
    assert {s.rsplit("-", 1)[0] for s in slugs} == {"spike-a-b"}


def test_none_group_and_untagged_group_get_different_slugs():
    assert slug("spike", "EC2", None) != slug("spike", "EC2", "")


def test_part_boundaries_count_in_the_slug():
    assert slug("a", "b c") != slug("a b", "c")


def test_non_latin_name_keeps_a_readable_prefix_where_it_can():
    assert simplify("Café Crème") == "cafe-creme"
    assert slug("東京").startswith("item-")


def test_long_names_are_cut_to_a_short_prefix_plus_hash():
    long_a = "Amazon " + "x" * 300
    long_b = "Amazon " + "x" * 299 + "y"
    assert slug(long_a) != slug(long_b)
    assert len(slug(long_a)) <= 60 + 1 + 8


def test_unique_slugs_gives_each_distinct_key_its_own_slug():
    keys = [("spike", "up", n, None) for n in HOSTILE] + [("spike", "up", "dup", None)] * 3
    result = unique_slugs(keys)
    assert len(result) == len(HOSTILE) + 1
    assert len(set(result.values())) == len(result)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=80), min_size=1, max_size=30, unique=True))
def test_any_text_gives_unique_safe_slugs(names):
    result = unique_slugs([(n,) for n in names])
    values = list(result.values())
    assert len(set(values)) == len(names)
    assert all(is_safe(v + ".html") for v in values)
    assert all(set(v) <= set(string.ascii_lowercase + string.digits + "-") for v in values)
