"""The throwaway host a local image is baked on, and the capture of it into the image store.

Packer's null builder provisions it over SSH (packer/local/). Capturing it is
what registering an AMI from the build instance is on aws: its daemon settings
and a ``docker save`` of the images it now holds go to the store, under an id
that hashes them. Then the builder goes; it never joins a swarm.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from swarmforge.errors import SandboxError
from swarmforge.targets.local.host import DAEMON_SETTINGS_FILE, Host
from swarmforge.targets.local.image_store import LocalImageStore
from swarmforge.targets.local.node_image import ARCHIVE_FILE, LocalImage, content_id, describe_changes
from swarmforge.targets.local.sandbox import SandboxLayout
from swarmforge.targets.local.system import alive, cmdline_mentions, pid_from_file, sh

#: The builder's address in the cluster's /24: clear of the gateway (.1), the
#: managers (.10-.25) and the workers (.100-.249).
BUILDER_HOST_NUMBER = 5
#: What scripts/clean-image.sh, the build's last step, removes from the builder's dir
#: (packer/local/ maps a machine's paths onto it): what makes one machine differ from
#: another booted from the same image, and what the build left behind.
BUILD_LEFTOVERS = ("data/swarm", "data/engine-id", "key.json", "ssh_host_*",
                   "home/.bash_history", "provision/*")


@dataclass(frozen=True)
class Provenance:
    """Where an image comes from, beyond what the builder itself tells."""

    packer_run_uuid: str
    docker_spec: str
    git_commit: str


class Builder:
    """The cluster's builder host: ``<cluster>-builder-0`` on the cluster's own bridge."""

    def __init__(self, layout: SandboxLayout) -> None:
        self.host = Host.named(layout, f"{layout.cluster}-builder-0")
        self.address = str(ipaddress.ip_network(layout.network)[BUILDER_HOST_NUMBER])

    @property
    def dir(self) -> Path:
        return self.host.dir

    @property
    def settings_file(self) -> Path:
        """Where a provisioner puts the daemon settings (the host's /etc/docker/daemon.json)."""
        return self.dir / DAEMON_SETTINGS_FILE

    def up(self) -> None:
        """A fresh, bare host: nothing preloaded, no settings; Packer provisions the rest."""
        self.host.up(self.address, bare=True)

    def down(self) -> None:
        self.host.down()

    def capture(self, store: LocalImageStore, provenance: Provenance,
                previous: LocalImage | None) -> tuple[LocalImage, bool]:
        """The builder as an image in ``store``: (the image, True if its content is new).

        The builder must have been cleaned (``require_clean``); then dockerd
        restarts, with the settings the provisioners left: an image whose settings
        would keep a node's Docker from starting is never stored.
        """
        self.require_clean()
        self.host.restart_docker()
        daemon = self.host.daemon_settings()
        images = self._images()
        image = LocalImage(
            id=content_id(daemon, images),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            docker_version=self._docker(["version", "--format", "{{.Server.Version}}"]).strip(),
            docker_spec=provenance.docker_spec, git_commit=provenance.git_commit,
            packer_run_uuid=provenance.packer_run_uuid, images=images, daemon=daemon)
        image = replace(image, changes=describe_changes(previous, image))
        if store.get(image.id) is not None:
            return store.commit(store.staging(), image)  # same content: nothing to save
        staging = store.staging()
        try:
            self._docker(["save", "-o", str(staging / ARCHIVE_FILE), *images])
            return store.commit(staging, image)
        except BaseException:
            store.discard(staging)
            raise

    def require_clean(self) -> None:
        """Refuse a builder the build's last step did not clean: what an AMI would
        carry to every instance (swarm state, engine and host keys, the build's own
        files) must be gone, and dockerd stopped, before the capture starts it again.

        A local image holds only daemon settings and saved images, so these files
        could not reach a node anyway; the check keeps the local bake running the
        AMI's cleanup on real files, and failing when it stops doing so.
        """
        left = sorted(str(path) for pattern in BUILD_LEFTOVERS for path in self.dir.glob(pattern))
        pid = pid_from_file(self.dir / "docker.pid")
        if pid and alive(pid) and cmdline_mentions(pid, str(self.dir)):
            left.insert(0, f"its dockerd (pid {pid}), still running")
        if left:
            raise SandboxError(f"{self.host.hostname} was not cleaned by the build's last step "
                               f"(scripts/clean-image.sh): {', '.join(left)} left")

    def _images(self) -> dict[str, str]:
        """{tag: image id} of what the builder holds; untagged layers do not count."""
        listed = self._docker(["image", "ls", "--no-trunc", "--format",
                               "{{.Repository}}:{{.Tag}} {{.ID}}"])
        pairs = [line.split(" ", 1) for line in listed.splitlines()
                 if line.strip() and "<none>" not in line]
        images = {tag: image_id for tag, image_id in sorted(pairs)}
        if not images:
            raise SandboxError(f"{self.host.hostname} holds no image after provisioning: "
                               "nothing to capture")
        return images

    def _docker(self, args: list[str]) -> str:
        argv = ["docker", "-H", f"unix://{self.host.docker_socket}", *args]
        return sh(argv, f"{self.host.hostname}: docker {args[0]}").stdout


def sandbox_docker_version() -> str:
    """The Docker Engine the sandbox's hosts run (``dockerd --version``), e.g. 20.10.24."""
    said = sh(["dockerd", "--version"], "dockerd --version").stdout
    found = re.search(r"version (\d+\.\d+\.\d+)", said)
    if found is None:
        raise SandboxError(f"cannot tell dockerd's version from {said.strip()!r}")
    return found.group(1)
