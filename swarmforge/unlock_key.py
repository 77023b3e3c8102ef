"""The unlock-key use case: where the swarm's unlock key is kept, its rotation, and autolock
turned off. The key itself is never shown: it goes from a manager to the store only.

Without flags it also mends the store: if autolock is on and the store lacks the swarm's
key (a write that failed, a key rotated by hand on a manager), the key is read from an
active manager and stored, the one stored before kept as the previous key.
"""

from __future__ import annotations

from dataclasses import dataclass

from swarmforge.autolock import StoredKeyUnlocker
from swarmforge.cluster import Cluster
from swarmforge.errors import SwarmError
from swarmforge.swarm import Swarm


@dataclass(frozen=True)
class KeyReport:
    autolock: bool  # the swarm locks its managers when their Docker restarts
    where: str  # the store
    stored: bool  # the store holds the swarm's current key
    previous: bool  # and the one before a rotation, still
    done: str  # what this run changed, as a phrase ("" for nothing)


def unlock_key(cluster: Cluster, *, rotate: bool = False, disable: bool = False) -> KeyReport:
    """Show (and mend), rotate, or turn off autolock, holding the cluster meanwhile."""
    settings = cluster.settings
    operations = cluster.target.operation_store()
    what = "--rotate" if rotate else "--disable" if disable else ""
    with operations.exclusive(f"invoke unlock-key {what}".strip(), cluster.progress.detail):
        managers, _ = cluster.existing_nodes()
        swarm = cluster.swarm(managers)
        unlocker = cluster.unlocker(swarm)
        swarm.unlock_locked()  # a locked manager could take no rotation, nor answer
        via = cluster.answering_manager(swarm)
        if disable:
            return _disable(unlocker, via)
        if not unlocker.lock.autolocked(via):
            if rotate:
                raise SwarmError(f"cluster {settings.cluster!r} has autolock off: no unlock key "
                                 "to rotate (`invoke apply --autolock` turns it on)")
            return _report(unlocker, False, "")
        if rotate:
            return _rotate(cluster, swarm, unlocker, via)
        return _mend(unlocker, swarm, via)


def _mend(unlocker: StoredKeyUnlocker, swarm: Swarm, via: str) -> KeyReport:
    before = unlocker.keys()
    keys = unlocker.remember(unlocker.lock.read_key(via))
    done = "" if keys is before else "stored the swarm's key, read from a manager"
    if unlocker.forget_previous_if_settled(swarm.manager_hosts):
        done = "forgot the previous key: every manager is unlocked since the rotation"
    return _report(unlocker, True, done)


def _rotate(cluster: Cluster, swarm: Swarm, unlocker: StoredKeyUnlocker, via: str) -> KeyReport:
    # The store must hold the key in use before it is replaced: it becomes the previous key.
    unlocker.remember(unlocker.lock.read_key(via))
    with cluster.progress.step(f"rotating the unlock key through {via}"):
        unlocker.remember(unlocker.lock.rotate(via), rotated=True)
    return _report(unlocker, True, "rotated the key; the previous one is kept beside it until "
                                   "every manager has been seen unlocked a few minutes on")


def _disable(unlocker: StoredKeyUnlocker, via: str) -> KeyReport:
    unlocker.lock.disable(via)
    unlocker.forget()
    return _report(unlocker, False, "turned autolock off and removed the key from the store")


def _report(unlocker: StoredKeyUnlocker, autolock: bool, done: str) -> KeyReport:
    keys = unlocker.keys()
    return KeyReport(autolock, unlocker.store.where, keys is not None,
                     bool(keys and keys.previous), done)
