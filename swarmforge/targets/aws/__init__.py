"""boto3 side of the aws target: the state bucket and the AMIs.

Clients come from the standard boto3 credential chain. ``endpoint_url`` exists
for tests that run against moto's server on loopback; production leaves it unset.
"""

from __future__ import annotations

from typing import Any


def client(service: str, region: str, endpoint_url: str | None = None) -> Any:
    """A boto3 client for ``service`` in ``region`` (an explicit region: never guessed)."""
    import boto3  # here, not above: it takes a third of a second to import, and the local
    # target (every `invoke` start) never needs it

    session: Any = boto3.session.Session()  # Any: the stubs want a literal service name
    return session.client(service, region_name=region, endpoint_url=endpoint_url)
