"""What an apply will do, said before it does it: nodes per role, the two phases, the
image new nodes boot from and where that choice came from, and where the state lives."""

from __future__ import annotations

from typing import Any

from swarmforge.nodes import refs_from_output
from swarmforge.settings import Settings
from swarmforge.state_file import state_outputs
from swarmforge.targets.base import Target


def apply_plan(settings: Settings, target: Target) -> list[str]:
    """The preview's lines, read from the state file and the target: nothing is changed."""
    outputs = state_outputs(settings)
    managers = refs_from_output(outputs.get("managers"))
    workers = refs_from_output(outputs.get("workers"))
    joined = list(outputs.get("joined") or [])
    first = managers[0].name if managers else f"{settings.cluster}-manager-0"
    return [
        f"apply of cluster {settings.cluster!r} on the {target.name} target:",
        f"  managers: {settings.managers} ({_counted(len(managers), settings.managers)})",
        f"  workers:  {settings.workers} ({_counted(len(workers), settings.workers)})",
        "  phase 1:  " + _phase_one(first, bool(managers), joined),
        "  phase 2:  every other node joins through a healthy manager; the join tokens reach "
        "Terraform only through its environment, and are rotated afterwards",
        f"  image:    {target.describe_image()}",
        f"  state:    {_state(settings)}",
    ]


def _counted(existing: int, wanted: int) -> str:
    if existing == 0:
        return f"{wanted} to create"
    if wanted > existing:
        return f"{existing} exist, {wanted - existing} to create"
    if wanted == existing:
        return f"{existing} exist"
    return (f"{existing} exist: the {existing - wanted} at the highest indices leave the swarm "
            "first (drained, demoted, removed), then are destroyed; only with --yes or a y here")


def _phase_one(first: str, any_node: bool, joined: list[Any]) -> str:
    if any(name != first for name in joined):
        return "none: the swarm exists"
    if any_node:
        return (f"{first} runs `docker swarm init` unless it is in a swarm already (an earlier "
                "apply stopped before the others joined)")
    return f"every node is created; {first} runs `docker swarm init`"


def _state(settings: Settings) -> str:
    if settings.state_bucket:
        return (f"s3://{settings.state_bucket}/{settings.state_key} "
                f"({settings.state_region or settings.region})")
    return str(settings.cluster_dir / "terraform" / "terraform.tfstate")
