"""The local target's images as ``invoke rebuild`` sees them (aws/ami_provenance.py's twin).

A local bake installs nothing: the builder's Docker Engine is the sandbox's own,
which the bake only checks against the spec. So what can change under a local
image is that engine (compared directly: ``bake_docker_spec`` is the version the
sandbox runs now) and packer/ + scripts/ (the inputs digest). A local image
builds on no base image, and does not go stale with age.
"""

from __future__ import annotations

from collections.abc import Mapping

from swarmforge.provenance import ImageFacts
from swarmforge.settings import Settings
from swarmforge.targets.local.builder import sandbox_docker_version
from swarmforge.targets.local.image_store import (
    ImageRecord,
    LocalImages,
    LocalImageStore,
    image_record_path,
)


class LocalImageProvenance:
    """One cluster's local images: the recorded one's provenance, stamping, pruning."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = LocalImageStore.of(settings)

    def current(self) -> ImageFacts | None:
        record = ImageRecord.load(image_record_path(self.settings))
        if record is None:
            return None
        image = self.store.get(record.image)
        if image is None:  # the store lost it: nothing known, so a bake is due
            return ImageFacts(id=record.image)
        # created stays None: age is no reason to bake a local image again.
        return ImageFacts(id=image.id, docker_spec=image.docker_spec,
                          inputs_digest=image.inputs_digest)

    def newest_base(self) -> str | None:
        return None

    def bake_docker_spec(self, current: ImageFacts | None) -> str:
        return sandbox_docker_version()

    def stamp(self, images: Mapping[str, str], digest: str) -> None:
        for image_id in images.values():
            self.store.stamp(image_id, digest)

    def prune(self, keep: int) -> list[str]:
        images = LocalImages(self.settings)
        return images.prune(images.prune_plan(keep))
