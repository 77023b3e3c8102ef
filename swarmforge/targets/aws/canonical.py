"""Canonical's AWS account in each partition: whose Ubuntu AMIs a bake starts from.

The same account id never spans two partitions, so a search for Ubuntu by the
commercial id finds nothing in China or GovCloud. Canonical lists them under
"Ownership verification" in its AWS documentation (canonical/ubuntu-cloud-docs,
find-ubuntu-images).
"""

from __future__ import annotations

from swarmforge.targets.aws import partition_of

CANONICAL_OWNERS = {
    "aws": "099720109477",
    "aws-us-gov": "513442679011",
    "aws-cn": "837727238323",
}


def canonical_owner(region: str) -> str:
    """Canonical's account id in ``region``'s partition (the commercial one for others)."""
    return CANONICAL_OWNERS.get(partition_of(region), CANONICAL_OWNERS["aws"])
