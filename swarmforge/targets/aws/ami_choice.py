"""Which AMI the aws target launches nodes from, and why that one.

In order: the AMI given (``--ami`` or ``swarmforge.ami_id``); the recorded bake,
first this machine's record of its last bake, then the AMI of record in SSM;
the newest AMI tagged for the cluster. Only AMIs of the cluster's own region count.
"""

from __future__ import annotations

from swarmforge.errors import AmiError
from swarmforge.settings import Settings
from swarmforge.targets.aws.amis import BakeRecord, ClusterAmis, record_path

FROM_FLAG = "--ami"
FROM_RECORD = "recorded bake"
FROM_NEWEST = "newest tagged AMI"


def choose_ami(settings: Settings) -> tuple[str, str]:
    """(AMI id, where it came from: FROM_FLAG, FROM_RECORD or FROM_NEWEST); AmiError if none."""
    if settings.ami_id:
        return settings.ami_id, FROM_FLAG
    local = _locally_recorded(settings)
    if local:
        return local, FROM_RECORD
    amis = ClusterAmis.of(settings)
    current = amis.current()
    if current:
        return current, FROM_RECORD
    newest = amis.newest()
    if newest:
        return newest.id, FROM_NEWEST
    raise AmiError(
        f"no AMI for cluster {settings.cluster!r} in {settings.region}: nothing recorded by a bake, "
        f"none tagged for it. Run `invoke bake --cluster {settings.cluster}` or pass --ami"
    )


def _locally_recorded(settings: Settings) -> str | None:
    record = BakeRecord.load(record_path(settings))
    return record.amis.get(settings.region) if record else None
