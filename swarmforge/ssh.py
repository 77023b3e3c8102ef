"""Commands on cluster nodes over OpenSSH.

We drive the system ``ssh`` client with a generated config: strict host-key
checking, our own known_hosts (never ``~/.ssh``), and connection sharing so that
a run's many short commands pay for one handshake per node.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

from swarmforge import runtime
from swarmforge.errors import CommandError, SSHConnectionError
from swarmforge.private_files import write_private
from swarmforge.process import Completed, run
from swarmforge.settings import Settings

SSH_UNREACHABLE = 255  # ssh's own exit status when it could not connect or authenticate
TIMEOUT_SETTING = "swarmforge.ssh_timeout"
DEFAULT_TIMEOUT = Settings.ssh_timeout
# Below the runtime dir: "/ssh-" and 8 hex digits (the profile), then ControlPath's
# "/%C" (40 hex digits) and, while ssh binds it, a temporary ".XXXXXXXXXXXXXXXX".
CONTROL_NAME = "ssh-{}"
CONTROL_ROOM = len("/" + CONTROL_NAME.format("0" * 8)) + len("/") + 40 + len(".") + 16


@dataclass(frozen=True)
class SshProfile:
    """How to reach one cluster's nodes."""

    name: str  # the cluster: keeps connection sockets of clusters apart
    user: str
    identity: Path
    known_hosts: Path
    config: Path
    accept_new_host_keys: bool = False  # aws: first contact with a fresh instance
    # Where the runtime dir goes when $XDG_RUNTIME_DIR cannot take it (swarmforge.runtime);
    # None: the dir of ``config``.
    state_dir: Path | None = None

    @property
    def runtime_dir(self) -> Path:
        """This user's private runtime dir, with room below for the connection sockets."""
        return runtime.runtime_dir(self.state_dir or self.config.parent, room=CONTROL_ROOM)

    @property
    def control_dir(self) -> Path:
        """Where shared connections live: one dir per profile, in the user's runtime dir."""
        digest = hashlib.sha256(str(self.config.absolute()).encode()).hexdigest()[:8]
        return self.runtime_dir / CONTROL_NAME.format(digest)

    def write_config(self) -> None:
        """(Re)write the ssh_config this profile stands for, 0600 and whole at once (a run
        beside this one reads the old file or the new); makes its control dir, 0700."""
        write_private(self.config, self.config_text(self.control_ready()))

    def control_ready(self) -> Path:
        """The control dir, made (0700) if missing: ssh shares no connection without it."""
        return runtime.private_dir(self.control_dir, root=self.runtime_dir)

    def config_text(self, control: Path) -> str:
        """The ssh_config, with its shared connections in ``control``."""
        checking = "accept-new" if self.accept_new_host_keys else "yes"
        lines = [
            "Host *",
            f"  User {self.user}",
            f"  IdentityFile {self.identity}",
            "  IdentitiesOnly yes",
            "  BatchMode yes",
            f"  UserKnownHostsFile {self.known_hosts}",
            "  GlobalKnownHostsFile /dev/null",
            f"  StrictHostKeyChecking {checking}",
            "  ConnectTimeout 5",
            "  ServerAliveInterval 5",
            "  ControlMaster auto",
            f"  ControlPath {control}/%C",
            "  ControlPersist 15",
            "  LogLevel ERROR",
            "",
        ]
        return "\n".join(lines)


class SSH:
    """Runs shell commands on nodes; retries only when the connection itself failed.

    Every command has a deadline: ``timeout`` (swarmforge.ssh_timeout) unless a call
    names a shorter one of its own; past it, CommandTimeout (a CommandError)."""

    def __init__(self, profile: SshProfile, attempts: int = 5, first_backoff: float = 0.5,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.profile = profile
        self.attempts = attempts
        self.first_backoff = first_backoff
        self.timeout = timeout

    def run(self, host: str, command: str, *, timeout: float | None = None,
            what: str | None = None, stdin: str | None = None) -> Completed:
        """Run ``command`` on ``host``; raises SSHConnectionError if it never got there.

        ``timeout``: a deadline of the call's own (then no setting is named), else the
        profile's; ``what``: the command as a message names it; ``stdin``: what the
        command reads (a secret travels so, never in the command)."""
        backoff = self.first_backoff
        setting = TIMEOUT_SETTING if timeout is None else ""
        for attempt in range(1, self.attempts + 1):
            result = run(["ssh", "-F", str(self.profile.config), host, command], stdin=stdin,
                         timeout=self.timeout if timeout is None else timeout,
                         what=f"{what} on {host}" if what else f"ssh to {host}", setting=setting)
            if result.returncode != SSH_UNREACHABLE:
                return result
            if attempt < self.attempts:
                time.sleep(backoff)
                backoff *= 2
        raise SSHConnectionError(f"ssh to {host}", result.returncode, result.stderr,
                                 hint=f"is {host} up and reachable on port 22?")

    def forget(self, host: str) -> None:
        """Drop ``host``'s key learnt on first contact: a new machine may get its address."""
        if self.profile.accept_new_host_keys and self.profile.known_hosts.exists():
            run(["ssh-keygen", "-R", host, "-f", str(self.profile.known_hosts)])

    def check(self, host: str, command: str, what: str, *, timeout: float | None = None) -> str:
        """Run ``command`` on ``host`` and return its stdout; raise if it failed."""
        result = self.run(host, command, timeout=timeout, what=what)
        if not result.ok:
            raise CommandError(f"{what} on {host}", result.returncode,
                               result.stdout + "\n" + result.stderr)
        return result.stdout
