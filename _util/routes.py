"""Routes: which team's channel gets which alerts (the `[[route]]` entries of the config).

A route names a Slack channel and matches alerts by service, by group (the second
grouping's value: a team tag, an account ID) or by account (when grouping by
LINKED_ACCOUNT), each a glob or a list of globs; every key given must match. An alert
goes to every route it matches; the main channel gets the whole digest, or with
`main_channel_gets = "unrouted"` only what no route took.

A service-level alert (no group) matches a group or account pattern through the group
that moved it most (`top_group`): the Glue spike driven by `analytics-etl` is the data
team's. Mentions are only ever the Slack IDs the config names, checked here, so nothing
that comes from AWS can mention anyone. Pure: config in, routes out; alerts in, bools out.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from _util.config_tables import table_entries
from _util.errors import ConfigError
from _util.report import Alert

MAIN_GETS_ALL = "all"
MAIN_GETS_UNROUTED = "unrouted"
MAIN_CHANNEL_GETS = (MAIN_GETS_ALL, MAIN_GETS_UNROUTED)
LINKED_ACCOUNT = "LINKED_ACCOUNT"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
# Slack user (U, W) and user group (S) IDs.
_MENTION = re.compile(r"^[UWS][A-Z0-9]{2,20}$")
_KEYS = {"name", "channel", "mention", "service", "group", "account", "post_when_quiet"}


@dataclass(frozen=True)
class Route:
    name: str
    channel: str
    mentions: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()  # globs of the group value (or account ID)
    post_when_quiet: bool = False

    def service_matches(self, service: str) -> bool:
        return not self.services or any(fnmatchcase(service, p) for p in self.services)

    def group_matches(self, group: str | None) -> bool:
        return not self.groups or (group is not None
                                   and any(fnmatchcase(group, p) for p in self.groups))

    def matches_series(self, service: str, group: str | None) -> bool:
        """Whether the series (a service, or a service's group) is this route's."""
        return self.service_matches(service) and self.group_matches(group)

    def matches(self, alert: Alert) -> bool:
        group = alert.group if alert.group is not None else alert.top_group
        return self.matches_series(alert.service, group)

    @property
    def mention_text(self) -> str:
        """'<@U0123> <!subteam^S0456>': the configured IDs as Slack mentions."""
        return " ".join(f"<!subteam^{m}>" if m.startswith("S") else f"<@{m}>"
                        for m in self.mentions)


def _globs(value: Any, key: str, where: str) -> tuple[str, ...]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(
            isinstance(v, str) and v for v in values):
        raise ConfigError(f"{where}: {key} must be a glob or a list of globs, e.g. "
                          f"{key} = \"AWS Glue*\"")
    return tuple(values)


def parse_routes(raw: Any, where: str, group_by: str, main_channel: str | None) -> tuple[Route, ...]:
    """The `[[route]]` entries, each checked; one line naming the entry otherwise."""
    routes: list[Route] = []
    channels = {main_channel: "the main channel (COST_TRACKING_SLACK_CHANNEL)"} if main_channel else {}
    for label, entry in table_entries(raw, "route", where, _KEYS):
        channel = entry.get("channel")
        if not isinstance(channel, str) or not channel.strip():
            raise ConfigError(f"{label} needs a channel (a Slack channel ID such as C0123456789)")
        channel = channel.strip()
        name = entry.get("name", channel)
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"{label} name {name!r} must be letters, digits, '-' or '_' "
                              "(it names the route's files)")
        label = f"{where}: route {name!r}"
        if channel in channels:
            raise ConfigError(f"{label}: channel {channel} is listed twice (also "
                              f"{channels[channel]}); one digest per channel")
        if any(r.name == name for r in routes):
            raise ConfigError(f"{label}: the name is used by another route")
        channels[channel] = f"route {name!r}"
        if not any(k in entry for k in ("service", "group", "account")):
            raise ConfigError(f"{label} matches nothing: give service, group or account")
        if "account" in entry and group_by != LINKED_ACCOUNT:
            raise ConfigError(f"{label} matches by account, but costs are grouped by "
                              f"{group_by}: set COST_TRACKING_GROUP_BY=LINKED_ACCOUNT or "
                              "match by service or group")
        if "account" in entry and "group" in entry:
            raise ConfigError(f"{label}: give account or group, not both (with "
                              "LINKED_ACCOUNT they are the same value)")
        mentions = entry.get("mention", [])
        mentions = [mentions] if isinstance(mentions, str) else mentions
        if not isinstance(mentions, list) or not all(
                isinstance(m, str) and _MENTION.match(m) for m in mentions):
            raise ConfigError(f"{label}: mention must list Slack user or group IDs such as "
                              f"U0123ABCD or S0456EFGH, got {mentions!r}")
        quiet = entry.get("post_when_quiet", False)
        if not isinstance(quiet, bool):
            raise ConfigError(f"{label}: post_when_quiet must be true or false")
        groups = entry.get("account", entry.get("group"))
        key = "account" if "account" in entry else "group"
        routes.append(Route(
            name=name, channel=channel, mentions=tuple(mentions),
            services=_globs(entry["service"], "service", label) if "service" in entry else (),
            groups=_globs(groups, key, label) if groups is not None else (),
            post_when_quiet=quiet))
    return tuple(routes)


def unrouted(alerts: tuple[Alert, ...], routes: tuple[Route, ...]) -> tuple[Alert, ...]:
    """The alerts no route takes (what `main_channel_gets = "unrouted"` posts)."""
    return tuple(a for a in alerts if not any(r.matches(a) for r in routes))
