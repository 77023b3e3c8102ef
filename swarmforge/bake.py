"""The bake use case: the target bakes a node image; this checks that it became the record.

Each target validates its own inputs before anything runs, builds with Packer,
and records the new image where its nodes will look for it (aws: SSM and the
build dir; local: the image store and the build dir). Nothing is recorded
unless every step before succeeded, so a failed bake leaves the previous record
in place. What is left here is what every target shares: refusing a bake whose
result is not what new nodes would now boot from.
"""

from __future__ import annotations

from swarmforge.errors import PackerOutputError
from swarmforge.progress import Progress
from swarmforge.settings import Settings
from swarmforge.targets import target_for
from swarmforge.targets.base import Baked, BakeRequest, Target


def bake(settings: Settings, request: BakeRequest, progress: Progress | None = None,
         target: Target | None = None) -> Baked:
    """Validate, and unless ``request.dry_run``, build and record a new node image."""
    target = target or target_for(settings)
    baked = target.bake(request, progress or Progress())
    if baked.images:
        _require_recorded(target, baked)
    return baked


def _require_recorded(target: Target, baked: Baked) -> None:
    """The provenance check: the image the target now records is the one just baked."""
    current = target.images().current()
    if current not in baked.images.values():
        found = current or "nothing"
        raise PackerOutputError(f"the bake made {', '.join(baked.images.values())} but the "
                                f"{target.name} target records {found} as current")
