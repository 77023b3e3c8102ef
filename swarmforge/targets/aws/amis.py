"""The baked AMIs of one cluster in one region: find, tag, list, prune, and record the current one.

Every bake makes a new AMI (no force-deregister), so rolling back is picking an
older one, and old ones pile up until pruned. Pruning never touches the AMI
recorded as current, one that any instance still runs from, or the newest few.
The AMI of record lives in SSM at ``/swarmforge/<cluster>/ami-id`` (one parameter
per region). The machine that baked it also keeps a ``BakeRecord`` file (the
AMIs, the inputs, Packer's log): its own copy, which never outranks SSM
(ami_choice refuses one that disagrees).

Two of EC2's and SSM's answers settle only some time after the call that changes
them, so both steps wait for them (``Patience``: bounded back-off with jitter):
a snapshot cannot be deleted for a while after its AMI is deregistered
(``InvalidSnapshot.InUse``), and SSM checks an ``aws:ec2:image`` value after
``put_parameter`` has returned.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from swarmforge.catalog import Image, PrunePlan, newest_first, plan_prune
from swarmforge.errors import AmiError
from swarmforge.private_files import private_dirs, write_private
from swarmforge.settings import Settings
from swarmforge.targets.aws import client

# Tag keys written by packer/sources.pkr.hcl; keep the two in step.
CLUSTER_TAG = "swarmforge:cluster"
COMMIT_TAG = "swarmforge:git-commit"
DOCKER_TAG = "swarmforge:docker"
#: Put on an AMI's snapshots by the prune that deregisters it (the value: that AMI), so that
#: a later prune deletes those EC2 still refused to. The cluster tag alone proves too little:
#: a backup of a node's volume may carry it.
PRUNED_TAG = "swarmforge:pruned-ami"

#: An instance in any of these states holds on to its AMI (a stopped one can start again).
HOLDING_STATES = ("pending", "running", "stopping", "stopped")


def parameter_name(cluster: str) -> str:
    return f"/swarmforge/{cluster}/ami-id"


@dataclass(frozen=True)
class Patience:
    """How long to wait for AWS to settle: exponential back-off with jitter, at most
    ``budget`` seconds of sleep in all. ``sleep`` is injectable, so tests do not wait."""

    budget: float = 120.0
    first: float = 1.0  # the first wait's ceiling, doubled each time up to ``cap``
    cap: float = 16.0
    sleep: Callable[[float], None] = time.sleep

    def until(self, done: Callable[[], bool]) -> bool:
        """Call ``done`` until it says True (then True), or until the budget is slept (False)."""
        slept, attempt = 0.0, 0
        while not done():
            wait = min(self.delay(attempt), self.budget - slept)
            if wait <= 0:
                return False
            self.sleep(wait)
            slept += wait
            attempt += 1
        return True

    def delay(self, attempt: int) -> float:
        """The wait after the ``attempt``-th try (0 based): at least half its ceiling, so a
        budget buys a bounded number of tries, and jittered above that, so that runs waiting
        on the same account do not ask in step."""
        ceiling = min(self.cap, self.first * 2.0**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)


# --- the local record of a bake ---------------------------------------------------------

RECORD_FILE = "ami.json"


def record_path(settings: Settings) -> Path:
    """This machine's record of the cluster's last bake, in its build dir."""
    return settings.build_dir / RECORD_FILE


@dataclass(frozen=True)
class BakeRecord:
    """What the last successful bake on this machine made, and from what."""

    cluster: str
    amis: Mapping[str, str]  # {region: AMI id}
    docker_version: str  # the spec as the operator wrote it
    git_commit: str
    packer_run_uuid: str
    baked_at: str  # ISO 8601, UTC
    log: str  # Packer's full output

    def save(self, path: Path) -> None:
        """Write atomically: a bake that dies half-way leaves the previous record whole."""
        private_dirs(path.parent)
        write_private(path, json.dumps({**asdict(self), "amis": dict(self.amis)}, indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> BakeRecord | None:
        """The record at ``path``, or None when no bake was recorded there."""
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as problem:
            raise AmiError(f"cannot read the bake record {path}: {problem}; "
                           "bake again or remove it") from None


class ClusterAmis:
    """The AMIs one cluster baked, in one region: its ImageCatalog on aws."""

    kind = "AMI"

    def __init__(self, cluster: str, region: str, endpoint_url: str | None = None,
                 patience: Patience | None = None) -> None:
        self.cluster = cluster
        self.region = region
        self.where = f"in {region}"
        self.ec2 = client("ec2", region, endpoint_url)
        self.ssm = client("ssm", region, endpoint_url)
        self.patience = patience or Patience()
        #: The snapshots the last prune could not delete yet; the next prune deletes them.
        self.snapshots_left: tuple[str, ...] = ()

    @classmethod
    def of(cls, settings: Settings, region: str | None = None) -> ClusterAmis:
        """The settings' cluster in ``region`` (default: the cluster's own)."""
        return cls(settings.cluster, region or settings.region, settings.aws_endpoint)

    def inventory(self) -> list[Image]:
        """Every AMI tagged for the cluster, newest first, each marked in use or not."""
        images = self._images()
        busy = self.in_use(image["ImageId"] for image in images)
        return newest_first(_ami(image, image["ImageId"] in busy) for image in images)

    def newest(self) -> Image | None:
        """The most recently baked AMI of the cluster, or None before the first bake."""
        found = newest_first(_ami(image) for image in self._images())
        return found[0] if found else None

    def in_use(self, ami_ids: Iterable[str]) -> set[str]:
        """Those of ``ami_ids`` that some live or stopped instance was launched from."""
        ids = sorted(set(ami_ids))
        if not ids:
            return set()
        filters = [
            {"Name": "image-id", "Values": ids},
            {"Name": "instance-state-name", "Values": list(HOLDING_STATES)},
        ]
        pages = self.ec2.get_paginator("describe_instances").paginate(Filters=filters)
        return {
            instance["ImageId"]
            for page in pages
            for reservation in page["Reservations"]
            for instance in reservation["Instances"]
        }

    def prune_plan(self, keep: int) -> PrunePlan:
        """What pruning down to the newest ``keep`` would delete, from a fresh inventory."""
        # in_use=(): the inventory has already marked the AMIs instances hold on to.
        return plan_prune(self.inventory(), keep, self.current(), in_use=())

    def tag(self, ami_id: str, tags: Mapping[str, str]) -> None:
        """Tag an AMI and its snapshots alike (pruning and cost reports look at both)."""
        image = self._image(ami_id)
        resources = [ami_id, *_snapshot_ids(image)]
        pairs = [{"Key": key, "Value": value} for key, value in tags.items()]
        self.ec2.create_tags(Resources=resources, Tags=pairs)

    def prune(self, plan: PrunePlan) -> list[str]:
        """Deregister the plan's AMIs and delete their snapshots; returns the AMI ids.

        Checks again first: an AMI that became current or in use since the plan
        was made is a reason to stop, not to carry on. EC2 refuses to delete a
        snapshot for a while after its AMI is gone, so deleting is retried within
        ``patience``; what is still refused then stays tagged (PRUNED_TAG), is named
        in ``snapshots_left``, and the next prune, even one of an empty plan, deletes it.
        """
        ids = [ami.id for ami in plan.delete]
        self._refuse_busy(ids)
        for ami in plan.delete:
            self._deregister(ami)
        self.snapshots_left = self._delete_snapshots(self._orphans(plan))
        return ids

    def record_current(self, ami_id: str) -> None:
        """Record ``ami_id`` as the cluster's AMI of record (what apply and rolls use).

        Recorded means read back: SSM checks an aws:ec2:image value after
        put_parameter returns, and keeps the old one until then, or for good if
        it refuses the new one. AmiError when it never reads back.
        """
        self._image(ami_id)  # refuse to record an AMI that does not exist
        self.ssm.put_parameter(
            Name=parameter_name(self.cluster),
            Value=ami_id,
            Type="String",
            DataType="aws:ec2:image",
            Overwrite=True,
            Description=f"AMI baked by swarmforge for cluster {self.cluster}",
        )
        if not self.patience.until(lambda: self.current() == ami_id):
            raise AmiError(self._not_recorded(ami_id))

    def current(self) -> str | None:
        """The recorded AMI id, or None when nothing was recorded yet."""
        try:
            answer = self.ssm.get_parameter(Name=parameter_name(self.cluster))
        except ClientError as error:
            if error.response["Error"]["Code"] == "ParameterNotFound":
                return None
            raise
        value: str = answer["Parameter"]["Value"]
        return value

    def _images(self) -> list[dict[str, Any]]:
        filters = [{"Name": f"tag:{CLUSTER_TAG}", "Values": [self.cluster]}]
        answer = self.ec2.describe_images(Owners=["self"], Filters=filters)
        images: list[dict[str, Any]] = answer["Images"]
        return images

    def _image(self, ami_id: str) -> dict[str, Any]:
        try:
            images = self.ec2.describe_images(ImageIds=[ami_id])["Images"]
        except ClientError as error:
            raise AmiError(f"{ami_id} not found in {self.region}: {error}") from None
        if not images:
            raise AmiError(f"{ami_id} not found in {self.region}")
        image: dict[str, Any] = images[0]
        return image

    def _refuse_busy(self, ids: list[str]) -> None:
        now_busy = self.in_use(ids)
        current = self.current()
        if current in ids:
            now_busy.add(current)
        if now_busy:
            raise AmiError(f"not pruning: {', '.join(sorted(now_busy))} became current or in use")

    def _deregister(self, ami: Image) -> None:
        # Marked before the AMI goes, so that no crash or refusal after it can lose its
        # snapshots: the next prune finds them by the mark.
        if ami.snapshot_ids:
            marks = {CLUSTER_TAG: self.cluster, PRUNED_TAG: ami.id}
            self.ec2.create_tags(Resources=list(ami.snapshot_ids),
                                 Tags=[{"Key": k, "Value": v} for k, v in marks.items()])
        self.ec2.deregister_image(ImageId=ami.id)

    def _orphans(self, plan: PrunePlan) -> set[str]:
        """The plan's snapshots and those earlier prunes left, less any an AMI still uses."""
        # The plan's own are named, not only looked up: EC2's tag filters lag behind create_tags.
        ids = {snapshot for ami in plan.delete for snapshot in ami.snapshot_ids}
        filters = [{"Name": f"tag:{CLUSTER_TAG}", "Values": [self.cluster]},
                   {"Name": "tag-key", "Values": [PRUNED_TAG]}]
        pages = self.ec2.get_paginator("describe_snapshots").paginate(OwnerIds=["self"],
                                                                      Filters=filters)
        ids |= {snapshot["SnapshotId"] for page in pages for snapshot in page["Snapshots"]}
        return ids - self._backing(exclude={ami.id for ami in plan.delete})

    def _backing(self, exclude: set[str]) -> set[str]:
        """The snapshots behind the account's AMIs here (any cluster's, or none), but
        ``exclude``'s: those were just deregistered, and DescribeImages may lag behind."""
        # A disabled AMI holds on to its snapshots too, and only IncludeDisabled lists it.
        pages = self.ec2.get_paginator("describe_images").paginate(Owners=["self"],
                                                                   IncludeDisabled=True)
        return {snapshot for page in pages for image in page["Images"]
                if image["ImageId"] not in exclude and image.get("State") != "deregistered"
                for snapshot in _snapshot_ids(image)}

    def _delete_snapshots(self, ids: set[str]) -> tuple[str, ...]:
        """Delete ``ids``, retrying those EC2 still holds within ``patience``; the rest."""
        pending = sorted(ids)

        def all_deleted() -> bool:
            pending[:] = [snapshot for snapshot in pending if not self._delete_snapshot(snapshot)]
            return not pending

        self.patience.until(all_deleted)
        return tuple(pending)

    def _delete_snapshot(self, snapshot_id: str) -> bool:
        """Whether ``snapshot_id`` is gone now; False while EC2 says its AMI still holds it."""
        try:
            self.ec2.delete_snapshot(SnapshotId=snapshot_id)
        except ClientError as error:
            code = error.response["Error"]["Code"]
            if code == "InvalidSnapshot.InUse":
                return False
            if code != "InvalidSnapshot.NotFound":  # NotFound: deleted already, by us or by hand
                raise
        return True

    def _not_recorded(self, ami_id: str) -> str:
        name = parameter_name(self.cluster)
        return (f"{ami_id} was baked, but SSM in {self.region} did not take it as cluster "
                f"{self.cluster!r}'s AMI of record within {self.patience.budget:.0f}s ({name} "
                f"still reads {self.current() or 'nothing'}): record it with `aws ssm "
                f"put-parameter --region {self.region} --name {name} --type String "
                f"--data-type aws:ec2:image --overwrite --value {ami_id}`, or run `invoke bake` again")


def _ami(image: Mapping[str, Any], in_use: bool = False) -> Image:
    tags = {tag["Key"]: tag["Value"] for tag in image.get("Tags", [])}
    return Image(
        id=image["ImageId"],
        name=image.get("Name", ""),
        created=datetime.fromisoformat(image["CreationDate"].replace("Z", "+00:00")),
        docker_version=tags.get(DOCKER_TAG, ""),
        git_commit=tags.get(COMMIT_TAG, ""),
        snapshot_ids=tuple(_snapshot_ids(image)),
        in_use=in_use,
    )


def _snapshot_ids(image: Mapping[str, Any]) -> list[str]:
    mappings = image.get("BlockDeviceMappings", [])
    return [m["Ebs"]["SnapshotId"] for m in mappings if m.get("Ebs", {}).get("SnapshotId")]
