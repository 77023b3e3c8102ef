"""One sandbox host: a network namespace with its own hostname, dockerd and sshd.

Host keys are signed by the cluster's SSH CA, so both Terraform (``host_key``)
and our ssh client verify every host strictly without a trust-on-first-use step.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from swarmforge.errors import SandboxError
from swarmforge.local.sandbox import SandboxLayout
from swarmforge.local.system import (
    alive,
    cmdline_mentions,
    pid_from_file,
    sh,
    stop,
    succeeds,
    unmount_all,
)
from swarmforge.process import run

HOSTNAME = re.compile(r"-(manager|worker)-(\d+)$")
READY_TIMEOUT = 30.0


@dataclass(frozen=True)
class Host:
    layout: SandboxLayout
    hostname: str
    key: str  # m0, w3: short, because dockerd's socket paths live under the host dir

    @classmethod
    def named(cls, layout: SandboxLayout, hostname: str) -> Host:
        match = HOSTNAME.search(hostname)
        if not match:
            raise SandboxError(f"not a sandbox hostname: {hostname!r} (want <cluster>-manager-N)")
        return cls(layout, hostname, f"{match.group(1)[0]}{match.group(2)}")

    @classmethod
    def from_dir(cls, layout: SandboxLayout, host_dir: Path) -> Host:
        hostname_file = host_dir / "hostname"
        hostname = hostname_file.read_text().strip() if hostname_file.exists() else host_dir.name
        return cls(layout, hostname, host_dir.name)

    @property
    def dir(self) -> Path:
        return Path(self.layout.dir) / self.key

    @property
    def netns(self) -> str:
        return f"sf-{self.layout.cluster}-{self.key}"

    @property
    def veth(self) -> str:
        return f"sf{self.layout.tag}{self.key}"

    @property
    def cgroup_parent(self) -> str:
        return f"swarmforge-{self.layout.cluster}-{self.key}"

    # -- up -----------------------------------------------------------------

    def up(self, address: str) -> None:
        """Create the host from nothing; leftovers under the same name are removed first."""
        self.down()
        self._make_dirs()
        self._make_host_key(address)
        self._make_namespaces(address)
        self._write_configs(address)
        self._start(["dockerd", *self._dockerd_args()], "dockerd.log",
                    {"DOCKER_SERVICE_PREFER_OFFLINE_IMAGE": "1"})
        self._start(["/usr/sbin/sshd", "-f", str(self.dir / "sshd_config"),
                     "-E", str(self.dir / "sshd.log")], None, {})
        self._wait_ready(address)
        self._load_images()

    def _make_dirs(self) -> None:
        self.dir.mkdir(mode=0o700, parents=True)
        (self.dir / "provision").mkdir(mode=0o700)
        (self.dir / "hostname").write_text(self.hostname + "\n")

    def _make_host_key(self, address: str) -> None:
        key = self.dir / "ssh_host_ed25519_key"
        sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", self.hostname, "-f", str(key)],
           "host key")
        sh(["ssh-keygen", "-q", "-s", str(self.layout.ca_key), "-h", "-I", self.hostname,
            "-n", f"{address},{self.hostname}", "-V", "-5m:+520w", f"{key}.pub"],
           "sign the host key")

    def _make_namespaces(self, address: str) -> None:
        prefix = ipaddress.ip_network(self.layout.network).prefixlen
        sh(["ip", "netns", "add", self.netns], "network namespace")
        # A fixed MAC per address: a recreated host would otherwise meet a
        # stale neighbour entry and wait seconds for its first packet.
        sh(["ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0",
            "address", mac_for(address), "netns", self.netns], "veth pair")
        sh(["ip", "link", "set", self.veth, "master", self.layout.bridge, "up"], "attach veth")
        sh(["ip", "-n", self.netns, "addr", "add", f"{address}/{prefix}", "dev", "eth0"],
           "address")
        sh(["ip", "-n", self.netns, "link", "set", "eth0", "up"], "eth0 up")
        sh(["ip", "-n", self.netns, "link", "set", "lo", "up"], "lo up")
        (self.dir / "uts").touch()
        sh(["unshare", f"--uts={self.dir / 'uts'}", "hostname", self.hostname], "hostname")

    def _write_configs(self, address: str) -> None:
        # Without its own key path every dockerd shares /etc/docker/key.json,
        # and all nodes report one engine ID.
        daemon = {"deprecated-key-path": str(self.dir / "key.json")}
        (self.dir / "daemon.json").write_text(json.dumps(daemon) + "\n")
        (self.dir / "sshd_config").write_text(sshd_config(self, address))

    def _dockerd_args(self) -> list[str]:
        d = self.dir
        return ["--data-root", str(d / "data"), "--exec-root", str(d / "exec"),
                "-H", f"unix://{d / 'docker.sock'}", "--pidfile", str(d / "docker.pid"),
                "--config-file", str(d / "daemon.json"), "--cgroup-parent", self.cgroup_parent]

    def _start(self, argv: list[str], log: str | None, env: dict[str, str]) -> None:
        # `ip netns exec` remounts /sys and breaks dockerd: enter with nsenter.
        enter = ["nsenter", f"--net=/var/run/netns/{self.netns}", f"--uts={self.dir / 'uts'}"]
        output = open(self.dir / log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
        try:
            subprocess.Popen([*enter, *argv], stdin=subprocess.DEVNULL, stdout=output,
                             stderr=subprocess.STDOUT, start_new_session=True,
                             env={**os.environ, **env}, close_fds=True)
        finally:
            if log:
                output.close()  # type: ignore[union-attr]

    def _wait_ready(self, address: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while not docker_answers(self.dir / "docker.sock"):
            if time.monotonic() > deadline:
                raise SandboxError(f"{self.hostname}: dockerd did not start; see {self.dir}/dockerd.log")
            time.sleep(0.1)
        while not port_open(address, 22):
            if time.monotonic() > deadline or not self._sshd_running():
                raise SandboxError(f"{self.hostname}: sshd is not listening on {address}:22; "
                                   f"see {self.dir}/sshd.log")
            time.sleep(0.05)

    def _load_images(self) -> None:
        """Preload the sandbox's images: there is no registry to pull them from."""
        for image in sorted((Path(self.layout.dir) / "images").glob("*.tar")):
            result = run(["docker", "-H", f"unix://{self.dir / 'docker.sock'}", "load", "-q",
                          "-i", str(image)], timeout=120)
            if not result.ok:
                raise SandboxError(f"{self.hostname}: cannot load {image.name}: "
                                   f"{result.stderr.strip()}")

    def _sshd_running(self) -> bool:
        pid = pid_from_file(self.dir / "sshd.pid")
        return pid is None or alive(pid)  # no pidfile yet: still starting

    # -- down ---------------------------------------------------------------

    def down(self) -> None:
        """Remove the host and everything it started; safe on a host half made or long dead."""
        self._stop_daemons()
        if succeeds(["ip", "netns", "pids", self.netns]):
            pids = [int(p) for p in run(["ip", "netns", "pids", self.netns]).stdout.split()]
            stop(pids, grace=2.0)
        unmount_all(self.dir)
        run(["ip", "netns", "del", self.netns])
        run(["ip", "link", "del", self.veth])
        remove_cgroups(self.cgroup_parent)
        shutil.rmtree(self.dir, ignore_errors=True)

    def _stop_daemons(self) -> None:
        # Only pids whose argv names this host's dir: a pidfile may outlive its process.
        for pidfile, grace in (("docker.pid", 30.0), ("sshd.pid", 2.0)):
            pid = pid_from_file(self.dir / pidfile)
            if pid and alive(pid) and cmdline_mentions(pid, str(self.dir)):
                stop([pid], grace)


def mac_for(address: str) -> str:
    octets = ipaddress.ip_address(address).packed
    return "02:00:" + ":".join(f"{b:02x}" for b in octets)


def sshd_config(host: Host, address: str) -> str:
    d = host.dir
    return "\n".join([
        "Port 22",
        f"ListenAddress {address}",
        f"HostKey {d / 'ssh_host_ed25519_key'}",
        f"HostCertificate {d / 'ssh_host_ed25519_key-cert.pub'}",
        f"PidFile {d / 'sshd.pid'}",
        f"AuthorizedKeysFile {host.layout.authorized_keys}",
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",  # the key files sit under /run and the state dir
        f"SetEnv DOCKER_HOST=unix://{d / 'docker.sock'}",
        "",
    ])


def docker_answers(sock: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(1.0)
            conn.connect(str(sock))
            conn.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            status_line = conn.recv(64).split(b"\r\n", 1)[0]
    except OSError:
        return False
    return status_line.endswith(b" 200 OK")


def port_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def remove_cgroups(parent: str) -> None:
    """rmdir the (empty, once its processes are gone) cgroups dockerd made for this host."""
    for tree in Path("/sys/fs/cgroup").glob(f"*/{parent}"):
        for sub in sorted(tree.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if sub.is_dir():
                with contextlib.suppress(OSError):
                    sub.rmdir()
        with contextlib.suppress(OSError):
            tree.rmdir()
