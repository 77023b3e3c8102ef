"""Backups kept on this machine: a 0700 dir in the cluster's state, one 0600 file each."""

from __future__ import annotations

import os
from pathlib import Path

from swarmforge.backup_store import SUFFIX, BackupError, Manifest, Stored, manifest_of, newest_first
from swarmforge.private_files import PRIVATE_FILE, private_dirs


class LocalBackups:
    """``<state>/<cluster>/backups/``: beside the cluster's state, its owner's alone."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.where = str(directory)

    def put(self, manifest: Manifest, archive: bytes) -> Stored:
        path = self.directory / manifest.name
        try:
            private_dirs(self.directory)
            self._write(path, archive)
        except OSError as problem:  # a full disk, a file where the dir should be
            raise BackupError(f"cannot store the backup in {self.where}: {problem}") from None
        return Stored(manifest.name, manifest, str(path))

    @staticmethod
    def _write(path: Path, archive: bytes) -> None:
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
        os.fchmod(descriptor, PRIVATE_FILE)  # open's mode went through the umask
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(archive)
        os.replace(partial, path)  # whole or not at all: a listing never meets half an archive

    def backups(self) -> list[Stored]:
        if not self.directory.is_dir():
            return []
        found = [Stored(p.name, manifest_of(p.read_bytes()), str(p))
                 for p in self.directory.glob(f"*{SUFFIX}")]
        return newest_first(found)[::-1]

    def get(self, name: str) -> bytes:
        path = self.directory / Path(name).name  # a name, never a path elsewhere
        if not path.is_file():
            raise BackupError(f"no backup {name!r} in {self.where}")
        return path.read_bytes()

    def prune(self, keep: int) -> list[str]:
        removed = []
        for old in newest_first(self.backups())[keep:]:
            (self.directory / old.name).unlink(missing_ok=True)
            removed.append(old.name)
        return removed
