"""boto3 clients, made one way for every caller: the aws target, and the state bucket
read by any target that keeps its state there.

Clients come from the standard boto3 credential chain. ``endpoint_url`` exists
for tests that run against moto's server on loopback; production leaves it unset.
Every client retries throttling (``RequestLimitExceeded``, ``ThrottlingException``)
and transient errors itself, in botocore's standard mode: exponential back-off with
jitter, within a quota per client, so a busy account slows a run down instead of
failing it.
"""

from __future__ import annotations

from typing import Any

#: Retries of one call in botocore's standard mode. Its Config's ``max_attempts`` counts the
#: retries, not the first call: 11 attempts in all (meta.config.retries: total_max_attempts).
MAX_RETRIES = 10


def client(service: str, region: str, endpoint_url: str | None = None) -> Any:
    """A boto3 client for ``service`` in ``region`` (an explicit region: never guessed)."""
    # Imported here, not above: boto3 takes a third of a second to import, and the local
    # target (every `invoke` start) never needs it.
    import boto3
    from botocore.config import Config

    session: Any = boto3.session.Session()  # Any: the stubs want a literal service name
    # An explicit Config outranks AWS_RETRY_MODE and AWS_MAX_ATTEMPTS: every run retries alike.
    return session.client(service, region_name=region, endpoint_url=endpoint_url,
                          config=Config(retries={"mode": "standard", "max_attempts": MAX_RETRIES}))


def partition_of(region: str) -> str:
    """The ARN partition of ``region``: aws, aws-cn, aws-us-gov, ... (never a literal arn:aws)."""
    import boto3
    from botocore.exceptions import UnknownRegionError

    try:
        return str(boto3.session.Session().get_partition_for_region(region))
    except UnknownRegionError:
        return "aws"  # unknown to this botocore: a region newer than it, of the commercial partition
