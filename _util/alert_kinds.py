"""Alert kinds and statuses, named once.

Every consumer (detection, the lifecycle, mutes, the backtest, the site and Slack) reads
the rules' names, directions, titles and plot types from here; report.json and the TOML
config are the only other places these words appear, as data.

A new rule adds its name below and one `AlertKind` per direction to `ALERT_KINDS`; its
position there is its section's position in the Slack digest and on the report page.
"""
from __future__ import annotations

from dataclasses import dataclass

# The rules (report.json's `kind`, a [[mute]] entry's `kind`).
SPIKE = "spike"
TREND = "trend"
RULES = (SPIKE, TREND)

# Directions.
UP = "up"
DOWN = "down"

# Statuses of an alert's episode (issue 8): first day, or a day after one it fired on.
NEW = "new"
CONTINUING = "continuing"
STATUSES = (NEW, CONTINUING)

# Plot types: what an alert's page draws.
SPIKE_PLOT = "spike"  # the series with its baseline band
TREND_PLOT = "trend"  # cost with its EMAs, and the MACD against its signal line


@dataclass(frozen=True)
class AlertKind:
    """One rule in one direction: a section of the digest and of the report page."""

    rule: str
    direction: str
    title: str  # the section's title, as the original bot wrote it (Slack and the site)
    continuing_label: str  # the digest's one line of alerts that continue an episode
    plot: str  # SPIKE_PLOT or TREND_PLOT: its page's figure, and how its lines read

    @property
    def key(self) -> tuple[str, str]:
        return (self.rule, self.direction)

    @property
    def name(self) -> str:
        """'spike up': how the backtest's table and the pages name it."""
        return f"{self.rule} {self.direction}"


# In the order of the digest's sections.
ALERT_KINDS: tuple[AlertKind, ...] = (
    AlertKind(TREND, UP, "Upward Trending AWS Services", "Still trending up", TREND_PLOT),
    AlertKind(TREND, DOWN, "Downward Trending AWS Services", "Still trending down", TREND_PLOT),
    AlertKind(SPIKE, UP, "Spike up in AWS Services", "Still elevated", SPIKE_PLOT),
    AlertKind(SPIKE, DOWN, "Spike down in AWS Services", "Still low", SPIKE_PLOT),
)
_BY_KEY = {k.key: k for k in ALERT_KINDS}
# A kind whose rule is not named above would be refused in a [[mute]] entry and left out
# of the backtest's table: fail at import instead.
assert {k.rule for k in ALERT_KINDS} <= set(RULES), "add the new rule's name to RULES"


def kind_of(rule: str, direction: str) -> AlertKind:
    """The registered kind of an alert's (kind, direction)."""
    return _BY_KEY[(rule, direction)]


def side(direction: str) -> str:
    """'above' for up, 'below' for down: where a crossing or a spike went."""
    return "above" if direction == UP else "below"
