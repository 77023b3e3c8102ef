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
from typing import Any

from swarmforge.errors import SandboxError
from swarmforge.process import run
from swarmforge.targets.local.node_image import HOST_IMAGE_FILE, LocalImage, write_json
from swarmforge.targets.local.sandbox import (
    LAYOUT_FILE,
    Sandbox,
    SandboxLayout,
    remove_network,
    require_root,
)
from swarmforge.targets.local.system import (
    alive,
    cmdline_mentions,
    pid_from_file,
    sh,
    stop,
    succeeds,
    unmount_all,
)

HOSTNAME = re.compile(r"-(manager|worker|builder)-(\d+)$")
READY_TIMEOUT = 30.0
SWARM_START_TIMEOUT = 90.0  # systemd's default start timeout: a daemon restored from a backup
#: All a host's daemons get of the environment of the command that starts them. That
#: command runs under Terraform's local-exec, whose environment holds the join tokens
#: while phase 2 makes a host: a daemon would keep them in /proc/<pid>/environ for its
#: whole life, and hand them to containerd and every shim it starts.
DAEMON_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "TZ")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: The host's daemon settings: what /etc/docker/daemon.json is to a machine.
DAEMON_SETTINGS_FILE = "daemon-settings.json"


@dataclass(frozen=True)
class Host:
    layout: SandboxLayout
    hostname: str
    key: str  # m0, w3: short, because dockerd's socket paths live under the host dir

    @classmethod
    def named(cls, layout: SandboxLayout, hostname: str) -> Host:
        match = HOSTNAME.search(hostname)
        if not match:
            raise SandboxError(f"not a sandbox hostname: {hostname!r} "
                               "(want <cluster>-manager-N, -worker-N or -builder-N)")
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

    def up(self, address: str, image: Path | None = None, *, bare: bool = False) -> None:
        """Create the host from nothing; leftovers under the same name are removed first.

        It boots from the local ``image`` (a dir of the image store: its daemon
        settings, then its images loaded) when given; else it loads the sandbox's
        stock images, or nothing at all when ``bare`` (a builder, which Packer provisions).
        """
        booted_from = LocalImage.load(image) if image else None  # refuse before making anything
        self.down()
        self._make_dirs()
        self._make_host_key(address)
        self._make_namespaces(address)
        if booted_from:
            write_json(self.dir / DAEMON_SETTINGS_FILE, dict(booted_from.daemon))
        (self.dir / "sshd_config").write_text(sshd_config(self, address))
        self._start_dockerd()
        self._start(["/usr/sbin/sshd", "-f", str(self.dir / "sshd_config"),
                     "-E", str(self.dir / "sshd.log")], None, {})
        self._wait_ready(address)
        if booted_from:
            self._load(booted_from.archive)
            (self.dir / HOST_IMAGE_FILE).write_text(f"{booted_from.path.resolve()}\n")
        elif not bare:
            self._load_images()

    def restart_docker(self) -> None:
        """Stop dockerd and start it again with the daemon settings the host has now,
        as `systemctl restart docker` does after daemon.json changed."""
        self.stop_docker()
        self.start_docker()

    def stop_docker(self) -> None:
        """`systemctl stop docker`: dockerd ends (its containers stop with it)."""
        self._stop_daemon("docker.pid", 30.0)
        (self.dir / "docker.pid").unlink(missing_ok=True)

    def start_docker(self) -> None:
        """`systemctl start docker`, waiting until it answers; no-op if it runs. A manager
        whose peers are gone (a restore) answers only once its swarm start timed out (20 s)."""
        if docker_answers(self.docker_socket):
            return
        # A dockerd killed leaves its containerd a zombie that no init reaps here: dockerd
        # would take its pidfile for a containerd still running and wait for it in vain.
        containerd = self.dir / "exec" / "containerd" / "containerd.pid"
        pid = pid_from_file(containerd)
        if pid and not alive(pid):
            containerd.unlink(missing_ok=True)
        self._start_dockerd()
        self._wait_docker(SWARM_START_TIMEOUT)

    @property
    def docker_socket(self) -> Path:
        return self.dir / "docker.sock"

    def _make_dirs(self) -> None:
        self.dir.mkdir(mode=0o700, parents=True)
        (self.dir / "provision").mkdir(mode=0o700)
        (self.dir / "home").mkdir(mode=0o700)  # root's home on this host: see sshd_config()
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

    def _start_dockerd(self) -> None:
        # The host's own settings (what /etc/docker/daemon.json is to a machine: a
        # provisioner or an image puts them there), then what keeps hosts apart:
        # without its own key path every dockerd shares /etc/docker/key.json and
        # all nodes report one engine ID.
        daemon = {**self.daemon_settings(), "deprecated-key-path": str(self.dir / "key.json")}
        write_json(self.dir / "daemon.json", daemon)
        self._start(["dockerd", *self._dockerd_args()], "dockerd.log",
                    {"DOCKER_SERVICE_PREFER_OFFLINE_IMAGE": "1"})

    def daemon_settings(self) -> dict[str, Any]:
        """The host's daemon settings ({} when it has none of its own)."""
        path = self.dir / DAEMON_SETTINGS_FILE
        if not path.exists():
            return {}
        try:
            settings = json.loads(path.read_text())
        except (OSError, ValueError) as problem:
            raise SandboxError(f"{self.hostname}: {path} is not JSON: {problem}") from None
        if not isinstance(settings, dict):
            raise SandboxError(f"{self.hostname}: {path} must hold a JSON object")
        return settings

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
                             env=daemon_env(self.dir / "home", env), close_fds=True)
        finally:
            if log:
                output.close()  # type: ignore[union-attr]

    def _wait_ready(self, address: str) -> None:
        self._wait_docker()
        deadline = time.monotonic() + READY_TIMEOUT
        while not port_open(address, 22):
            if time.monotonic() > deadline or not self._sshd_running():
                raise SandboxError(f"{self.hostname}: sshd is not listening on {address}:22; "
                                   f"see {self.dir}/sshd.log")
            time.sleep(0.05)

    def _wait_docker(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not docker_answers(self.docker_socket):
            if time.monotonic() > deadline:
                raise SandboxError(f"{self.hostname}: dockerd did not start; "
                                   f"see {self.dir}/dockerd.log")
            time.sleep(0.1)

    def _load_images(self) -> None:
        """Preload the sandbox's stock images: there is no registry to pull them from."""
        for image in sorted((Path(self.layout.dir) / "images").glob("*.tar")):
            self._load(image)

    def _load(self, archive: Path) -> None:
        result = run(["docker", "-H", f"unix://{self.docker_socket}", "load", "-q",
                      "-i", str(archive)], timeout=120)
        if not result.ok:
            raise SandboxError(f"{self.hostname}: cannot load {archive}: {result.stderr.strip()}")

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
        for pidfile, grace in (("docker.pid", 30.0), ("sshd.pid", 2.0)):
            self._stop_daemon(pidfile, grace)

    def _stop_daemon(self, pidfile: str, grace: float) -> None:
        # Only a pid whose argv names this host's dir: a pidfile may outlive its process.
        pid = pid_from_file(self.dir / pidfile)
        if pid and alive(pid) and cmdline_mentions(pid, str(self.dir)):
            stop([pid], grace)


def daemon_env(home: Path, extra: dict[str, str]) -> dict[str, str]:
    """A daemon's environment: the allowed variables of ours, its host's home, ``extra``."""
    env = {name: os.environ[name] for name in DAEMON_ENVIRONMENT if name in os.environ}
    env.setdefault("PATH", DEFAULT_PATH)
    return {**env, "HOME": str(home), **extra}


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
        # A home of its own, as a machine has: sessions must not run this machine's
        # ~/.bashrc (bash reads it for every command sshd starts; a developer's can
        # cost 0.2 s each, and Terraform's provisioners open about nine per node).
        f"SetEnv DOCKER_HOST=unix://{d / 'docker.sock'} HOME={d / 'home'}",
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


def remove_sandbox(sandbox: Sandbox) -> None:
    """Remove every host of ``sandbox``, its bridge, its firewall rule and its dir."""
    require_root()
    if (sandbox.dir / LAYOUT_FILE).exists():
        layout = SandboxLayout.load(sandbox.dir)
        for host_dir in sandbox.host_dirs():
            Host.from_dir(layout, host_dir).down()
        remove_network(layout)
    shutil.rmtree(sandbox.dir, ignore_errors=True)
