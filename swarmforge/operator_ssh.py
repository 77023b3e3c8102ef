"""The operator's own ssh: the Host alias a Docker context reaches a manager by, and the
shell `invoke ssh` opens on a node.

Docker's ssh:// transport runs the system ``ssh`` and passes it no ``-F``: that ssh reads
the user's ~/.ssh/config (of the passwd entry: ssh ignores $HOME) and nothing of ours.
So the alias block lives in a file of the cluster's, beside the keys it names, and
~/.ssh/config gets one ``Include`` of it, under a comment naming the cluster, at the top
of the file: an Include below a ``Host`` line would count for that host only. The block
matches the alias alone, so the operator's other hosts see nothing of it, and
``forget_alias`` takes out exactly the two lines it added.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

from swarmforge.private_files import dir_locked, private_dirs, write_private
from swarmforge.process import child_env
from swarmforge.ssh import SshProfile

ALIAS_FILE = "docker-context.conf"  # beside the profile's ssh_config
MARK = "# swarmforge cluster {cluster}: `invoke context --remove --cluster {cluster}` takes this out"


def alias_name(cluster: str) -> str:
    """The Host alias, and the Docker context's name: ``swarmforge-<cluster>``."""
    return f"swarmforge-{cluster}"


def alias_file(profile: SshProfile) -> Path:
    return profile.config.with_name(ALIAS_FILE)


def alias_text(profile: SshProfile, alias: str, host: str) -> str:
    """The Host block that reaches ``host`` as ``alias`` with the cluster's key and pinned
    known_hosts. Host keys are checked strictly whatever the profile does on first contact:
    the alias reaches a manager that ours reached already. No shared connection: its
    socket dir lives in a runtime dir that a reboot empties, and ssh would fail without it."""
    return "\n".join([
        f"Host {alias}",
        f"  HostName {host}",
        f"  User {profile.user}",
        f'  IdentityFile "{profile.identity}"',
        "  IdentitiesOnly yes",
        "  BatchMode yes",
        f'  UserKnownHostsFile "{profile.known_hosts}"',
        "  GlobalKnownHostsFile /dev/null",
        "  StrictHostKeyChecking yes",
        "  ServerAliveInterval 5",
        "  LogLevel ERROR",
        "",
    ])


def user_ssh_config() -> Path:
    """~/.ssh/config as ssh finds it: in the passwd entry's home, whatever $HOME says."""
    return Path(pwd.getpwuid(os.getuid()).pw_dir) / ".ssh" / "config"


def write_alias(profile: SshProfile, alias: str, host: str) -> bool:
    """(Re)write the cluster's alias file; True if its text changed."""
    path = alias_file(profile)
    text = alias_text(profile, alias, host)
    if path.exists() and path.read_text() == text:
        return False
    write_private(path, text)
    return True


def include_line(path: Path) -> str:
    return f'Include "{path}"'


def include_alias(cluster: str, path: Path) -> bool:
    """Put the Include of ``path`` at the top of ~/.ssh/config, under the cluster's mark
    (replacing an older one of the cluster's); True if the file changed."""
    config = user_ssh_config()
    with _editing(config):
        old = config.read_text() if config.exists() else ""
        kept, _ = _without_mark(old, cluster)
        new = "\n".join([MARK.format(cluster=cluster), include_line(path), ""]) + kept
        if new == old:
            return False
        _write_user_file(config, new)
    return True


def forget_alias(cluster: str) -> bool:
    """Take the cluster's mark and Include out of ~/.ssh/config and remove the file it
    included; False if there was no mark."""
    config = user_ssh_config()
    if not config.exists():
        return False
    with _editing(config):
        old = config.read_text()
        kept, included = _without_mark(old, cluster)
        if kept == old:
            return False
        if kept or config.is_symlink():
            _write_user_file(config, kept)
        else:  # it held our lines alone: as if we had never come
            config.unlink()
    if included is not None and included.name == ALIAS_FILE:  # never a file of the operator's
        included.unlink(missing_ok=True)
    return True


def included_alias(cluster: str) -> Path | None:
    """The file ~/.ssh/config includes under the cluster's mark; None if there is none."""
    config = user_ssh_config()
    return _without_mark(config.read_text(), cluster)[1] if config.exists() else None


@contextlib.contextmanager
def _editing(config: Path) -> Iterator[None]:
    """One edit of ~/.ssh/config at a time (two clusters' `invoke context` at once would
    lose one's Include). The lock is on the ~/.ssh dir itself: the file is replaced whole,
    so a lock on it would not hold, and no lock file is left among the operator's."""
    private_dirs(config.parent)
    with dir_locked(config.parent):
        yield


def _without_mark(text: str, cluster: str) -> tuple[str, Path | None]:
    """``text`` without the cluster's mark and the Include that follows it, and the path
    that Include named (None: no mark, or its Include was edited away by hand)."""
    lines = text.splitlines(keepends=True)
    mark = MARK.format(cluster=cluster)
    for index, line in enumerate(lines):
        if line.rstrip("\n") != mark:
            continue
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if not following.startswith("Include "):  # the mark alone goes
            return "".join(lines[:index] + lines[index + 1:]), None
        included = Path(following.split(" ", 1)[1].strip().strip('"'))
        return "".join(lines[:index] + lines[index + 2:]), included
    return text, None


def _write_user_file(path: Path, text: str) -> None:
    """Write the operator's file whole at once, keeping its mode; a link (a dotfiles
    manager's) is followed, not replaced."""
    target = path.resolve()
    private_dirs(target.parent)
    mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else None
    write_private(target, text)
    if mode is not None:
        os.chmod(target, mode)


def exec_ssh(profile: SshProfile, host: str, command: str) -> NoReturn:
    """Become ``ssh -F <the cluster's ssh_config> host [command]``: the terminal is the
    node's, and the exit status is the command's (255: ssh could not get there)."""
    argv = ["ssh", "-F", str(profile.config), host, *([command] if command else [])]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe("ssh", argv, child_env())
