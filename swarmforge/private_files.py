"""Files and dirs that are this user's alone: keys, state, journals, locks, logs.

Their modes are set here explicitly (files 0600, dirs 0700), never left to the
umask: a shell with ``umask 000`` must not leave a cluster's key or state open to
the other users of the machine. Whole files are written atomically (a temporary
file, then a rename), so a reader sees the old text or the new one, never half.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
# What the processes we start create: theirs alone, whatever umask we were given
# (Terraform's state, Packer's files, what the sandbox's hosts write).
CHILD_UMASK = 0o077


def private_dirs(path: Path) -> Path:
    """Make ``path`` and any missing dir above it, each made 0700; returns ``path``.

    A dir found in place keeps its mode: where it is may be the operator's choice
    (a report's dir, the state dir), not ours to close."""
    missing = []
    for above in [path, *path.parents]:
        if above.is_dir():
            break
        missing.append(above)
    for made in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by a run beside this one
            os.mkdir(made, PRIVATE_DIR)
        os.chmod(made, PRIVATE_DIR)  # mkdir's mode went through the umask
    return path


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` as a 0600 file, atomically; its dir must exist."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    os.fchmod(descriptor, PRIVATE_FILE)  # open's mode went through the umask
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.replace(partial, path)


def open_private(path: Path, mode: str = "a") -> IO[str]:
    """``path`` opened as ``open`` would (``a``, ``a+``), made 0600 first: for files written
    in place, such as a log or a lock."""
    flags = {"a": os.O_WRONLY | os.O_APPEND, "a+": os.O_RDWR | os.O_APPEND}[mode]
    descriptor = os.open(path, flags | os.O_CREAT, PRIVATE_FILE)
    os.fchmod(descriptor, PRIVATE_FILE)
    return os.fdopen(descriptor, mode)


@contextlib.contextmanager
def dir_locked(path: Path) -> Iterator[None]:
    """Held by one process at a time: an exclusive lock on the directory ``path`` itself,
    for edits whose files are replaced whole (a lock on a file would not hold) and that
    must leave no lock file behind."""
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # the lock goes with it
