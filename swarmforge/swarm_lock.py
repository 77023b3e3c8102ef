"""Swarm autolock over SSH: turning it on and off, the key read and rotated, a locked manager
unlocked.

The key comes back on ssh's stdout only, into memory (an UnlockKey, which never shows
itself), and goes to a manager on ssh's stdin only: never in a command line, a file on the
node, or an error message (errors carry Docker's stderr, never stdout, where a key is).
"""

from __future__ import annotations

from swarmforge.errors import CommandError
from swarmforge.ssh import SSH
from swarmforge.unlock_keys import UnlockKey

LOCAL_STATE = "docker info --format '{{.Swarm.LocalNodeState}}'"
AUTOLOCKED = "docker info --format '{{json .Swarm.Cluster.Spec.EncryptionConfig.AutoLockManagers}}'"
# `docker swarm update --autolock=true` prints the key amid prose: dropped, and read bare.
ENABLE = "docker swarm update --autolock=true >/dev/null && docker swarm unlock-key -q"
DISABLE = "docker swarm update --autolock=false >/dev/null"
READ_KEY = "docker swarm unlock-key -q"
ROTATE = "docker swarm unlock-key --rotate -q"
# Not a terminal: `docker swarm unlock` reads the key as one line from stdin.
UNLOCK = "docker swarm unlock"
WRONG_KEY = "invalid key"  # swarmkit: "swarm could not be unlocked: invalid key provided"
NOT_LOCKED = "swarm is not locked"  # unlocked meanwhile (by another run, say)


class SwarmLock:
    """The autolock commands, run over ``ssh`` on one manager each."""

    def __init__(self, ssh: SSH) -> None:
        self.ssh = ssh

    def local_state(self, host: str) -> str:
        """``host``'s LocalNodeState: active, locked, inactive, pending or error."""
        return self.ssh.check(host, LOCAL_STATE, "docker info").strip()

    def autolocked(self, via: str) -> bool:
        """Whether the swarm locks its managers when their Docker restarts."""
        return self.ssh.check(via, AUTOLOCKED, "docker info").strip() == "true"

    def enable(self, via: str) -> UnlockKey:
        """Turn autolock on (no change if it is on) and read the key it set."""
        return self._key(via, ENABLE, "docker swarm update --autolock=true")

    def read_key(self, via: str) -> UnlockKey:
        return self._key(via, READ_KEY, "docker swarm unlock-key")

    def rotate(self, via: str) -> UnlockKey:
        """A new key: managers up now take it; one down meanwhile still needs the old one."""
        return self._key(via, ROTATE, "docker swarm unlock-key --rotate")

    def disable(self, via: str) -> None:
        self.ssh.check(via, DISABLE, "docker swarm update --autolock=false")

    def unlock(self, host: str, key: UnlockKey) -> bool:
        """Unlock ``host`` with ``key``: True once it is unlocked, False if the key is not
        its key (a manager that was down across a rotation needs the previous one)."""
        result = self.ssh.run(host, UNLOCK, what="docker swarm unlock", stdin=key.value + "\n")
        if result.ok or NOT_LOCKED in result.stderr:
            return True
        if WRONG_KEY in result.stderr:
            return False
        raise CommandError(f"docker swarm unlock on {host}", result.returncode, result.stderr)

    def _key(self, via: str, command: str, what: str) -> UnlockKey:
        result = self.ssh.run(via, command, what=what)
        if not result.ok:  # only stderr: stdout may hold the key already
            raise CommandError(f"{what} on {via}", result.returncode, result.stderr)
        return UnlockKey(result.stdout)
