"""The project's store of local node images (node_image.py), and which one each cluster uses.

A local image is what a builder host was provisioned into (packer/local/): its
Docker daemon settings and the images it preloaded. Images live in the
project's store, ``<state_dir>/_images/<id>/``; which one a cluster's new nodes
boot from is recorded beside its bakes, in ``<state_dir>/_build/<cluster>/image.json``
(``invoke destroy`` removes neither). The id is a hash of the content (the
settings and each preloaded image's id), so baking the same thing again gives
the same image, and a roll then finds nothing to do::

    _images/img-0123456789ab/
        image.json          provenance: created, Packer run, Docker, commit, what changed
        daemon.json         the daemon settings a node of this image starts with
        images.tar          ``docker save`` of every preloaded image
        clusters/<cluster>  one empty file per cluster that baked it
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from swarmforge.catalog import Image, PrunePlan, plan_prune
from swarmforge.errors import AmiError, SandboxError
from swarmforge.private_files import private_dirs
from swarmforge.settings import Settings
from swarmforge.targets.local.node_image import HOST_IMAGE_FILE, ID_PREFIX, META_FILE, LocalImage, write_json
from swarmforge.targets.local.sandbox import SANDBOX_ROOT

STORE_DIR = "_images"  # under the state dir; no cluster name starts with "_"
RECORD_FILE = "image.json"  # in the cluster's bake dir, beside the AMI's ami.json
CLAIMS_DIR = "clusters"
STALE_AFTER = 24 * 3600.0  # seconds after which a half-written image is garbage


class LocalImageStore:
    """The project's local images: ``<state_dir>/_images``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def of(cls, settings: Settings) -> LocalImageStore:
        # Absolute: hosts name the image they booted from by its path.
        return cls(Path(settings.state_dir).resolve() / STORE_DIR)

    def in_use(self, sandbox_root: Path = SANDBOX_ROOT) -> set[str]:
        """Ids of this store's images that a sandbox host on this machine booted from."""
        return {path.name for path in host_images(sandbox_root).values()
                if path.parent == self.root}

    def path(self, image_id: str) -> Path:
        return self.root / image_id

    def get(self, image_id: str) -> LocalImage | None:
        """The image, or None when the store has no (whole) image of that id."""
        if not image_id.startswith(ID_PREFIX) or not (self.path(image_id) / META_FILE).exists():
            return None
        return LocalImage.load(self.path(image_id))

    def images(self) -> list[LocalImage]:
        """Every whole image in the store; half-written ones (``.partial-*``) are skipped."""
        if not self.root.is_dir():
            return []
        found = (self.get(p.name) for p in sorted(self.root.iterdir()) if p.is_dir())
        return [image for image in found if image is not None]

    def staging(self) -> Path:
        """A fresh dir in the store to write an image into before it is committed."""
        private_dirs(self.root)
        # What a killed bake left: a day old is long dead (a capture takes seconds).
        for stale in self.root.glob(".partial-*"):
            if time.time() - stale.stat().st_mtime > STALE_AFTER:
                shutil.rmtree(stale, ignore_errors=True)
        return Path(tempfile.mkdtemp(prefix=".partial-", dir=self.root))

    def commit(self, staging: Path, image: LocalImage) -> tuple[LocalImage, bool]:
        """Move a staged image to its id's place: (the image, True if it is new).

        When the store holds that content already, the staging dir is dropped and
        the image already there is returned: its provenance is the first bake's."""
        existing = self.get(image.id)
        if existing is not None:
            shutil.rmtree(staging, ignore_errors=True)
            return existing, False
        image.write(staging)
        os.replace(staging, self.path(image.id))
        return replace(image, path=self.path(image.id)), True

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def claims(self, image_id: str) -> set[str]:
        """The clusters that baked the image (and have not pruned it since)."""
        folder = self.path(image_id) / CLAIMS_DIR
        return {p.name for p in folder.iterdir()} if folder.is_dir() else set()

    def claim(self, image_id: str, cluster: str) -> None:
        folder = self.path(image_id) / CLAIMS_DIR
        private_dirs(folder)
        (folder / cluster).touch()

    def release(self, image_id: str, cluster: str) -> bool:
        """Drop the cluster's claim; the image goes with the last claim. True if it went."""
        (self.path(image_id) / CLAIMS_DIR / cluster).unlink(missing_ok=True)
        if self.claims(image_id):
            return False
        shutil.rmtree(self.path(image_id))
        return True

    def stamp(self, image_id: str, inputs_digest: str) -> None:
        """Record the digest of the inputs the image was baked from (see provenance.py)."""
        image = self.get(image_id)
        if image is None:
            raise SandboxError(f"no local image {image_id} in {self.root}")
        replace(image, inputs_digest=inputs_digest).write(image.path)


# --- which image a cluster uses -------------------------------------------------------------


@dataclass(frozen=True)
class ImageRecord:
    """The cluster's current local image and the bake that made it current."""

    cluster: str
    image: str  # the id
    path: str  # the image's dir in the store: what new hosts boot from
    baked_at: str  # ISO 8601, UTC
    packer_run_uuid: str
    git_commit: str
    docker_spec: str
    changes: tuple[str, ...]
    log: str  # Packer's full output

    def save(self, path: Path) -> None:
        """Write atomically: a bake that dies half-way leaves the previous record whole."""
        write_json(path, {**asdict(self), "changes": list(self.changes)})

    @classmethod
    def load(cls, path: Path) -> ImageRecord | None:
        """The record at ``path``, or None before the cluster's first local bake."""
        try:
            data = json.loads(path.read_text())
            return cls(**{**data, "changes": tuple(data.get("changes", ()))})
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as problem:
            raise SandboxError(f"cannot read the image record {path}: {problem}; "
                               "bake again (invoke bake --target local) or remove it") from None


def image_record_path(settings: Settings) -> Path:
    return settings.build_dir / RECORD_FILE


def recorded_image(settings: Settings) -> LocalImage | None:
    """The image the cluster's new nodes boot from, or None before its first local bake."""
    record = ImageRecord.load(image_record_path(settings))
    if record is None:
        return None
    image = LocalImageStore.of(settings).get(record.image)
    if image is None:
        raise SandboxError(f"cluster {settings.cluster!r} records local image {record.image}, "
                           f"which is not in {LocalImageStore.of(settings).root}: bake again "
                           "(invoke bake --target local)")
    return image


def host_images(sandbox_root: Path = SANDBOX_ROOT) -> dict[Path, Path]:
    """{host dir: image dir} for every sandbox host on this machine that booted from an image."""
    found = {}
    for marker in sandbox_root.glob(f"*/*/{HOST_IMAGE_FILE}"):
        try:
            found[marker.parent] = Path(marker.read_text().strip())
        except OSError:
            continue  # a host going down meanwhile
    return found


# --- list and prune, as for AMIs ------------------------------------------------------------


class LocalImages:
    """One cluster's local images, listed and pruned with the AMIs' policy: its ImageCatalog."""

    kind = "IMAGE"
    where = "on this machine"
    snapshots_left: tuple[str, ...] = ()  # a local image has no snapshots

    def __init__(self, settings: Settings, sandbox_root: Path = SANDBOX_ROOT) -> None:
        self.settings = settings
        self.store = LocalImageStore.of(settings)
        self.sandbox_root = sandbox_root

    def current(self) -> str | None:
        """The recorded image's id, or None before the first local bake."""
        record = ImageRecord.load(image_record_path(self.settings))
        return record.image if record else None

    def inventory(self) -> list[Image]:
        """The cluster's images, newest first, each marked in use when a sandbox host
        (of any cluster) booted from it."""
        busy = self.store.in_use(self.sandbox_root)
        return sorted((_as_image(image, image.id in busy) for image in self._claimed()),
                      key=lambda image: (image.created, image.id), reverse=True)

    def prune_plan(self, keep: int) -> PrunePlan:
        """What pruning down to the newest ``keep`` would remove; images that another
        cluster records as its current one count as in use."""
        return plan_prune(self.inventory(), keep, self.current(), in_use=self._current_elsewhere())

    def prune(self, plan: PrunePlan) -> list[str]:
        """Drop the cluster's claim on the plan's images (an image goes with its last
        claim); returns their ids. Checks again first, as ClusterAmis.prune does."""
        ids = [image.id for image in plan.delete]
        busy = (self.store.in_use(self.sandbox_root) | self._current_elsewhere()
                | {self.current()}) & set(ids)
        if busy:
            raise AmiError(f"not pruning: {', '.join(sorted(b for b in busy if b))} became "
                           "current or in use")
        for image_id in ids:
            self.store.release(image_id, self.settings.cluster)
        return ids

    def _claimed(self) -> list[LocalImage]:
        return [image for image in self.store.images()
                if self.settings.cluster in self.store.claims(image.id)]

    def _current_elsewhere(self) -> set[str]:
        current = set()
        for path in self.settings.build_dir.parent.glob(f"*/{RECORD_FILE}"):
            record = ImageRecord.load(path)
            if record and record.cluster != self.settings.cluster:
                current.add(record.image)
        return current


def _as_image(image: LocalImage, in_use: bool) -> Image:
    return Image(id=image.id, name=image.id, created=image.created_at,
               docker_version=image.docker_version, git_commit=image.git_commit, in_use=in_use)
