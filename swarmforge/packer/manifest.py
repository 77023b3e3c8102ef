"""The manifest post-processor's record of a build, and its cross-check with Packer's output.

Packer tells us what it built twice: in its machine-readable output and in the
manifest's JSON. We trust neither alone. The manifest also carries back the run
id swarmforge passed in, which proves it records this run and not an older one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from swarmforge.errors import PackerOutputError
from swarmforge.packer.machine_readable import BuildResult
from swarmforge.packer.render import RUN_ID_VARIABLE

MANIFEST_FILE = "packer-manifest.json"


@dataclass(frozen=True)
class Manifest:
    """The builds of the newest Packer run recorded in a manifest file."""

    run_uuid: str
    artifact_ids: tuple[str, ...]
    custom_data: tuple[dict[str, str], ...] = field(default=())


def read_manifest(path: Path) -> Manifest:
    """Read ``packer-manifest.json``, keeping only the last run's builds (the file appends)."""
    try:
        document = json.loads(path.read_text())
        builds = document["builds"]
        run_uuid = document.get("last_run_uuid") or builds[-1]["packer_run_uuid"]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as problem:
        raise PackerOutputError(f"cannot read Packer's manifest {path}: {problem}") from None
    last = [build for build in builds if build.get("packer_run_uuid") == run_uuid]
    return Manifest(
        run_uuid=run_uuid,
        artifact_ids=tuple(build["artifact_id"] for build in last),
        custom_data=tuple(build.get("custom_data") or {} for build in last),
    )


def cross_check(result: BuildResult, manifest: Manifest, run_id: str = "") -> None:
    """Raise PackerOutputError unless the output and the manifest name the same artifacts
    and, given the ``run_id`` passed to Packer, every build of the manifest carries it."""
    parsed = {_id_parts(artifact.id) for artifact in result.artifacts}
    recorded = {_id_parts(artifact_id) for artifact_id in manifest.artifact_ids}
    if parsed != recorded:
        raise PackerOutputError(
            "Packer's output and its manifest disagree about what was built "
            f"(run {manifest.run_uuid}): output {_show(parsed)}, manifest {_show(recorded)}"
        )
    carried = sorted({data.get(RUN_ID_VARIABLE, "") for data in manifest.custom_data})
    if run_id and carried != [run_id]:
        found = ", ".join(repr(each) if each else "none" for each in carried) or "no build"
        raise PackerOutputError(
            f"Packer's manifest is not of this run: it was passed {RUN_ID_VARIABLE} "
            f"{run_id!r}, its manifest (run {manifest.run_uuid}) carries {found}"
        )


def _id_parts(artifact_id: str) -> frozenset[str]:
    # The order of regions inside one id carries no meaning.
    return frozenset(part for part in artifact_id.split(",") if part)


def _show(ids: set[frozenset[str]]) -> str:
    return "[" + "; ".join(sorted(",".join(sorted(parts)) for parts in ids)) + "]"
