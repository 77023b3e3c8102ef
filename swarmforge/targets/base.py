"""The seam between the pipeline and where nodes run: what a target must provide.

Everything else (two phases, tokens, health, replacement, rolls) is the same
pipeline for every target. ``docs/architecture.md`` lists these members with
what each must do; ``targets/local`` and ``targets/aws`` are the two
implementations, and neither imports the other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from packaging.version import Version

from swarmforge.backup_store import BackupStore
from swarmforge.catalog import ImageCatalog
from swarmforge.node_facts import NodeFacts
from swarmforge.nodes import NodeRef
from swarmforge.operation import OperationStore
from swarmforge.progress import Progress
from swarmforge.provenance import ImageStore
from swarmforge.ssh import SshProfile
from swarmforge.unlock_keys import UnlockKeyStore


@dataclass(frozen=True)
class BakeRequest:
    """What the operator asked of a bake, beyond the cluster's settings."""

    docker_version: str | None = None  # None: the target's default spec
    regions: tuple[str, ...] = ()  # aws: other regions to copy the image to
    dry_run: bool = False


@dataclass(frozen=True)
class Baked:
    """What a target's bake did; ``images`` is empty after a dry run."""

    template: str  # the template dir, as the operator knows it: packer/ or packer/local/
    var_file: Path
    packer_version: Version
    syntax_only: bool = False  # an old Packer could check the plugin's settings for syntax only
    images: Mapping[str, str] = field(default_factory=dict)  # {where: image id}
    recorded: str = ""  # where the new image is recorded, as a phrase
    log: str = ""  # Packer's full output
    previous: str | None = None  # the image the cluster had before
    changes: tuple[str, ...] = ()  # what differs from it, where the target can tell


@dataclass(frozen=True)
class NodeDocker:
    """How to stop and start Docker on one node: shell run there over SSH as the login user."""

    stop: str
    start: str
    data_root: str  # Docker's data root there: its swarm state is <data_root>/swarm
    as_root: str = ""  # what runs a command as root there ("sudo -n " unless it logs in as root)


class Target(Protocol):
    """Who makes the machines, how we reach them, and what they boot from."""

    name: str
    config_dir: Path  # the Terraform configuration, terraform/<name>
    resource_type: str  # of swarm_manager / swarm_worker in that configuration
    mirrored_providers: tuple[str, ...]  # taken from this machine's offline mirror, not the registry
    default_parallelism: int  # Terraform's -parallelism unless the parallelism setting says

    @property
    def login_user(self) -> str:
        """The user SSH logs in as on the nodes."""

    def prepare(self, *, destroying: bool = False) -> SshProfile:
        """Make what must exist before Terraform runs; return how to reach the nodes.
        ``destroying``: only what a destroy needs, whatever state the nodes are in."""

    def ssh_profile(self) -> SshProfile | None:
        """How to reach the nodes as the last prepare() on this machine left it, making and
        writing nothing (for `status`, beside a running apply); None if it never ran here."""

    def variables(self, *, destroying: bool = False) -> dict[str, str]:
        """The target's own Terraform variables (never secrets); ``destroying``: valid ones
        that ask nothing of what may be gone (an AMI, a key pair, a running manager)."""

    def check_capacity(self, progress: Progress) -> None:
        """Before an apply makes machines: ConfigError, one line per problem, when the
        target cannot hold the cluster at its busiest (aws: the AMI against the root
        volume, the vCPU quotas); what it cannot check it says as a detail."""

    def exists(self) -> bool:
        """Whether anything of this cluster may exist on the target."""

    def operation_store(self) -> OperationStore:
        """Where the cluster's lock and operation journal live: every machine that acts on
        the cluster must see the same ones (aws: beside the state in S3; local: its dir)."""

    def teardown(self) -> None:
        """Remove what prepare() made, after Terraform destroyed the nodes."""

    def pin_host_keys(self, refs: Sequence[NodeRef], say: Callable[[str], None]) -> dict[str, str]:
        """{node name: its SSH host key} for Terraform's swarm steps, each key read from a
        source the target trusts (aws: the instance's console) before any token travels;
        {} where the target pins every node another way (local: its host CA)."""

    def describe_image(self) -> str:
        """The image new nodes boot from and where that choice came from, for an operator."""

    def desired_image(self) -> str | None:
        """The image new nodes should boot from; None if the target has none yet."""

    def ssh_host_ahead(self, role: str, slot: int) -> str | None:
        """The SSH address the node of ``role`` and ``slot`` will have, where the target
        knows it before the node exists; None where only its creation tells."""
        ...

    def node_facts(self, refs: Sequence[NodeRef]) -> dict[str, NodeFacts]:
        """Each node (by name) as the target sees it now, read in one go: the image it booted
        from, its state and addresses, and how it drifted from the settings, where the
        target can tell; a node it does not know is left out."""

    def images(self) -> ImageCatalog:
        """The cluster's baked images, to list and prune."""

    def image_store(self, regions: tuple[str, ...] = ()) -> ImageStore:
        """The cluster's images with their provenance, as ``invoke rebuild`` compares them;
        ConfigError for settings that would keep a roll from reaching a new image."""

    def bake(self, request: BakeRequest, progress: Progress) -> Baked:
        """Validate the template and, unless a dry run, build and record a new image."""

    def unlock_key_store(self) -> UnlockKeyStore:
        """Where the swarm's unlock key (autolock) is kept, and nowhere else: aws an SSM
        SecureString, local a 0600 file of this user's outside the repository."""

    def backup_store(self) -> BackupStore:
        """Where the cluster's swarm backups are kept (aws: the state bucket, encrypted,
        versioned; local: a 0700 dir in the cluster's state)."""

    def node_docker(self, ref: NodeRef) -> NodeDocker:
        """How to stop and start Docker on ``ref`` (aws: systemctl; local: its dockerd)."""
