"""AWS Organizations as a source of account names (`organizations:ListAccounts`).

Cost Explorer names only the accounts a fetch returns, and only when it fetches; the
organization knows every member account by name, including those renamed since. Reading
it is optional (`COST_TRACKING_ACCOUNT_NAMES_FROM_ORGANIZATIONS=on`), needs one more IAM
action and works only from the management account or a delegated administrator, so a
refusal is a warning in the log: names are a courtesy, never a reason to fail a run.
"""
from __future__ import annotations

import logging
from typing import Any

import botocore.exceptions

log = logging.getLogger(__name__)

# Who said so, in the account_name table.
ORGANIZATIONS = "organizations"
# ListAccounts allows a few requests a second; standard retries ride out throttling.
ORGANIZATIONS_RETRIES = {"mode": "standard", "max_attempts": 5}


def make_organizations_client() -> Any:
    """boto3's Organizations client with the standard credential chain. Organizations is
    a global service whose endpoint is in us-east-1 (AWS_ENDPOINT_URL_ORGANIZATIONS, or
    AWS_ENDPOINT_URL, redirects it as usual)."""
    import boto3  # with the first client: see cost_explorer.make_ce_client
    from botocore.config import Config

    session = boto3.session.Session()
    return session.client("organizations", region_name=session.region_name or "us-east-1",
                          config=Config(retries=ORGANIZATIONS_RETRIES, connect_timeout=10,
                                        read_timeout=30))


def organization_account_names(client: Any) -> dict[str, str]:
    """Every account of the organization by ID -> name (suspended and closed ones too:
    their past costs are still in the history), or {} with a warning when the
    organization cannot be read."""
    names: dict[str, str] = {}
    try:
        for page in client.get_paginator("list_accounts").paginate():
            for account in page.get("Accounts", []):
                if account.get("Id") and account.get("Name"):
                    names[account["Id"]] = account["Name"]
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        log.warning("no account names from AWS Organizations (%s): %s", code, _advice(code))
        return {}
    except botocore.exceptions.BotoCoreError as exc:
        log.warning("no account names from AWS Organizations: %s", exc)
        return {}
    return names


def _advice(code: str) -> str:
    if code in ("AccessDeniedException", "AccessDenied"):
        return ("the bot's role needs organizations:ListAccounts, in the management account "
                "or a delegated administrator; Cost Explorer's names are still used")
    if code == "AWSOrganizationsNotInUseException":
        return ("this account is not in an organization; set "
                "COST_TRACKING_ACCOUNT_NAMES_FROM_ORGANIZATIONS=off")
    return "Cost Explorer's names are still used"
