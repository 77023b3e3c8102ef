"""Which AMI the aws target launches nodes from, and why that one.

One AMI of record: the SSM parameter ``/swarmforge/<cluster>/ami-id`` of the
cluster's region, which every bake writes, wherever it runs (a laptop, the
scheduled rebuild). In order:

1. the AMI given (``--ami`` or ``swarmforge.ami_id``): an explicit override;
2. the AMI of record in SSM. This machine's record of its own last bake
   (``ami.json``) must agree with it: a stale one (another machine, CI, baked
   since) is refused with both ids, so that an old laptop never rolls a cluster
   back to what it baked last;
3. with nothing in SSM: the newest AMI tagged for the cluster, unless this
   machine recorded a bake there, which SSM should hold and does not (deleted,
   or the bake's SSM write never happened): refused too, as a record nobody
   can check.

Only AMIs of the cluster's own region count.
"""

from __future__ import annotations

from swarmforge.errors import AmiError, ConfigError
from swarmforge.settings import Settings
from swarmforge.targets.aws.amis import BakeRecord, ClusterAmis, parameter_name, record_path

FROM_FLAG = "--ami"
FROM_RECORD = "SSM {parameter}"  # the parameter's name filled in: see recorded_in()
FROM_NEWEST = "newest AMI tagged for the cluster"


def recorded_in(cluster: str) -> str:
    """Where an AMI of record came from, as apply shows it: ``SSM /swarmforge/<cluster>/ami-id``."""
    return FROM_RECORD.format(parameter=parameter_name(cluster))


def choose_ami(settings: Settings) -> tuple[str, str]:
    """(AMI id, where it came from: FROM_FLAG, recorded_in(cluster) or FROM_NEWEST).

    ConfigError when this machine's bake record contradicts SSM; AmiError when
    there is no AMI at all.
    """
    if settings.ami_id:
        return settings.ami_id, FROM_FLAG
    local = _locally_recorded(settings)
    amis = ClusterAmis.of(settings)
    current = amis.current()
    if current:
        if local and local != current:
            raise ConfigError([_disagreement(settings, local, current)])
        return current, recorded_in(settings.cluster)
    if local:
        raise ConfigError([_unconfirmed(settings, local)])
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


def _disagreement(settings: Settings, local: str, current: str) -> str:
    path, parameter = record_path(settings), parameter_name(settings.cluster)
    return (f"{path} records {local} for {settings.region}, but the AMI of record, SSM "
            f"{parameter} in {settings.region}, is {current} (written by a later bake or by "
            f"hand): remove {path} to launch {current}, or pass --ami {local} to launch "
            f"{local} on purpose")


def _unconfirmed(settings: Settings, local: str) -> str:
    path, parameter = record_path(settings), parameter_name(settings.cluster)
    return (f"{path} records {local} for {settings.region}, but SSM {parameter} in "
            f"{settings.region} holds no AMI of record: run `invoke bake --cluster "
            f"{settings.cluster}` to record a new one, pass --ami {local} to launch this one, "
            f"or remove {path}")
