"""Where a Cost and Usage Report's Parquet files are, by billing period, and whether they
changed since they were read.

AWS Data Exports writes `<prefix>/<export>/data/BILLING_PERIOD=YYYY-MM/*.parquet` and
rewrites the current month's files (and, for a couple of weeks, the previous month's)
as the bill is refined. A period's fingerprint (its files' names with their S3 ETags, or
sizes and modification times in a local folder) tells the source whether the period must
be read again: a month whose files did not change is not.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from botocore.exceptions import BotoCoreError, ClientError

from _util.errors import ConfigError, SourceError, SourceUnavailable

_PERIOD = re.compile(r"(?:^|/)BILLING_PERIOD=(\d{4}-\d{2})/", re.IGNORECASE)


@dataclass(frozen=True)
class ReportFile:
    """One Parquet file of the export: a local path or an S3 key."""

    name: str
    period: str  # YYYY-MM
    size: int
    version: str  # the ETag, or the modification time in ns


def period_of(name: str) -> str | None:
    match = _PERIOD.search(name)
    return match.group(1) if match else None


def fingerprints(files: list[ReportFile]) -> dict[str, str]:
    """Each billing period's fingerprint: a digest of its files' names, sizes and versions."""
    by_period: dict[str, list[ReportFile]] = {}
    for f in files:
        by_period.setdefault(f.period, []).append(f)
    return {period: hashlib.sha256("\n".join(
        f"{f.name}\t{f.size}\t{f.version}" for f in sorted(group, key=lambda f: f.name)
    ).encode("utf-8")).hexdigest()[:32] for period, group in by_period.items()}


class LocalReport:
    """An export copied to (or synced into) a local folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.uri = str(folder)

    def list_files(self) -> list[ReportFile]:
        if not self.folder.is_dir():
            raise ConfigError(f"COST_TRACKING_CUR_URI {self.folder} is not a folder")
        files = []
        for path in sorted(self.folder.rglob("*.parquet")):
            period = period_of(path.relative_to(self.folder).as_posix())
            if period is None:
                continue
            stat = path.stat()
            files.append(ReportFile(str(path), period, stat.st_size, str(stat.st_mtime_ns)))
        return files


class S3Report:
    """An export in its S3 bucket, listed and downloaded with boto3 (its credential chain
    and AWS_ENDPOINT_URL_S3), so nothing but boto3 talks to S3."""

    def __init__(self, bucket: str, prefix: str, client) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.client = client
        self.uri = f"s3://{bucket}/{prefix}"

    def list_files(self) -> list[ReportFile]:
        files = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix)
            for page in pages:
                for obj in page.get("Contents", []):
                    key = obj["Key"]
                    period = period_of(key[len(self.prefix):])
                    if period is None or not key.endswith(".parquet"):
                        continue
                    files.append(ReportFile(key, period, int(obj["Size"]),
                                            str(obj.get("ETag", "")).strip('"')))
        except ClientError as exc:
            raise _s3_error(exc, f"listing {self.uri}") from None
        except BotoCoreError as exc:
            raise SourceUnavailable(f"cannot reach S3 to list {self.uri}: {exc}") from None
        return files

    def download(self, file: ReportFile, target: Path) -> None:
        try:
            self.client.download_file(self.bucket, file.name, str(target))
        except ClientError as exc:
            raise _s3_error(exc, f"reading s3://{self.bucket}/{file.name}") from None
        except BotoCoreError as exc:
            raise SourceUnavailable(f"cannot reach S3 to read s3://{self.bucket}/{file.name}: "
                                    f"{exc}") from None


def _s3_error(exc: ClientError, doing: str) -> SourceError:
    code = exc.response.get("Error", {}).get("Code", "")
    if code in ("AccessDenied", "403", "AllAccessDisabled", "InvalidAccessKeyId",
                "SignatureDoesNotMatch", "NoSuchBucket", "404"):
        return SourceError(f"{doing} failed ({code}): check the bucket and that the bot may "
                           "s3:ListBucket and s3:GetObject on it")
    return SourceUnavailable(f"{doing} failed ({code or exc})")


def open_report(uri: str, s3_client_factory) -> LocalReport | S3Report:
    """The export at `uri`: `s3://bucket/prefix/` or a local folder."""
    if uri.startswith("s3://"):
        parsed = urlparse(uri)
        if not parsed.netloc:
            raise ConfigError(f"COST_TRACKING_CUR_URI {uri!r} names no bucket")
        prefix = parsed.path.lstrip("/")
        return S3Report(parsed.netloc, prefix, s3_client_factory())
    return LocalReport(Path(uri).expanduser())
