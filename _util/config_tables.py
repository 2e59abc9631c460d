"""The `[[name]]` lists of the TOML config (mutes, routes): each entry a table of known
keys, checked the same way, with one line naming the entry when it is not."""
from __future__ import annotations

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
        if not isinstance(entry, dict):
            raise ConfigError(f"{label} must be a table")
        unknown = sorted(set(entry) - allowed)
        if unknown:
            raise ConfigError(f"{label} has unknown key(s) {', '.join(unknown)}; allowed: "
                              f"{', '.join(sorted(allowed))}")
        yield label, entry
