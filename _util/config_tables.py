"""The `[[name]]` lists of the TOML config (mutes, routes): each entry a table of known
keys, checked the same way, with one line naming the entry when it is not."""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterator

from _util.errors import ConfigError


def table_entries(raw: Any, name: str, where: str,
                  allowed: set[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(label, entry) for each entry of the `[[name]]` list `raw` (None: none): the label
    ("<where>: route entry 2") names it in errors; an entry that is not a table or has
    a key outside `allowed` is a ConfigError."""
    if raw is None:
        return
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: '{name}' must be a list of [[{name}]] tables")
    for i, entry in enumerate(raw, start=1):
        label = f"{where}: {name} entry {i}"
        check_table(entry, label, allowed)
        yield label, entry


def check_table(entry: Any, label: str, allowed: set[str]) -> None:
    """A config table with only `allowed` keys; one line naming it (`label`) otherwise."""
    if not isinstance(entry, dict):
        raise ConfigError(f"{label} must be a table")
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise ConfigError(f"{label} has unknown key(s) {', '.join(unknown)}; allowed: "
                          f"{', '.join(sorted(allowed))}")


def entry_date(entry: dict[str, Any], key: str, label: str) -> dt.date | None:
    """An entry's optional date (TOML date or 'YYYY-MM-DD' text), one line otherwise."""
    value = entry.get(key)
    if isinstance(value, str):
        try:
            value = dt.date.fromisoformat(value)
        except ValueError:
            raise ConfigError(f"{label} {key} is {value!r}; allowed: YYYY-MM-DD") from None
    if value is not None and not isinstance(value, dt.date):
        raise ConfigError(f"{label} {key} must be a date (YYYY-MM-DD)")
    return value
