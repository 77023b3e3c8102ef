"""SSH trust for a sandbox cluster: one client key, one host CA.

Every host key is signed by the cluster's CA when the host is made, so clients
trust the CA once instead of learning each fresh host's key on first contact.
"""

from __future__ import annotations

from pathlib import Path

from swarmforge.private_files import private_dirs, write_private
from swarmforge.ssh import SshProfile
from swarmforge.targets.local.sandbox import SandboxLayout
from swarmforge.targets.local.system import sh


def ensure_trust(layout: SandboxLayout) -> SshProfile:
    """Keys, authorized_keys, known_hosts and ssh_config for the cluster; idempotent."""
    ssh_dir = Path(layout.ssh_dir)
    private_dirs(ssh_dir)
    identity = ssh_dir / "id_ed25519"
    for key, comment in ((identity, f"swarmforge-{layout.cluster}"),
                         (layout.ca_key, f"swarmforge-{layout.cluster}-host-ca")):
        if not key.exists():
            sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)],
               "generate an SSH key")
    write_private(layout.authorized_keys, Path(f"{identity}.pub").read_text())
    known_hosts = ssh_dir / "known_hosts"
    ca_public = Path(f"{layout.ca_key}.pub").read_text().strip()
    write_private(known_hosts, f"@cert-authority {host_pattern(layout.network)} {ca_public}\n")
    profile = SshProfile(name=layout.cluster, user="root", identity=identity,
                         known_hosts=known_hosts, config=ssh_dir / "config")
    profile.write_config()
    return profile


def host_pattern(network: str) -> str:
    """known_hosts pattern for a /24: ``10.213.7.0/24`` -> ``10.213.7.*``."""
    return network.rsplit(".", 1)[0] + ".*"
