"""The record each run leaves in <output>/runs/<date>.json: stages, timings, counts, exit."""
from __future__ import annotations

import datetime as dt
import json
import resource
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from _util.atomic_files import write_text
from _util.errors import EXIT_OK, EXIT_PARTIAL

# Statuses of a run and of its stages.
OK = "ok"
PARTIAL = "partial"
FAILED = "failed"


def peak_rss_mb() -> float:
    """Peak resident set of this process in MB (Linux reports kilobytes)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


@dataclass
class StageRecord:
    name: str
    seconds: float = 0.0
    # The process's peak resident memory so far, read when the stage ends: the first
    # stage whose figure jumps is the one that set the run's peak.
    peak_rss_mb: float = 0.0
    status: str = OK
    counts: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunRecord:
    """What a run did; written even when the run fails, so cron users can see why."""

    date: str
    started_at: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    finished_at: str | None = None
    exit_code: int | None = None
    status: str = "running"
    error: str | None = None
    ce_requests: int = 0
    rows_upserted: int = 0
    stages: list[StageRecord] = field(default_factory=list)
    # The day the report was about: the run's own, an earlier stored day when Cost
    # Explorer failed before the run's day was fetched, or None when nothing was reported.
    report_day: str | None = None
    # A report made late (its own run could not fetch its day): that run's outcome.
    replaces: dict[str, Any] | None = None
    # A scheduled daily run (no --date, --dry-run, --skip-fetch or backtest): the days such
    # runs cover tell a day the box was down from one the bot is not run on.
    scheduled: bool = False

    @contextmanager
    def stage(self, name: str) -> Iterator[StageRecord]:
        """Time a stage; an exception marks it failed and propagates."""
        record = StageRecord(name)
        self.stages.append(record)
        started = time.perf_counter()
        try:
            yield record
        except BaseException:
            record.status = FAILED
            raise
        finally:
            record.seconds = round(time.perf_counter() - started, 4)
            record.peak_rss_mb = peak_rss_mb()

    def finish(self, exit_code: int, status: str, error: str | None = None) -> None:
        self.exit_code = exit_code
        self.status = status
        self.error = error
        self.finished_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")

    def finish_with(self, problems: list[str]) -> None:
        """Finish as ok, or as partial (exit 3) naming the problems met."""
        self.finish(EXIT_PARTIAL if problems else EXIT_OK, PARTIAL if problems else OK,
                    "; ".join(problems) or None)

    def write(self, runs_dir: Path) -> Path:
        return write_text(runs_dir / f"{self.date}.json",
                          json.dumps(asdict(self), indent=2, default=str) + "\n")


# What a late report keeps of the failed run it replaces (its record's keys).
REPLACED_KEYS = ("started_at", "exit_code", "status", "error", "ce_requests", "report_day")
INGEST_STAGE = "ingest"


def read_record(path: Path) -> dict[str, Any] | None:
    """A run record as written, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def fetch_failed(record: dict[str, Any]) -> bool:
    """Whether the run could not fetch its costs (its ingest stage failed)."""
    return any(s.get("name") == INGEST_STAGE and s.get("status") == FAILED
               for s in record.get("stages", []))


def replaced(record: dict[str, Any]) -> dict[str, Any]:
    """The part of a failed run's record that the late report keeps under `replaces`."""
    return {key: record.get(key) for key in REPLACED_KEYS}
