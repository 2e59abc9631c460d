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
    # GetCostAndUsage calls a fetch made before it failed (billed at $0.01 each; botocore's
    # retries of one call count once), so the run record shows what a failure cost.
    ce_requests = 0


class ConfigError(CostTrackingError):
    """A setting, flag or config file is invalid."""

    exit_code = EXIT_USAGE


class SourceError(CostTrackingError):
    """Cost Explorer cannot be read (credentials, permissions, data unavailable)."""

    exit_code = EXIT_USAGE


class StoreError(CostTrackingError):
    """The database cannot be reached or written."""

    exit_code = EXIT_USAGE


class DeliveryError(CostTrackingError):
    """Slack or S3 did not take what the run produced, after retries."""

    exit_code = EXIT_PARTIAL


class LockedError(CostTrackingError):
    """Another run holds the lock for this output folder."""

    exit_code = EXIT_LOCKED
