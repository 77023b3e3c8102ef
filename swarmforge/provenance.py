"""What a node image was made from, as ``invoke rebuild`` compares it with what it would be made from now.

An image records its provenance where it lives (tags on an AMI, the record of a
local image). ``rebuild`` reads it through an ``ImageStore``, one per target, and
bakes again only when an input differs. One input is the same for every target:
the content of the trees a bake reads, ``packer/`` and ``scripts/``, as one digest.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from swarmforge import process
from swarmforge.settings import REPO_ROOT

#: The trees a bake is made from, relative to the repository root.
INPUT_TREES = ("packer", "scripts")
#: Never part of an input: caches that tools leave beside the sources.
SKIPPED_NAMES = frozenset({"__pycache__", ".pytest_cache", "node_modules"})


@dataclass(frozen=True)
class ImageFacts:
    """The provenance of one image; "" where the image does not say."""

    id: str
    created: datetime | None = None  # None: the image does not go stale with age
    docker_spec: str = ""  # the Docker version spec it was baked with, e.g. ~=27.3
    inputs_digest: str = ""  # inputs_digest() of packer/ and scripts/ when it was baked
    base: str = ""  # the image it was built on (an Ubuntu AMI); "" if the target has none


class ImageStore(Protocol):
    """A target's baked images, as rebuild needs to see them."""

    def current(self) -> ImageFacts | None:
        """The image new nodes boot from, or None before the first bake."""

    def newest_base(self) -> str | None:
        """The base image a bake would start from now; None if the target builds on none."""

    def bake_docker_spec(self, current: ImageFacts | None) -> str:
        """The Docker spec a bake would pin when none is asked for."""

    def stamp(self, images: Mapping[str, str], digest: str) -> None:
        """Record ``digest`` on freshly baked ``images`` ({where: image id})."""

    def prune(self, keep: int) -> list[str]:
        """Retire old images (never the current one, one in use, or the newest ``keep``)."""


def inputs_digest(root: Path = REPO_ROOT, trees: Iterable[str] = INPUT_TREES) -> str:
    """One SHA-256 over every file of ``trees``: path, executable bit and content.

    A file added, removed, renamed, edited or made executable changes it; the
    order of the walk and timestamps do not.
    """
    digest = hashlib.sha256()
    for path in sorted(_files(root, trees)):
        digest.update(_entry(root, path))
    return "sha256:" + digest.hexdigest()


def _files(root: Path, trees: Iterable[str]) -> Iterator[Path]:
    for tree in trees:
        for folder, dirs, files in os.walk(root / tree):
            dirs[:] = [d for d in dirs if d not in SKIPPED_NAMES]
            for name in files:
                if not name.endswith((".pyc", "~")):
                    yield Path(folder, name)


def _entry(root: Path, path: Path) -> bytes:
    relative = path.relative_to(root).as_posix()
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        kind, content = "link", os.readlink(path).encode()
    else:
        kind = "exec" if info.st_mode & 0o111 else "file"
        content = path.read_bytes()
    # Lengths first: no two different trees can feed the hash the same bytes.
    header = f"{len(relative)}:{relative}:{kind}:{len(content)}:"
    return header.encode() + content


def git_commit(repo: Path = REPO_ROOT) -> str:
    """The commit an image is baked from, with ``-dirty`` when the work tree has changes."""
    if shutil.which("git") is None:
        return "unknown"
    # --exclude='*': always the full hash, never a tag-relative name.
    described = process.run(["git", "-C", str(repo), "describe", "--always", "--dirty",
                             "--abbrev=40", "--exclude=*"])
    return described.stdout.strip() if described.ok and described.stdout.strip() else "unknown"
