"""The local target: the sandbox, where nodes are network namespaces on this machine."""

from __future__ import annotations

import ipaddress
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from swarmforge.backup_store import BackupStore
from swarmforge.catalog import ImageCatalog
from swarmforge.errors import ConfigError
from swarmforge.node_facts import NodeFacts
from swarmforge.nodes import NodeRef
from swarmforge.operation import LocalOperations, OperationStore
from swarmforge.progress import Progress
from swarmforge.provenance import ImageStore
from swarmforge.settings import REPO_ROOT, Settings
from swarmforge.ssh import SshProfile
from swarmforge.targets.base import Baked, BakeRequest, NodeDocker
from swarmforge.targets.local.backups import LocalBackups
from swarmforge.targets.local.host import Host, remove_sandbox
from swarmforge.targets.local.image_store import (
    ImageRecord,
    LocalImages,
    LocalImageStore,
    image_record_path,
    recorded_image,
)
from swarmforge.targets.local.node_image import HOST_IMAGE_FILE
from swarmforge.targets.local.provenance import LocalImageProvenance
from swarmforge.targets.local.sandbox import LAYOUT_FILE, SANDBOX_ROOT, Sandbox, SandboxLayout
from swarmforge.targets.local.trust import ensure_trust
from swarmforge.targets.local.unlock_key_file import UnlockKeyFile
from swarmforge.unlock_keys import UnlockKeyStore

#: More hosts than this would not fit the sandbox's address plan (a /24 per cluster).
MAX_WORKERS = 150


class LocalTarget:
    """The sandbox: nodes are network namespaces on this machine."""

    name = "local"
    config_dir = REPO_ROOT / "terraform" / "local"
    resource_type = "null_resource"
    # The sandbox runs where no registry may be reachable: setup-host.sh mirrors it.
    mirrored_providers: tuple[str, ...] = ("registry.terraform.io/hashicorp/null",)
    # Every node has its own sshd and no cloud API paces its making, so nothing argues
    # for Terraform's 10: at 30, 3+25 forms in 19-21 s against 24-25 s at 10, every
    # host in one wave (benchmarks/RESULTS.md, "The fifth pass").
    default_parallelism = 30

    def __init__(self, settings: Settings, sandbox_root: Path = SANDBOX_ROOT) -> None:
        if settings.workers > MAX_WORKERS:
            raise ConfigError([f"workers: the local sandbox holds at most {MAX_WORKERS} workers"])
        self.settings = settings
        self.sandbox = Sandbox(settings.cluster, settings.cluster_dir / "ssh", sandbox_root)
        self._layout: SandboxLayout | None = None
        self._profile: SshProfile | None = None

    @property
    def login_user(self) -> str:
        return "root"  # the sandbox's sshd lets only root in, with the cluster's key

    def prepare(self, *, destroying: bool = False) -> SshProfile:
        self._layout = self.sandbox.prepare()
        self._profile = ensure_trust(self._layout)
        return self._profile

    def ssh_profile(self) -> SshProfile | None:
        ssh_dir = self.sandbox.ssh_dir  # as ensure_trust() writes it
        profile = SshProfile(name=self.settings.cluster, user=self.login_user,
                             identity=ssh_dir / "id_ed25519", known_hosts=ssh_dir / "known_hosts",
                             config=ssh_dir / "config")
        return profile if profile.config.exists() else None

    @property
    def layout(self) -> SandboxLayout:
        """The cluster's sandbox, as prepare() made or found it."""
        assert self._layout, "prepare() first"
        return self._layout

    def variables(self, *, destroying: bool = False) -> dict[str, str]:
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

    def check_capacity(self, progress: Progress) -> None:
        """Nothing to check: the sandbox's hosts are namespaces, bounded by this machine only."""

    def pin_host_keys(self, refs: Sequence[NodeRef], say: Callable[[str], None]) -> dict[str, str]:
        return {}  # every host's key is signed by the sandbox's host CA, which is pinned

    def exists(self) -> bool:
        return self.sandbox.dir.exists() or self.settings.cluster_dir.exists()

    def describe_image(self) -> str:
        image = recorded_image(self.settings)
        if image is None:
            return "the sandbox's stock images (no local bake recorded yet)"
        return f"{image.id} (the cluster's recorded local bake)"

    def desired_image(self) -> str | None:
        """The recorded local image's id; None before the first local bake."""
        image = recorded_image(self.settings)
        return image.id if image else None

    def node_facts(self, refs: Sequence[NodeRef]) -> dict[str, NodeFacts]:
        """The local image each host booted from, as the host itself says. A host keeps its
        address for life and has no settings Terraform leaves alone: no drift to report."""
        if not (self.sandbox.dir / LAYOUT_FILE).exists():
            return {}
        layout = self._layout or SandboxLayout.load(self.sandbox.dir)
        facts = {}
        for ref in refs:
            marker = Host.named(layout, ref.name).dir / HOST_IMAGE_FILE
            if marker.exists():  # it holds the image's dir, named by the image's id
                facts[ref.name] = NodeFacts(image=Path(marker.read_text().strip()).name)
        return facts

    def _recorded_image_dir(self) -> str:
        # Not checked here: destroy passes these variables too, and must work whatever
        # happened to the store. A host that cannot boot from it says so at host-up.
        record = ImageRecord.load(image_record_path(self.settings))
        return str(LocalImageStore.of(self.settings).path(record.image)) if record else ""

    def operation_store(self) -> OperationStore:
        """The lock (an flock) and journal as files in the cluster's dir, as ever."""
        return LocalOperations(self.settings.cluster_dir, self.settings.cluster)

    def teardown(self) -> None:
        if self._profile:
            shutil.rmtree(self._profile.control_dir, ignore_errors=True)
        remove_sandbox(self.sandbox)
        self.unlock_key_store().delete()  # the swarm it unlocked is gone

    def unlock_key_store(self) -> UnlockKeyStore:
        """A 0600 file of this user's, outside the repository (unlock_key_file.py)."""
        return UnlockKeyFile(self.settings)

    def images(self) -> ImageCatalog:
        return LocalImages(self.settings)

    def image_store(self, regions: tuple[str, ...] = ()) -> ImageStore:
        _refuse_regions(regions)
        return LocalImageProvenance(self.settings)

    def bake(self, request: BakeRequest, progress: Progress) -> Baked:
        _refuse_regions(request.regions)
        from swarmforge.targets.local.bake import bake_local  # Packer's templates: only to bake

        return bake_local(self.settings, request, progress, prepare=self._prepared_sandbox,
                          operations=self.operation_store())

    def _prepared_sandbox(self) -> tuple[SandboxLayout, Path]:
        identity = self.prepare().identity
        return self.layout, identity


    def ssh_host_ahead(self, role: str, slot: int) -> str | None:
        """Its place in the sandbox network, as terraform/local addresses it (managers from
        .10 by slot, workers from .100 by index); None before prepare()."""
        if self._layout is None:
            return None
        return str(ipaddress.ip_network(self._layout.network)[(10 if role == "manager" else 100)
                                                                + slot])

    def backup_store(self) -> BackupStore:
        """A 0700 dir beside the cluster's state, one 0600 file a backup."""
        return LocalBackups(self.settings.cluster_dir / "backups")

    def node_docker(self, ref: NodeRef) -> NodeDocker:
        """The host's dockerd, stopped and started by the sandbox command (as `host-up`
        started it), run from the host's own shell."""
        command = self.sandbox.dir / "sandbox"
        host = Host.named(self._layout or SandboxLayout.load(self.sandbox.dir), ref.name)
        return NodeDocker(stop=f"{command} docker-stop {ref.name}",
                          start=f"{command} docker-start {ref.name}",
                          data_root=str(host.dir / "data"))


def _refuse_regions(regions: tuple[str, ...]) -> None:
    if regions:
        raise ConfigError(["ami_regions: only for --target aws (a local image stays on "
                           "this machine)"])
