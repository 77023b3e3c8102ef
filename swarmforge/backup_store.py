"""A swarm backup as stored: one archive with its manifest, and the seam where targets keep them.

An archive is a tar of two members: ``manifest.json`` (what it is, in words a person
reads) and ``swarm.tar.gz`` (a manager's /var/lib/docker/swarm, made while its Docker
was stopped). The manifest's sha256 is that of ``swarm.tar.gz``: ``unpacked`` checks it.
The swarm dir holds the raft's keys: an archive is as secret as the swarm itself, so it
is never printed, and each store keeps it for its owner only.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import asdict, dataclass
from typing import Protocol

from swarmforge.errors import SwarmforgeError

MANIFEST = "manifest.json"
SWARM_ARCHIVE = "swarm.tar.gz"
SUFFIX = ".tar"


class BackupError(SwarmforgeError):
    """A backup could not be taken, stored or read."""


@dataclass(frozen=True)
class Manifest:
    """What one backup holds, and whose."""

    cluster: str
    swarm_id: str
    node_id: str  # the manager the raft was copied from: a restore takes its identity
    hostname: str
    docker_version: str
    taken: str  # UTC, ISO 8601, when its Docker was stopped
    sha256: str  # of swarm.tar.gz
    autolocked: bool  # the raft in it is encrypted with the swarm's unlock key

    @property
    def name(self) -> str:
        """The archive's name: sorts by time, says whose."""
        stamp = self.taken.replace(":", "").replace("-", "")
        return f"{self.cluster}-{stamp}-{self.hostname}{SUFFIX}"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        try:
            return cls(**json.loads(text))
        except (ValueError, TypeError) as problem:
            raise BackupError(f"a backup's manifest cannot be read ({problem})") from None


@dataclass(frozen=True)
class Stored:
    """One archive in a store: its name and manifest; ``where`` for an operator."""

    name: str
    manifest: Manifest
    where: str


def packed(manifest: Manifest, swarm_dir: bytes) -> bytes:
    """The archive: the manifest first (a reader needs only that), then the swarm dir."""
    if hashlib.sha256(swarm_dir).hexdigest() != manifest.sha256:
        raise BackupError("the swarm dir's archive does not match its manifest's sha256")
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in ((MANIFEST, json.dumps(asdict(manifest), indent=2).encode()),
                           (SWARM_ARCHIVE, swarm_dir)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def unpacked(archive: bytes) -> tuple[Manifest, bytes]:
    """The manifest and the swarm dir's archive, checked against each other."""
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
            manifest = Manifest.from_json(_member(tar, MANIFEST).decode())
            swarm_dir = _member(tar, SWARM_ARCHIVE)
    except tarfile.TarError as problem:
        raise BackupError(f"not a swarmforge backup ({problem})") from None
    if hashlib.sha256(swarm_dir).hexdigest() != manifest.sha256:
        raise BackupError(f"backup {manifest.name} is damaged: its sha256 is not its manifest's")
    return manifest, swarm_dir


def manifest_of(archive: bytes) -> Manifest:
    return unpacked(archive)[0]


def _member(tar: tarfile.TarFile, name: str) -> bytes:
    handle = tar.extractfile(name)
    if handle is None:
        raise BackupError(f"{name} is missing from the archive")
    return handle.read()


class BackupStore(Protocol):
    """Where a cluster's backups are kept (local: a 0700 dir; aws: the state bucket)."""

    where: str  # for operators: the dir, or s3://bucket/prefix

    def put(self, manifest: Manifest, archive: bytes) -> Stored:
        """Keep ``archive`` (``packed``) under ``manifest.name``, for its owner only."""

    def backups(self) -> list[Stored]:
        """Every backup, oldest first."""

    def get(self, name: str) -> bytes:
        """The archive named ``name``; BackupError if there is none."""

    def prune(self, keep: int) -> list[str]:
        """Remove all but the newest ``keep``; the names removed."""


def newest_first(stored: list[Stored]) -> list[Stored]:
    return sorted(stored, key=lambda s: s.manifest.taken, reverse=True)
