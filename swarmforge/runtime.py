"""This user's private runtime dir: what swarmforge keeps only while it runs (ssh's sockets).

Never a dir under /run itself, which only root may write: the aws target runs as
anyone (CI runners, laptops). The first of these that is usable and short enough:

1. ``$XDG_RUNTIME_DIR/swarmforge``, when $XDG_RUNTIME_DIR is an absolute path to a
   dir of this user's that nobody else may enter (as the XDG spec promises; not so
   after ``su`` without ``-``, which keeps the other user's);
2. ``<state_dir>/_run`` (``_``: no cluster can have that name);
3. ``/tmp/swarmforge-<uid>``.

"Short enough": a Unix socket's path holds at most 107 bytes, and the caller says
how many its sockets add below the dir (``room``).

A dir found in place must be a real dir (not a link), this user's, and closed to
everybody else (mode 0700): in /tmp another user can make it first, to watch or
take over our connections. Anything else is refused with one line saying what to
do. Dirs made here get mode 0700 explicitly, whatever the umask.
"""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Iterator
from pathlib import Path

from swarmforge.errors import SwarmforgeError

SOCKET_PATH_MAX = 107  # sun_path is 108 bytes, the last one for the terminating NUL
TMP = Path("/tmp")  # not $TMPDIR: that may be long, and a socket path may not be
PRIVATE = 0o700
USE_YOURS = "set XDG_RUNTIME_DIR or swarmforge.state_dir to a dir of yours"


class RuntimeDirError(SwarmforgeError):
    """The runtime dir cannot be made, or is not this user's alone."""


def runtime_dir(state_dir: str | Path, *, room: int = 0) -> Path:
    """The runtime dir to use, ``room`` bytes of path below it included; private_dir() makes it.

    Only looks: nothing is made or changed here, so that a teardown can find the dir
    without making it.
    """
    candidates = list(_candidates(Path(state_dir), os.environ.get("XDG_RUNTIME_DIR", "")))
    for candidate in candidates:
        if len(os.fsencode(candidate)) + room <= SOCKET_PATH_MAX:
            return candidate
    raise RuntimeDirError(f"no runtime dir leaves {room} bytes for a socket path "
                          f"(at most {SOCKET_PATH_MAX}): tried {', '.join(map(str, candidates))}")


def _candidates(state_dir: Path, xdg: str) -> Iterator[Path]:
    if xdg and usable_xdg_runtime_dir(Path(xdg)):
        yield Path(xdg) / "swarmforge"
    yield state_dir.absolute() / "_run"
    yield TMP / f"swarmforge-{os.geteuid()}"


def usable_xdg_runtime_dir(path: Path) -> bool:
    """Whether ``path`` is what $XDG_RUNTIME_DIR should be: absolute, ours, 0700, writable."""
    if not path.is_absolute():
        return False
    try:
        found = path.stat()
    except OSError:
        return False
    return (stat.S_ISDIR(found.st_mode) and found.st_uid == os.geteuid()
            and not found.st_mode & 0o077 and os.access(path, os.W_OK | os.X_OK))


def private_dir(path: Path, *, root: Path | None = None) -> Path:
    """Make ``path`` if missing and check it is ours alone; returns it.

    ``root``: a dir ``path`` is in (the runtime dir): it and every dir between it
    and ``path`` are checked too. Missing dirs above it (the state dir, say) are made,
    0700, but not judged: where they are is the user's choice. RuntimeDirError when
    a dir cannot be made or is not a 0700 dir of this user's.
    """
    root = path if root is None else root
    below = path.relative_to(root).parts  # ValueError: path is not in root
    for above in reversed(root.parents):  # "/" first
        _make(above)
    checked = root
    _make(checked)
    _check(checked)
    for part in below:
        checked = checked / part
        _make(checked)
        _check(checked)
    return path


def _make(path: Path) -> None:
    try:
        os.mkdir(path, PRIVATE)
    except FileExistsError:
        return
    except OSError as error:
        raise RuntimeDirError(f"cannot make {path}: {error.strerror}; {USE_YOURS}") from None
    os.chmod(path, PRIVATE)  # mkdir's mode went through the umask


def _check(path: Path) -> None:
    try:
        found = os.lstat(path)
    except OSError as error:
        raise RuntimeDirError(f"cannot look at {path}: {error.strerror}") from None
    if stat.S_ISLNK(found.st_mode) or not stat.S_ISDIR(found.st_mode):
        raise RuntimeDirError(f"{path} is not a directory (a link?): swarmforge keeps what is "
                              "yours alone there; remove it")
    me = os.geteuid()
    if found.st_uid != me:
        raise RuntimeDirError(f"{path} belongs to {_user(found.st_uid)}, not to you ({_user(me)}): "
                              f"swarmforge keeps what is yours alone there; remove it, or {USE_YOURS}")
    if found.st_mode & 0o077:
        raise RuntimeDirError(f"{path} has mode {stat.S_IMODE(found.st_mode):04o}: others may reach "
                              f"what swarmforge keeps there (ssh's sockets, say); chmod 700 {path}")


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"
