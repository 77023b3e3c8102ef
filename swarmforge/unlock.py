"""The unlock use case: who holds a cluster, what is left unfinished, and clearing stale locks.

Two locks guard a cluster: swarmforge's own (one operation at a time, see
operation.py; on aws a lease in S3 that a dead run leaves behind until it
expires) and Terraform's state lock (a ``.tflock`` object beside the state in S3,
which a killed Terraform run can leave forever). Neither is removed lightly: a
live run's lock never is, by design of its checks, and Terraform's is cleared
only while this command holds the cluster, so never beneath a running operation.
"""

from __future__ import annotations

from dataclasses import dataclass

from swarmforge.errors import ConfigError
from swarmforge.operation import Operation
from swarmforge.progress import Progress
from swarmforge.settings import Settings
from swarmforge.targets import target_for
from swarmforge.workspace import initialised_terraform


@dataclass(frozen=True)
class LockStatus:
    """What holds a cluster now."""

    where: str  # where its lock lives
    holder: str | None  # None: free
    unfinished: Operation | None  # an operation the journal says is half done

    @property
    def held_or_unfinished(self) -> bool:
        return bool(self.holder or self.unfinished)


def lock_status(settings: Settings) -> LockStatus:
    operations = target_for(settings).operation_store()
    return LockStatus(operations.where, operations.holder(), operations.journal().load())


def force_unlock(settings: Settings) -> str | None:
    """Remove swarmforge's lock of the cluster; who held it, or None when it was free."""
    return target_for(settings).operation_store().force_unlock()


def terraform_unlock(settings: Settings, lock_id: str, progress: Progress | None = None) -> None:
    """``terraform force-unlock`` the lock ``lock_id`` in the cluster's workspace, holding the
    cluster meanwhile (BusyError while an operation runs: the lock may well be its own)."""
    if not lock_id.strip() or lock_id.startswith("-"):
        raise ConfigError([f"--terraform-lock: {lock_id!r} is not a lock ID; Terraform's error "
                           "names it (ID: ...)"])
    progress = progress or Progress()
    target = target_for(settings)
    operations = target.operation_store()
    with operations.exclusive(f"invoke unlock --terraform-lock {lock_id}", progress.detail):
        tf = initialised_terraform(settings, target.config_dir, target.mirrored_providers,
                                   progress.detail)
        with progress.step(f"removing Terraform's state lock {lock_id}"):
            tf.force_unlock(lock_id)
