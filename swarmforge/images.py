"""The image use cases: list a cluster's baked images, and prune the old ones.

The same policy on every target (catalog.py): never the current image, one a
node still runs from, or the newest ``keep``. Pruning checks again right before
it deletes, and refuses if an image became current or in use meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass

from swarmforge.catalog import Image, ImageCatalog, PrunePlan
from swarmforge.settings import Settings
from swarmforge.targets import target_for


@dataclass(frozen=True)
class Listing:
    """A cluster's images on its target, and which one is current."""

    catalog: ImageCatalog
    images: list[Image]
    current: str | None


def list_images(settings: Settings) -> Listing:
    catalog = target_for(settings).images()
    return Listing(catalog, catalog.inventory(), catalog.current())


def prune_plan(settings: Settings, keep: int) -> tuple[ImageCatalog, PrunePlan]:
    """What pruning down to the newest ``keep`` would delete, and the catalog to do it with."""
    catalog = target_for(settings).images()
    return catalog, catalog.prune_plan(keep)


def prune(catalog: ImageCatalog, plan: PrunePlan) -> list[str]:
    """Delete what ``plan`` names; returns the ids deleted."""
    return catalog.prune(plan)
