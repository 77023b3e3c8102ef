"""The state-bootstrap use case: the S3 bucket (and, for old Terraform, the lock table)
that keeps a cluster's Terraform state, created once and repaired when it drifts."""

from __future__ import annotations

from dataclasses import dataclass

from swarmforge.errors import ConfigError
from swarmforge.settings import Settings
from swarmforge.targets.aws import client
from swarmforge.targets.aws.preflight import caller_account
from swarmforge.targets.aws.state_bucket import (
    BucketReport,
    TableReport,
    ensure_lock_table,
    ensure_state_bucket,
)


@dataclass(frozen=True)
class Bootstrapped:
    bucket: str
    region: str
    account: str
    report: BucketReport
    table: TableReport | None


def state_bootstrap(settings: Settings) -> Bootstrapped:
    """Create or repair the state bucket the settings name; a one-line error without one."""
    bucket, region = settings.state_bucket, settings.state_region or settings.region
    if not bucket:
        raise ConfigError(["state_bucket: name the bucket: --bucket NAME (or swarmforge.state_bucket)"])
    account = caller_account(settings)
    report = ensure_state_bucket(client("s3", region, settings.state_endpoint), bucket, region)
    table = None
    if settings.state_lock_table:
        table = ensure_lock_table(client("dynamodb", region, settings.state_endpoint),
                                  settings.state_lock_table, region)
    return Bootstrapped(bucket, region, account, report, table)
