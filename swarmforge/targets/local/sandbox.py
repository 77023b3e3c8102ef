"""A cluster's sandbox: its bridge, its SSH trust, and the hosts on it.

Layout of one cluster (``dir`` is short on purpose: dockerd's unix sockets live
under it and a socket path may not exceed 108 bytes)::

    /run/swarmforge/<cluster>/      sandbox.json, the ``sandbox`` command
        m0/ m1/ w0/ ...             one host each (see host.py)
    <state>/<cluster>/ssh/          client key, host CA, known_hosts, ssh_config
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import stat
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from swarmforge.errors import SandboxError
from swarmforge.private_files import dir_locked, private_dirs, write_private
from swarmforge.process import SECRET_VARIABLES, run
from swarmforge.targets.local.sample_image import sample_image
from swarmforge.targets.local.system import sh, succeeds

SANDBOX_ROOT = Path("/run/swarmforge")
NETWORK_POOL = ipaddress.IPv4Network("10.213.0.0/16")
LAYOUT_FILE = "sandbox.json"


@dataclass(frozen=True)
class SandboxLayout:
    """Where a cluster's sandbox lives; written once to sandbox.json and reused."""

    cluster: str
    dir: str
    ssh_dir: str
    network: str
    bridge: str
    tag: str

    @property
    def gateway(self) -> str:
        return str(next(ipaddress.ip_network(self.network).hosts()))

    @property
    def ca_key(self) -> Path:
        return Path(self.ssh_dir) / "host_ca"

    @property
    def authorized_keys(self) -> Path:
        return Path(self.ssh_dir) / "authorized_keys"

    @property
    def forward_rule(self) -> list[str]:
        comment = f"swarmforge:{self.cluster}"
        return ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT",
                "-m", "comment", "--comment", comment]

    def save(self) -> None:
        write_private(Path(self.dir, LAYOUT_FILE), json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, sandbox_dir: Path) -> SandboxLayout:
        try:
            return cls(**json.loads((sandbox_dir / LAYOUT_FILE).read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise SandboxError(f"no sandbox at {sandbox_dir}: {exc}") from exc


def cluster_tag(cluster: str) -> str:
    return hashlib.sha256(cluster.encode()).hexdigest()[:6]


class Sandbox:
    """One cluster's sandbox on this machine."""

    def __init__(self, cluster: str, ssh_dir: Path, root: Path = SANDBOX_ROOT) -> None:
        self.cluster = cluster
        self.dir = root / cluster
        self.ssh_dir = ssh_dir
        self.root = root

    # -- bring up -----------------------------------------------------------

    def prepare(self) -> SandboxLayout:
        """Make (or find again) the bridge and the command Terraform calls; idempotent."""
        require_root()
        private_dirs(self.dir)
        # One sandbox chooses its /24 at a time: two made at once (two CI workers, two
        # operators) would each find the same one free, and each bridge would route it.
        with dir_locked(self.root):
            layout = self._existing_layout() or self._new_layout()
            layout.save()
        ensure_network(layout)
        self._write_command()
        self._stock_images()
        return layout

    def _stock_images(self) -> None:
        """The images every new host loads; the sample workload image at least."""
        sample = self.dir / "images" / "sample.tar"
        if not sample.exists():
            sample_image(sample)

    def _existing_layout(self) -> SandboxLayout | None:
        if not (self.dir / LAYOUT_FILE).exists():
            return None
        layout = SandboxLayout.load(self.dir)
        if layout.ssh_dir == str(self.ssh_dir):
            return layout
        if self.host_dirs():
            # Another state dir (another checkout, say) drives this sandbox: taking
            # it over would re-address the bridge under its running hosts.
            raise SandboxError(f"the sandbox of cluster {self.cluster!r} belongs to the state in "
                               f"{Path(layout.ssh_dir).parent}; use that state dir "
                               "(swarmforge.state_dir) or another cluster name")
        return None

    def _new_layout(self) -> SandboxLayout:
        tag = cluster_tag(self.cluster)
        return SandboxLayout(
            cluster=self.cluster,
            dir=str(self.dir),
            ssh_dir=str(self.ssh_dir),
            network=str(self._free_network(tag)),
            bridge=f"sfb{tag}",
            tag=tag,
        )

    def _free_network(self, tag: str) -> ipaddress.IPv4Network:
        """A /24 of the pool that no other sandbox and no route on this machine uses."""
        taken = taken_networks(self.root)
        subnets: list[ipaddress.IPv4Network] = list(NETWORK_POOL.subnets(new_prefix=24))
        start = int(tag, 16) % len(subnets)
        for candidate in subnets[start:] + subnets[:start]:
            if not any(candidate.overlaps(net) for net in taken):
                return candidate
        raise SandboxError(f"no free /24 left in {NETWORK_POOL} for a new sandbox")

    def _write_command(self) -> None:
        """The ``sandbox`` command Terraform's local-exec runs: this Python, this sandbox,
        without the join tokens Terraform's environment holds in phase 2 (a host needs none)."""
        command = self.dir / "sandbox"
        unset = " ".join(f"-u {name}" for name in sorted(SECRET_VARIABLES))
        command.write_text(
            "#!/bin/sh\n"
            "# Written by swarmforge: Terraform creates and removes sandbox hosts through it.\n"
            f'exec env {unset} "{sys.executable}" -m swarmforge.targets.local "{self.dir}" "$@"\n'
        )
        command.chmod(stat.S_IRWXU)

    # -- tear down ----------------------------------------------------------

    def host_dirs(self) -> list[Path]:
        if not self.dir.is_dir():
            return []
        return sorted(p for p in self.dir.iterdir() if p.is_dir() and p.name[:1] in "mwb")


def require_root() -> None:
    if os.geteuid() != 0:
        raise SandboxError("the local sandbox needs root (network namespaces, dockerd): run as root")


def taken_networks(root: Path) -> list[ipaddress.IPv4Network]:
    """Networks of other sandboxes and of every address on this machine."""
    taken: list[ipaddress.IPv4Network] = []
    for layout_file in root.glob(f"*/{LAYOUT_FILE}"):
        try:
            taken.append(ipaddress.IPv4Network(json.loads(layout_file.read_text())["network"]))
        except (OSError, ValueError, KeyError):
            continue
    for line in run(["ip", "-4", "-o", "addr", "show"]).stdout.splitlines():
        fields = line.split()
        if "inet" in fields:
            taken.append(ipaddress.IPv4Interface(fields[fields.index("inet") + 1]).network)
    return taken


def ensure_network(layout: SandboxLayout) -> None:
    """The cluster's bridge with its gateway address, and the rule that lets it forward."""
    if not succeeds(["ip", "link", "show", "dev", layout.bridge]):
        created = run(["ip", "link", "add", layout.bridge, "type", "bridge"])
        if not created.ok and "exists" not in created.stderr:
            raise SandboxError(f"cannot create bridge {layout.bridge}: {created.stderr.strip()}")
    prefix = ipaddress.ip_network(layout.network).prefixlen
    gateway = f"{layout.gateway}/{prefix}"
    if gateway not in run(["ip", "-4", "-o", "addr", "show", "dev", layout.bridge]).stdout:
        run(["ip", "addr", "add", gateway, "dev", layout.bridge])
    sh(["ip", "link", "set", layout.bridge, "up"], "bridge up")
    # Once any dockerd has run in the root namespace, bridged traffic meets a
    # FORWARD chain whose policy is DROP: our bridge needs its own ACCEPT.
    if not succeeds(["iptables", "-C", *layout.forward_rule]):
        sh(["iptables", "-I", *layout.forward_rule], "firewall rule for the sandbox bridge")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)


def remove_network(layout: SandboxLayout) -> None:
    while succeeds(["iptables", "-C", *layout.forward_rule]):
        sh(["iptables", "-D", *layout.forward_rule], "remove the sandbox firewall rule")
    if succeeds(["ip", "link", "show", "dev", layout.bridge]):
        sh(["ip", "link", "del", layout.bridge], "remove the sandbox bridge")
