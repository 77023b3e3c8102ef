"""Baked node images as the operator lists and prunes them, whatever the target.

The policy is the same for AMIs and local images: pruning never touches the
image recorded as current, one that a node still runs from, or the newest few.
Each target supplies an ``ImageCatalog``; the tables print both alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from swarmforge.errors import AmiError


@dataclass(frozen=True)
class Image:
    """One baked node image (an AMI, or a local image) as an operator sees it."""

    id: str
    name: str
    created: datetime
    docker_version: str = ""
    git_commit: str = ""
    snapshot_ids: tuple[str, ...] = ()
    in_use: bool = False


@dataclass(frozen=True)
class PrunePlan:
    """What pruning would delete, and why each other image stays."""

    delete: tuple[Image, ...]
    keep: tuple[tuple[Image, str], ...]


class ImageCatalog(Protocol):
    """One cluster's baked images on its target (AMIs in a region, or local images)."""

    kind: str  # the table's heading for an image: AMI or IMAGE
    where: str  # e.g. "in us-east-1", "on this machine"
    snapshots_left: tuple[str, ...]  # what the last prune could not delete yet (AMIs' snapshots)

    def inventory(self) -> list[Image]:
        """Every image of the cluster, newest first, each marked in use or not."""

    def current(self) -> str | None:
        """The id of the image new nodes boot from, or None before the first bake."""

    def prune_plan(self, keep: int) -> PrunePlan:
        """What pruning down to the newest ``keep`` would delete, and why the rest stays."""

    def prune(self, plan: PrunePlan) -> list[str]:
        """Delete the plan's images (checking again first); returns their ids."""


def plan_prune(
    images: Sequence[Image], keep: int, current_id: str | None, in_use: Iterable[str]
) -> PrunePlan:
    """Choose the images to delete: never the current one, one in use, or the newest ``keep``."""
    if keep < 0:
        raise AmiError(f"keep must be 0 or more, not {keep}")
    busy = set(in_use)
    newest = {image.id for image in newest_first(images)[:keep]}
    delete: list[Image] = []
    kept: list[tuple[Image, str]] = []
    for image in newest_first(images):
        reason = _reason_to_keep(image, current_id, busy, newest)
        if reason:
            kept.append((image, reason))
        else:
            delete.append(image)
    return PrunePlan(tuple(delete), tuple(kept))


def _reason_to_keep(image: Image, current_id: str | None, busy: set[str], newest: set[str]) -> str:
    if image.id == current_id:
        return "current"
    if image.id in busy or image.in_use:
        return "in use"
    if image.id in newest:
        return "among the newest"
    return ""


def newest_first(images: Iterable[Image]) -> list[Image]:
    # Names carry the bake's timestamp: they break ties between same-second AMIs.
    return sorted(images, key=lambda image: (image.created, image.name), reverse=True)


# --- tables ------------------------------------------------------------------------------


def image_table(images: Sequence[Image], current_id: str | None, kind: str = "AMI") -> str:
    """The images (``kind``: AMI or IMAGE) as an aligned text table, newest first."""
    header = (kind, "CREATED (UTC)", "DOCKER", "COMMIT", "IN USE", "CURRENT")
    rows = [(*_described(image), _yes(image.in_use), _yes(image.id == current_id))
            for image in newest_first(images)]
    return _table(header, rows)


def plan_table(plan: PrunePlan, kind: str = "AMI") -> str:
    """A prune plan, newest first: what goes, and why each other image stays."""
    header = (kind, "CREATED (UTC)", "DOCKER", "COMMIT", "ACTION")
    actions = {image.id: "delete" for image in plan.delete}
    actions.update({image.id: f"keep ({why})" for image, why in plan.keep})
    everything = [*plan.delete, *(image for image, _ in plan.keep)]
    return _table(header, [(*_described(image), actions[image.id]) for image in newest_first(everything)])


def _described(image: Image) -> tuple[str, str, str, str]:
    created = image.created.strftime("%Y-%m-%d %H:%M:%S")
    return image.id, created, image.docker_version or "-", _short_commit(image.git_commit) or "-"


def _short_commit(commit: str) -> str:
    # "<sha>-dirty" stays readable as "<12 chars>-dirty".
    sha, dash, rest = commit.partition("-")
    return sha[:12] + dash + rest


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    lines = [header, *rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)
