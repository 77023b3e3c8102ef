"""Swarm autolock: a manager whose Docker restarts stays locked until it is given the unlock
key, which lives in the target's secret store and nowhere else this side of the swarm.

The pipeline unlocks a locked manager wherever it reads the swarm (apply, status,
replace-node, roll), with the key from the store, saying "unlocked <host>". After a
rotation the store keeps the previous key too, for a manager that was down when the key
changed (Docker's advice: keep the old key "for a few minutes"): it is forgotten once a
look at least PREVIOUS_KEPT after the rotation finds every manager unlocked.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from swarmforge.errors import SwarmError, SwarmforgeError
from swarmforge.settings import Settings
from swarmforge.swarm_lock import SwarmLock
from swarmforge.unlock_keys import UnlockKey, UnlockKeys, UnlockKeyStore

#: Seconds the previous key stays in the store after a rotation, at least: every manager
#: up at the rotation re-encrypts its keys with the new one within moments of it.
PREVIOUS_KEPT = 300.0


class AutolockError(SwarmError):
    """A locked manager that the stored keys cannot unlock, or a key that was not stored."""


def key_command(settings: Settings) -> str:
    """The command that shows where the key is and stores the swarm's key if it is not."""
    return f"invoke unlock-key --cluster {settings.cluster} --target {settings.target}"


class StoredKeyUnlocker:
    """Unlocks locked managers with the keys in ``store`` (read once, when first needed)."""

    def __init__(self, store: UnlockKeyStore, lock: SwarmLock, say: Callable[[str], None],
                 command: str) -> None:
        self.store = store
        self.lock = lock
        self.say = say
        self.command = command  # `invoke unlock-key ...`, for the error without a key
        self._keys: UnlockKeys | None = None
        self._read = False

    def keys(self) -> UnlockKeys | None:
        if not self._read:
            self._keys, self._read = self.store.get(), True
        return self._keys

    @property
    def armed(self) -> bool:
        return self.keys() is not None

    def unlock(self, host: str) -> None:
        keys = self.keys()
        if keys is None:
            raise AutolockError(
                f"manager {host} is locked (swarm autolock: its Docker restarted) and "
                f"{self.store.where} holds no unlock key. While another manager answers, "
                f"`{self.command}` stores the swarm's key from it, and the next command "
                f"unlocks {host}; else run `docker swarm unlock` on {host} with the key")
        for key in keys.candidates():
            if self.lock.unlock(host, key):
                which = "previous" if key is keys.previous else "current"
                self.say(f"unlocked {host} (swarm autolock) with the {which} key from "
                         f"{self.store.where}")
                return
        raise AutolockError(f"manager {host} is locked and no key in {self.store.where} "
                            "unlocks it (a key rotated twice while it was down?): run "
                            f"`docker swarm unlock` on {host} with its key")

    def forget_previous_if_settled(self, managers: Sequence[str]) -> bool:
        """Drop the previous key once PREVIOUS_KEPT has passed since the rotation and every
        manager (SSH addresses ``managers``, each asked now) is unlocked: none still needs
        it. True when it was dropped."""
        keys = self.keys()
        if keys is None or keys.previous is None:
            return False
        if time.time() - (keys.rotated_at or 0.0) < PREVIOUS_KEPT:
            return False
        if not all(self._unlocked(host) for host in managers):
            return False
        self._store(UnlockKeys(keys.current))
        self.say(f"forgot the previous unlock key in {self.store.where}: every manager is "
                 "unlocked since the rotation")
        return True

    def remember(self, key: UnlockKey, rotated: bool = False) -> UnlockKeys:
        """Store ``key`` as the current key; the one it replaces stays as the previous key
        (``rotated``: from this moment). No write when the store holds it already."""
        held = self.keys()
        if held and held.current == key:
            return held
        keys = UnlockKeys(key, held.current if held else None,
                          time.time() if held else None)
        try:
            self._store(keys)
        except (SwarmforgeError, OSError) as exc:
            raise AutolockError(self._not_stored(str(exc), rotated)) from exc
        except Exception as exc:  # botocore's, known by its module; never ours to hide
            if not type(exc).__module__.startswith("botocore."):
                raise
            raise AutolockError(self._not_stored(f"AWS: {exc}", rotated)) from exc
        return keys

    def forget(self) -> None:
        self.store.delete()
        self._keys, self._read = None, True

    def _store(self, keys: UnlockKeys) -> None:
        self.store.put(keys)
        self._keys, self._read = keys, True

    def _unlocked(self, host: str) -> bool:
        try:
            return self.lock.local_state(host) == "active"
        except SwarmforgeError:
            return False

    def _not_stored(self, reason: str, rotated: bool) -> str:
        what = "a new unlock key was made" if rotated else "autolock is on"
        return (f"{what} but it could not be stored in {self.store.where} ({reason}); "
                f"`{self.command}` stores it from a manager once the store takes it")


def turn_on(unlocker: StoredKeyUnlocker, via: str) -> UnlockKeys:
    """Autolock on, through the manager ``via``, and its key in the store (turning it on
    again changes nothing: the key it has is read and stored if the store lacks it)."""
    lock = unlocker.lock
    key = lock.read_key(via) if lock.autolocked(via) else lock.enable(via)
    return unlocker.remember(key)
