"""The aws target's images as ``invoke rebuild`` sees them: what the current AMI was built
from (its tags), and which Ubuntu AMI a bake would start from now.

The search for the base AMI is packer/sources.pkr.hcl's ``source_ami_filter``,
asked of EC2 the same way (Canonical's owner id in the region's partition, the
same name pattern and filters, the most recent by creation date);
tests/test_rebuild.py holds the two in step.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from swarmforge.errors import AmiError
from swarmforge.provenance import ImageFacts
from swarmforge.settings import Settings
from swarmforge.targets.aws.ami_choice import choose_ami
from swarmforge.targets.aws.amis import DOCKER_TAG, ClusterAmis
from swarmforge.targets.aws.bake import DEFAULT_DOCKER_VERSION
from swarmforge.targets.aws.canonical import CANONICAL_OWNERS, canonical_owner

# Tag keys; packer/sources.pkr.hcl writes BASE_TAG, rebuild writes INPUTS_TAG after a bake.
BASE_TAG = "swarmforge:base-ami"
INPUTS_TAG = "swarmforge:inputs"

#: Canonical's account in the commercial partition; other partitions: canonical.py.
CANONICAL = CANONICAL_OWNERS["aws"]
#: packer/variables.pkr.hcl's default ``ubuntu_release``.
UBUNTU_RELEASE = "noble-24.04"
UBUNTU_NAME = "ubuntu/images/hvm-ssd*/ubuntu-{release}-amd64-server-*"


def base_filters(release: str = UBUNTU_RELEASE) -> list[dict[str, Any]]:
    """The ``filters`` of packer's source_ami_filter, as DescribeImages takes them."""
    return [
        {"Name": "name", "Values": [UBUNTU_NAME.format(release=release)]},
        {"Name": "root-device-type", "Values": ["ebs"]},
        {"Name": "virtualization-type", "Values": ["hvm"]},
    ]


def newest_base_ami(ec2: Any, release: str = UBUNTU_RELEASE) -> str | None:
    """The Ubuntu AMI ``packer build`` would start from now (``most_recent``), or None:
    Canonical's, in the partition of ``ec2``'s region."""
    owner = canonical_owner(ec2.meta.region_name)
    pages = ec2.get_paginator("describe_images").paginate(Owners=[owner],
                                                          Filters=base_filters(release))
    images = [image for page in pages for image in page["Images"]]
    if not images:
        return None
    newest = max(images, key=lambda image: _created(image) or datetime.min)
    return str(newest["ImageId"])


class AmiStore:
    """The AMIs of one cluster: the current one's provenance, stamping, pruning."""

    def __init__(self, settings: Settings, regions: tuple[str, ...] = ()) -> None:
        self.settings = settings
        self.amis = ClusterAmis.of(settings)
        self.regions = tuple(dict.fromkeys((settings.region, *regions)))

    def current(self) -> ImageFacts | None:
        try:
            ami_id, _source = choose_ami(self.settings)
        except AmiError:
            return None  # never baked, or everything pruned: a bake is due
        image = self._describe(ami_id)
        tags = {tag["Key"]: tag["Value"] for tag in image.get("Tags", [])}
        return ImageFacts(id=ami_id, created=_created(image),
                          docker_spec=tags.get(DOCKER_TAG, ""),
                          inputs_digest=tags.get(INPUTS_TAG, ""), base=tags.get(BASE_TAG, ""))

    def newest_base(self) -> str | None:
        return newest_base_ami(self.amis.ec2)

    def bake_docker_spec(self, current: ImageFacts | None) -> str:
        # The pin stays what the current AMI was baked with: a rebuild is no upgrade of it.
        return current.docker_spec if current and current.docker_spec else DEFAULT_DOCKER_VERSION

    def stamp(self, images: Mapping[str, str], digest: str) -> None:
        for region, ami_id in images.items():
            ClusterAmis.of(self.settings, region).tag(ami_id, {INPUTS_TAG: digest})

    def prune(self, keep: int) -> list[str]:
        pruned: list[str] = []
        for region in self.regions:
            amis = ClusterAmis.of(self.settings, region)
            pruned += amis.prune(amis.prune_plan(keep))
        return pruned

    def _describe(self, ami_id: str) -> dict[str, Any]:
        """The AMI, or {} when it is gone (deregistered by hand): nothing known, so a bake is due."""
        try:
            images = self.amis.ec2.describe_images(ImageIds=[ami_id])["Images"]
        except ClientError as error:
            if error.response["Error"]["Code"] in ("InvalidAMIID.NotFound", "InvalidAMIID.Unavailable"):
                return {}
            raise
        return dict(images[0]) if images else {}


def _created(image: Mapping[str, Any]) -> datetime | None:
    text = image.get("CreationDate")
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None
