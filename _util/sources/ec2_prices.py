"""On-demand prices of EC2 instance types from the AWS Price List (`pricing:GetProducts`):
Linux, shared tenancy, no pre-installed software, in the instance's region, in USD an hour.

The EC2 usage section multiplies an instance's hours by its type's price for an estimated
on-demand cost (spot instances too: what they would have cost on demand). Prices change
rarely, so the section keeps them in the database and asks again after PRICE_DAYS; one
request per (region, type) not known yet. The Price List answers from us-east-1.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from _util.sources.ec2_usage import DENIED_CODES

log = logging.getLogger(__name__)

GET_PRODUCTS = "pricing:GetProducts"
PRICE_DAYS = 7  # a cached price is asked again after a week
PRICING_REGION = "us-east-1"


def product_filters(region: str, instance_type: str) -> list[dict[str, str]]:
    """GetProducts filters for one on-demand Linux instance type in one region."""
    wanted = {"instanceType": instance_type, "regionCode": region, "operatingSystem": "Linux",
              "tenancy": "Shared", "preInstalledSw": "NA", "capacitystatus": "Used"}
    return [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in wanted.items()]


def hourly_usd(price_list: Iterable[str]) -> float | None:
    """The on-demand USD price an hour in GetProducts' PriceList (JSON strings), or None."""
    for text in price_list:
        product = json.loads(text) if isinstance(text, str) else text
        for term in ((product.get("terms") or {}).get("OnDemand") or {}).values():
            for dimension in (term.get("priceDimensions") or {}).values():
                usd = (dimension.get("pricePerUnit") or {}).get("USD")
                if dimension.get("unit") == "Hrs" and usd is not None and float(usd) > 0:
                    return float(usd)
    return None


class PricesDenied(Exception):
    """pricing:GetProducts is not allowed: no estimates this run."""


def fetch_prices(client: Any, pairs: Iterable[tuple[str, str]]) -> tuple[dict[tuple[str, str], float | None], int]:
    """The hourly price of each (region, instance type), None when the Price List has none,
    and the requests made. A refusal raises PricesDenied; any other failure leaves the
    pairs not fetched yet out (asked again next run)."""
    found: dict[tuple[str, str], float | None] = {}
    requests = 0
    for region, instance_type in sorted(set(pairs)):
        requests += 1
        try:
            answer = client.get_products(ServiceCode="AmazonEC2", FormatVersion="aws_v1",
                                         Filters=product_filters(region, instance_type),
                                         MaxResults=10)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code", "") in DENIED_CODES:
                raise PricesDenied(str(exc)) from exc
            log.warning("EC2 instance usage: no price for %s in %s (%s)", instance_type,
                        region, exc)
            continue
        except BotoCoreError as exc:
            log.warning("EC2 instance usage: no prices from the Price List (%s)", exc)
            break
        found[(region, instance_type)] = hourly_usd(answer.get("PriceList") or [])
    return found, requests
