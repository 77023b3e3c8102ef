"""What differs between targets: who makes the machines and how we reach them.

Everything else (two phases, tokens, health) is the same pipeline for both.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from swarmforge.aws.target import AwsTarget
from swarmforge.errors import ConfigError
from swarmforge.local.host import Host
from swarmforge.local.image_store import (
    ImageRecord,
    LocalImageStore,
    image_record_path,
    recorded_image,
)
from swarmforge.local.node_image import HOST_IMAGE_FILE
from swarmforge.local.sandbox import LAYOUT_FILE, SANDBOX_ROOT, Sandbox, SandboxLayout
from swarmforge.local.trust import ensure_trust
from swarmforge.settings import REPO_ROOT, Settings
from swarmforge.ssh import SshProfile

if TYPE_CHECKING:
    from swarmforge.cluster import NodeRef


class Target(Protocol):
    name: str
    config_dir: Path
    resource_type: str  # of swarm_manager / swarm_worker in the config

    def prepare(self) -> SshProfile:
        """Make what must exist before Terraform runs; return how to reach the nodes."""

    def variables(self) -> dict[str, str]:
        """The target's own Terraform variables (never secrets)."""

    def exists(self) -> bool:
        """Whether anything of this cluster may exist on the target."""

    def teardown(self) -> None:
        """Remove what prepare() made, after Terraform destroyed the nodes."""

    def desired_image(self) -> str | None:
        """The image new nodes should boot from (an AMI id); None if the target has none."""

    def node_images(self, refs: Sequence[NodeRef]) -> dict[str, str]:
        """The image each node (by name) booted from, where the target can tell."""


class LocalTarget:
    """The sandbox: nodes are network namespaces on this machine."""

    name = "local"
    config_dir = REPO_ROOT / "terraform" / "local"
    resource_type = "null_resource"

    def __init__(self, settings: Settings, sandbox_root: Path = SANDBOX_ROOT) -> None:
        self.settings = settings
        self.sandbox = Sandbox(settings.cluster, settings.cluster_dir / "ssh", sandbox_root)
        self._layout: SandboxLayout | None = None
        self._profile: SshProfile | None = None

    def prepare(self) -> SshProfile:
        self._layout = self.sandbox.prepare()
        self._profile = ensure_trust(self._layout)
        return self._profile

    @property
    def layout(self) -> SandboxLayout:
        """The cluster's sandbox, as prepare() made or found it."""
        assert self._layout, "prepare() first"
        return self._layout

    def variables(self) -> dict[str, str]:
        assert self._layout and self._profile, "prepare() first"
        return {
            "cluster_name": self.settings.cluster,
            "ssh_user": self._profile.user,
            "ssh_private_key_path": str(self._profile.identity),
            "ssh_host_ca_public_key_path": f"{self._layout.ca_key}.pub",
            "sandbox_dir": self._layout.dir,
            "sandbox_network": self._layout.network,
            # New hosts boot from the recorded local image ("" before the first local
            # bake: the sandbox's stock images); hosts already up keep theirs.
            "sandbox_image": self._recorded_image_dir(),
        }

    def exists(self) -> bool:
        return self.sandbox.dir.exists() or self.settings.cluster_dir.exists()

    def desired_image(self) -> str | None:
        """The recorded local image's id; None before the first local bake."""
        image = recorded_image(self.settings)
        return image.id if image else None

    def node_images(self, refs: Sequence[NodeRef]) -> dict[str, str]:
        """The local image each host booted from, as the host itself says."""
        if not (self.sandbox.dir / LAYOUT_FILE).exists():
            return {}
        layout = self._layout or SandboxLayout.load(self.sandbox.dir)
        booted = {}
        for ref in refs:
            marker = Host.named(layout, ref.name).dir / HOST_IMAGE_FILE
            if marker.exists():  # it holds the image's dir, named by the image's id
                booted[ref.name] = Path(marker.read_text().strip()).name
        return booted

    def _recorded_image_dir(self) -> str:
        # Not checked here: destroy passes these variables too, and must work whatever
        # happened to the store. A host that cannot boot from it says so at host-up.
        record = ImageRecord.load(image_record_path(self.settings))
        return str(LocalImageStore.of(self.settings).path(record.image)) if record else ""

    def teardown(self) -> None:
        if self._profile:
            shutil.rmtree(self._profile.control_dir, ignore_errors=True)
        self.sandbox.teardown()


def target_for(settings: Settings) -> Target:
    if settings.target == "local":
        return LocalTarget(settings)
    if settings.target == "aws":
        return AwsTarget(settings)
    raise ConfigError([f"target: unknown target {settings.target!r}; choose local or aws"])
