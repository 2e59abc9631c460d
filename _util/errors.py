"""One small error hierarchy; the driver turns each into one line and an exit code."""
from __future__ import annotations

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_LOCKED = 4


class CostTrackingError(Exception):
    """Base of every error the bot expects and explains."""

    exit_code = EXIT_UNEXPECTED
    # Requests a fetch made to the cost source before it failed (Cost Explorer bills $0.01
    # each; botocore's retries of one call count once), so the run record shows what a
    # failure cost.
    requests = 0


class ConfigError(CostTrackingError):
    """A setting, flag or config file is invalid."""

    exit_code = EXIT_USAGE


class SourceError(CostTrackingError):
    """The cost source cannot be read (credentials, permissions, data unavailable)."""

    exit_code = EXIT_USAGE


class SourceUnavailable(SourceError):
    """The cost source could not be reached or kept failing after retries.

    The run goes on with what the database holds and marks the report stale.
    """


class UnusableResponse(SourceUnavailable):
    """The source answered with something that cannot be stored (a group without the
    metric, an amount that is not a number, a unit that is not a currency).

    Nothing of the fetch is stored, so history never changes silently; like an outage,
    the run reports from what the database holds, marked stale, and exits 3.
    """


class MixedCurrencies(UnusableResponse):
    """A fetch in another currency than the stored costs of its metric (or in two at
    once): refused like any unusable answer, since one series cannot mix currencies."""


class StoreError(CostTrackingError):
    """The database cannot be reached or written."""

    exit_code = EXIT_USAGE


class DeliveryError(CostTrackingError):
    """Slack or S3 did not take what the run produced, after retries."""

    exit_code = EXIT_PARTIAL


class OutputError(CostTrackingError):
    """A file of the output folder cannot be written (no space, no permission)."""

    exit_code = EXIT_USAGE


class LockedError(CostTrackingError):
    """Another run holds the lock for this output folder or this database."""

    exit_code = EXIT_LOCKED
