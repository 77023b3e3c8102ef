"""The image use cases: list a cluster's baked images, and prune the old ones.

The same policy on every target (catalog.py): never the current image, one a
node still runs from, or the newest ``keep``. Pruning checks again right before
it deletes, and refuses if an image became current or in use meanwhile.

Deleting takes the cluster's lock (the target's, operation.py), so no bake, roll
or replace-node runs meanwhile: a roll launches its next nodes from an image no
instance holds yet. For the same reason it refuses while a roll or replace-node
is unfinished in the journal: its resume launches nodes from the image chosen then
(an AMI pinned with --ami, which is neither current nor held by any node).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from swarmforge.catalog import Image, ImageCatalog, PrunePlan
from swarmforge.operation import Say
from swarmforge.settings import Settings
from swarmforge.targets import target_for
from swarmforge.targets.base import Target


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


def prune(settings: Settings, catalog: ImageCatalog, plan: PrunePlan,
          say: Say = lambda line: None) -> list[str]:
    """Delete what ``plan`` names, holding the cluster; returns the ids deleted."""
    if not plan.delete:  # only what earlier prunes left (AMIs' snapshots): no image goes
        return catalog.prune(plan)
    with pruning(target_for(settings), settings.cluster, "invoke prune-amis", say):
        return catalog.prune(plan)


@contextlib.contextmanager
def pruning(target: Target, cluster: str, what: str, say: Say = lambda line: None) -> Iterator[None]:
    """Hold the cluster's lock while images are deleted (BusyError at once if another
    operation holds it); refuse while an operation is unfinished in the journal."""
    operations = target.operation_store()
    with operations.exclusive(what, say):
        operations.journal().refuse_if_unfinished(cluster)
        yield
