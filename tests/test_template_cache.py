"""Compiled templates kept between runs: the same pages, and a cache that can only cost time."""
from __future__ import annotations

from jinja2 import DictLoader, Environment

from _util.site import pages
from _util.site.template_cache import TemplateCodeCache

TEMPLATES = {"page.html": "<p>{{ name }}</p>\n{% if name %}\n<b>{{ name|upper }}</b>\n{% endif %}"}
OPTIONS = (("autoescape", True), ("trim_blocks", True))


def _environment(cache: TemplateCodeCache, trim_blocks: bool = True) -> Environment:
    return Environment(loader=DictLoader(TEMPLATES), autoescape=True, trim_blocks=trim_blocks,
                       bytecode_cache=cache)


def _render(env: Environment) -> str:
    return env.get_template("page.html").render(name="<S3>")


def test_a_template_compiled_once_is_loaded_from_the_cache_by_the_next_run(tmp_path):
    first = _render(_environment(TemplateCodeCache(OPTIONS, str(tmp_path))))
    entries = sorted(tmp_path.iterdir())
    assert len(entries) == 1
    cache = TemplateCodeCache(OPTIONS, str(tmp_path))
    compiled = []
    env = _environment(cache)
    env_compile = env.compile
    env.compile = lambda *a, **k: compiled.append(a) or env_compile(*a, **k)
    assert _render(env) == first == "<p>&lt;S3&gt;</p>\n<b>&lt;S3&gt;</b>\n"
    assert compiled == []  # loaded, not compiled again


def test_environments_with_other_options_do_not_share_entries(tmp_path):
    _render(_environment(TemplateCodeCache(OPTIONS, str(tmp_path))))
    other = (("autoescape", True), ("trim_blocks", False))
    text = _render(_environment(TemplateCodeCache(other, str(tmp_path)), trim_blocks=False))
    assert text == "<p>&lt;S3&gt;</p>\n\n<b>&lt;S3&gt;</b>\n"  # its own newline kept
    assert len(list(tmp_path.iterdir())) == 2


def test_a_damaged_entry_is_compiled_again_not_an_error(tmp_path):
    want = _render(_environment(TemplateCodeCache(OPTIONS, str(tmp_path))))
    (entry,) = tmp_path.iterdir()
    entry.write_bytes(entry.read_bytes()[:12])  # the magic header and a cut pickle
    assert _render(_environment(TemplateCodeCache(OPTIONS, str(tmp_path)))) == want


def test_a_cache_folder_that_cannot_be_written_costs_only_time(tmp_path):
    not_a_folder = tmp_path / "file"  # refuses entries even to root, unlike a chmod
    not_a_folder.write_text("")
    text = _render(_environment(TemplateCodeCache(OPTIONS, str(not_a_folder))))
    assert text == "<p>&lt;S3&gt;</p>\n<b>&lt;S3&gt;</b>\n"


def test_the_sites_environment_keeps_its_compiled_templates():
    assert isinstance(pages.environment.bytecode_cache, TemplateCodeCache)
