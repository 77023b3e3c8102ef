"""One local node image: what an AMI is on aws, for sandbox hosts.

Its daemon settings and the ``docker save`` of the images it preloads, with the
provenance an AMI carries in its tags. Kept apart from the store (image_store.py)
so that ``sandbox host-up``, which boots hosts from an image, starts quickly.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from swarmforge.errors import SandboxError
from swarmforge.private_files import private_dirs, write_private

META_FILE = "image.json"
DAEMON_FILE = "daemon.json"
ARCHIVE_FILE = "images.tar"
#: In each sandbox host's dir: the image it booted from, as the path of its dir in a
#: store (host.py writes it). A path, not the id: ids are content hashes, and another
#: project's store may hold an image with the same id.
HOST_IMAGE_FILE = "image"
ID_PREFIX = "img-"


@dataclass(frozen=True)
class LocalImage:
    """One image of the store, with the provenance an AMI carries in its tags."""

    id: str
    created: str  # ISO 8601, UTC
    docker_version: str  # the builder's Docker Engine, e.g. 20.10.24+dfsg1
    docker_spec: str  # the version spec the bake pinned, as written
    git_commit: str
    packer_run_uuid: str
    images: Mapping[str, str]  # {tag: Docker image id}
    changes: tuple[str, ...] = ()  # what differs from the image the cluster had before
    inputs_digest: str = ""  # set by whoever compares bake inputs (rebuild)
    daemon: Mapping[str, Any] = field(default_factory=dict)  # kept in daemon.json
    path: Path = Path()  # where it lives; not written

    @property
    def archive(self) -> Path:
        return self.path / ARCHIVE_FILE

    @property
    def created_at(self) -> datetime:
        return datetime.fromisoformat(self.created)

    def write(self, into: Path) -> None:
        """Write the metadata and daemon settings into ``into`` (the image's dir)."""
        meta = {k: v for k, v in asdict(self).items() if k not in ("daemon", "path")}
        meta.update(images=dict(self.images), changes=list(self.changes))
        write_json(into / META_FILE, meta)
        write_json(into / DAEMON_FILE, dict(self.daemon))

    @classmethod
    def load(cls, path: Path) -> LocalImage:
        """The image in ``path``; SandboxError when it is not a whole image."""
        try:
            meta = json.loads((path / META_FILE).read_text())
            daemon = json.loads((path / DAEMON_FILE).read_text())
            image = cls(**{**meta, "changes": tuple(meta.get("changes", ()))}, daemon=daemon,
                        path=path)
        except (OSError, ValueError, TypeError) as problem:
            raise SandboxError(f"no local image at {path}: {problem}") from None
        if not image.archive.is_file():
            raise SandboxError(f"local image {image.id} at {path} has no {ARCHIVE_FILE}")
        return image


def content_id(daemon: Mapping[str, Any], images: Mapping[str, str]) -> str:
    """The id of an image with these settings and preloaded images: a hash of them only,
    so provenance (time, Packer run) never makes the same content a new image."""
    canonical = json.dumps({"daemon": daemon, "images": dict(images)}, sort_keys=True,
                           separators=(",", ":"))
    return ID_PREFIX + hashlib.sha256(canonical.encode()).hexdigest()[:12]


def describe_changes(before: LocalImage | None, after: LocalImage) -> tuple[str, ...]:
    """What an operator should know changed between two images, one line each."""
    if before is None:
        return ("first image",)
    if before.id == after.id:
        return (f"nothing: the same content as {before.id}",)
    lines = [f"daemon {key}: {_shown(before.daemon, key)} -> {_shown(after.daemon, key)}"
             for key in sorted(set(_flat(before.daemon)) | set(_flat(after.daemon)))
             if _flat(before.daemon).get(key) != _flat(after.daemon).get(key)]
    for tag in sorted(set(before.images) | set(after.images)):
        old, new = before.images.get(tag), after.images.get(tag)
        if old is None:
            lines.append(f"image {tag} added")
        elif new is None:
            lines.append(f"image {tag} removed")
        elif old != new:
            lines.append(f"image {tag}: {old[:19]} -> {new[:19]}")
    if before.docker_version != after.docker_version:
        lines.append(f"Docker Engine {before.docker_version} -> {after.docker_version}")
    return tuple(lines)


def _flat(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _shown(settings: Mapping[str, Any], key: str) -> str:
    value = _flat(settings).get(key)
    return "unset" if value is None else json.dumps(value)


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON, atomically: a reader sees the old file or the new one."""
    private_dirs(path.parent)
    write_private(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
