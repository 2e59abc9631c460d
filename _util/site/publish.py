"""Mirror the run's new site files to an S3 bucket, and derive the site's public URL.

The bot never makes objects public: who can read the site is the bucket policy's job
(the README shows one limited to an IP allowlist). Uploads carry a Content-Type so the S3
website endpoint serves pages as pages, and a Cache-Control so the index and the day's
report refresh quickly while plot images, which do not change, may be cached for a day.
"""
from __future__ import annotations

import logging
import mimetypes
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from botocore.exceptions import BotoCoreError, ClientError

from _util.errors import DeliveryError
from _util.paths import site_index

log = logging.getLogger(__name__)

# Regions whose website endpoint is "s3-website-REGION" (dash); every other region,
# and every region opened since 2014, uses "s3-website.REGION" (dot). From the AWS
# General Reference, "Amazon S3 website endpoints".
DASH_REGIONS = frozenset(
    {
        "us-east-1",
        "us-west-1",
        "us-west-2",
        "ap-southeast-1",
        "ap-southeast-2",
        "ap-northeast-1",
        "eu-west-1",
        "sa-east-1",
        "us-gov-west-1",
    }
)

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".png": "image/png",
    ".json": "application/json",
    ".css": "text/css; charset=utf-8",
}
CACHE_LONG = "max-age=86400"
CACHE_SHORT = "max-age=300"


@dataclass(frozen=True)
class PublishResult:
    """What one publish did: where, and how many objects it wrote."""

    bucket: str
    prefix: str
    uploaded: int
    keys: tuple[str, ...]


def make_s3_client() -> Any:
    """The one S3 client factory: boto3's standard settings and retry mode.

    Credentials, region, `AWS_PROFILE` and `AWS_ENDPOINT_URL_S3` come from the environment
    the usual boto3 way, so tests and S3-compatible stores need no code of their own.
    """
    import boto3  # with the first client: see cost_explorer.make_ce_client
    from botocore.config import Config

    return boto3.session.Session().client("s3", config=Config(retries={"mode": "standard"}))


def normalize_prefix(prefix: str) -> str:
    """'' stays ''; 'a', '/a/', 'a//' become 'a/' (S3 keys never start with '/')."""
    cleaned = "/".join(part for part in prefix.strip().split("/") if part)
    return f"{cleaned}/" if cleaned else ""


def website_url(bucket: str, region: str, prefix: str = "") -> str:
    """The S3 static website endpoint of the bucket (and prefix), without a trailing '/'.

    >>> website_url("costs", "us-east-1")
    'http://costs.s3-website-us-east-1.amazonaws.com'
    >>> website_url("costs", "eu-central-1", "/bot/")
    'http://costs.s3-website.eu-central-1.amazonaws.com/bot'
    """
    region = region or "us-east-1"
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    sep = "-" if region in DASH_REGIONS else "."
    base = f"http://{bucket}.s3-website{sep}{region}.{domain}"
    cleaned = normalize_prefix(prefix).rstrip("/")
    return f"{base}/{quote(cleaned, safe='/')}" if cleaned else base


def content_type(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in CONTENT_TYPES:
        return CONTENT_TYPES[suffix]
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def cache_control(path: Path) -> str:
    """Images never change once written; pages and report.json may be rewritten by a rerun."""
    return CACHE_LONG if path.suffix.lower() == ".png" else CACHE_SHORT


def _ordered(files: Iterable[Path], site_dir: Path) -> list[Path]:
    """Each file once, resolved, with the site index last so it never links ahead."""
    index = site_index(site_dir).resolve()
    seen: dict[Path, None] = {}
    for f in files:
        resolved = Path(f).resolve()
        if resolved != index:
            seen[resolved] = None
    return [*seen, index]


def _delivery_error(exc: ClientError, bucket: str, prefix: str, key: str) -> DeliveryError:
    code = exc.response.get("Error", {}).get("Code", "")
    target = f"arn:aws:s3:::{bucket}/{prefix}*"
    if code == "NoSuchBucket":
        return DeliveryError(
            f"S3 bucket {bucket} does not exist: create it (static website hosting on) or "
            f"fix COST_TRACKING_S3_BUCKET; the bot needs s3:PutObject on {target}"
        )
    # A 403 without an XML body (some proxies and S3-compatible stores; moto for a bucket
    # policy's Deny) reaches botocore as the code "403": a denial all the same.
    if code in ("AccessDenied", "AllAccessDisabled", "403", "Forbidden"):
        return DeliveryError(
            f"S3 denied writing {key} to bucket {bucket} ({code}): grant the bot's IAM "
            f"identity s3:PutObject on {target}"
        )
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"):
        return DeliveryError(
            f"S3 rejected the AWS credentials writing to bucket {bucket} ({code}): check "
            f"AWS_PROFILE or the instance role; the bot needs s3:PutObject on {target}"
        )
    message = exc.response.get("Error", {}).get("Message", str(exc))
    return DeliveryError(f"S3 upload of {key} to bucket {bucket} failed ({code}): {message}")


def publish(
    files: list[Path], site_dir: Path, bucket: str, prefix: str, s3: Any
) -> PublishResult:
    """Upload the files (and always the site index) under prefix + their path in site_dir.

    Stops at the first failure with one line naming the bucket and the IAM action, since
    a missing bucket or a denied PutObject fails every other file the same way.
    """
    site_dir = Path(site_dir).resolve()
    clean_prefix = normalize_prefix(prefix)
    keys: list[str] = []
    for path in _ordered(files, site_dir):
        try:
            rel = path.relative_to(site_dir)
        except ValueError as exc:
            raise ValueError(f"{path} is not inside the site folder {site_dir}") from exc
        key = clean_prefix + rel.as_posix()
        try:
            s3.put_object(
                Bucket=bucket,
                Key=key,
                Body=path.read_bytes(),
                ContentType=content_type(path),
                CacheControl=cache_control(path),
            )
        except ClientError as exc:
            raise _delivery_error(exc, bucket, clean_prefix, key) from exc
        except BotoCoreError as exc:
            raise DeliveryError(f"S3 upload of {key} to bucket {bucket} failed: {exc}") from exc
        keys.append(key)
    log.info("published %d files to s3://%s/%s", len(keys), bucket, clean_prefix)
    return PublishResult(bucket=bucket, prefix=clean_prefix, uploaded=len(keys), keys=tuple(keys))
