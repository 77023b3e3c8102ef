"""`invoke context` and `invoke ssh` on a real sandbox swarm (1 manager + 1 worker).

The operator's side runs as an operator's would: the real `invoke`, the real docker CLI
and the system ssh, which reads ~/.ssh/config from the passwd entry's home whatever
$HOME says. So every command of the operator's runs in a mount namespace of its own
where that home is an overlay: the real one read through, every write kept in a temp
dir. The machine's own ~/.ssh and ~/.docker are never written, and a test checks that.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import INVOKE, REPO, invoke, unique_cluster
from tests.sandbox_swarm import Cluster

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("require_sandbox")]

HOME = Path(pwd.getpwuid(os.getuid()).pw_dir)
# The operator's own ~/.ssh/config, which `invoke context` must keep as it is.
OWN_CONFIG = "ServerAliveInterval 30\n\nHost myhost\n  User me\n"
OVERLAY = ('mount -t overlay overlay -o lowerdir="$1",upperdir="$2/upper",workdir="$2/work" "$1" '
           '&& shift 2 && exec "$@"')
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
STACK = """\
version: "3.8"
services:
  sleeper:
    image: swarmforge/sample:1
    command: ["sleep", "3600"]
    deploy:
      replicas: 2
"""


@dataclass
class Operator:
    """An operator's machine: this one, with a home of its own."""

    dir: Path
    cluster: Cluster

    @property
    def ssh_config(self) -> Path:
        return self.dir / "upper" / ".ssh" / "config"

    @property
    def context(self) -> str:
        return f"swarmforge-{self.cluster.name}"

    def run(self, *argv: str, stdin: str | None = None,
            state: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env.update(HOME=str(HOME), INVOKE_SWARMFORGE_STATE_DIR=str(state or self.cluster.state))
        return subprocess.run(["unshare", "--mount", "--", "sh", "-c", OVERLAY, "sh", str(HOME),
                               str(self.dir), *argv], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=300, check=False, input=stdin)

    def invoke(self, task: str, *args: str,
               state: Path | None = None) -> subprocess.CompletedProcess[str]:
        # The flag first: what follows `--` is the command `invoke ssh` runs.
        return self.run(*INVOKE, task, "--cluster", self.cluster.name, *args, state=state)

    def docker(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("docker", "--context", self.context, *args)


@pytest.fixture(scope="module")
def cluster(state_root: Path) -> Iterator[Cluster]:
    cluster = Cluster(unique_cluster("ax"), state_root)
    result = cluster.run("apply", "--managers", "1", "--workers", "1", timeout=900)
    assert result.returncode == 0, result.stderr
    yield cluster
    invoke("destroy", "--cluster", cluster.name, "--yes", state_dir=state_root)


@pytest.fixture(scope="module")
def operator(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Operator:
    home = tmp_path_factory.mktemp("operator")
    (home / "work").mkdir()
    (home / "upper" / ".ssh").mkdir(parents=True, mode=0o700)
    # Kept by a dotfiles manager: a link, to a file readable by all.
    (home / "upper" / "dotfiles").mkdir()
    (home / "upper" / "dotfiles" / "ssh_config").write_text(OWN_CONFIG)
    (home / "upper" / "dotfiles" / "ssh_config").chmod(0o644)
    (home / "upper" / ".ssh" / "config").symlink_to("../dotfiles/ssh_config")
    return Operator(home, cluster)


@pytest.fixture(scope="module")
def nodes(cluster: Cluster) -> dict[str, dict]:
    """{role: the node as status --json shows it}"""
    return {n["role"]: n for n in cluster.status()["nodes"]}


@pytest.fixture(scope="module")
def hostnames(nodes: dict[str, dict]) -> dict[str, str]:
    """{role: hostname}"""
    return {role: node["hostname"] for role, node in nodes.items()}


@pytest.fixture(scope="module", autouse=True)
def machine_home_untouched() -> Iterator[None]:
    before = _home_files()
    yield
    assert _home_files() == before


def _home_files() -> dict[str, str | None]:
    """What this machine's real ~/.ssh/config and ~/.docker contexts hold."""
    config = HOME / ".ssh" / "config"
    contexts = HOME / ".docker" / "contexts"
    return {"config": config.read_text() if config.exists() else None,
            "contexts": " ".join(sorted(str(p) for p in contexts.rglob("*")))
            if contexts.exists() else None}


def test_the_context_lists_the_swarms_nodes(operator: Operator, hostnames: dict[str, str]) -> None:
    made = operator.invoke("context")
    assert made.returncode == 0, made.stderr
    assert f"docker context '{operator.context}' created" in made.stdout
    assert f"the manager {hostnames['manager']}" in made.stdout

    listed = operator.docker("node", "ls", "--format", "{{.Hostname}}")
    assert listed.returncode == 0, listed.stderr
    assert sorted(listed.stdout.split()) == sorted(hostnames.values())
    # Two lines at the top of the operator's file; the rest as it was.
    lines = operator.ssh_config.read_text().splitlines(keepends=True)
    assert lines[0].startswith(f"# swarmforge cluster {operator.cluster.name}: ")
    assert lines[1] == f'Include "{operator.cluster.ssh_config.parent / "docker-context.conf"}"\n'
    assert "".join(lines[2:]) == OWN_CONFIG
    assert operator.ssh_config.is_symlink()  # followed, not replaced
    assert operator.ssh_config.stat().st_mode & 0o777 == 0o644


def test_context_again_puts_a_stale_context_right(operator: Operator) -> None:
    alias = operator.cluster.ssh_config.parent / "docker-context.conf"
    # As after the manager was replaced: the alias names an address where no sshd listens
    # (refused at once, where an address nobody has would wait for ARP).
    alias.write_text("\n".join(line if "HostName" not in line else "  HostName 127.0.0.1\n  Port 1"
                               for line in alias.read_text().splitlines()) + "\n")
    assert operator.docker("node", "ls").returncode != 0
    # And the context itself changed by hand.
    assert operator.run("docker", "context", "update", operator.context,
                        "--docker", "host=ssh://nowhere").returncode == 0

    again = operator.invoke("context")
    assert again.returncode == 0, again.stderr
    assert f"docker context '{operator.context}' updated" in again.stdout
    assert operator.docker("node", "ls").returncode == 0
    assert operator.ssh_config.read_text().count("Include ") == 1  # not a second one


def test_a_stack_deploys_through_the_context(operator: Operator) -> None:
    compose = operator.dir / "stack.yml"
    compose.write_text(STACK)
    deployed = operator.docker("stack", "deploy", "--detach=true", "--resolve-image", "never",
                               "-c", str(compose), "ax")
    assert deployed.returncode == 0, deployed.stderr
    assert _replicas(operator, "ax_sleeper") == "2/2"
    assert operator.docker("stack", "rm", "ax").returncode == 0


def _replicas(operator: Operator, service: str) -> str:
    """The service's replicas once all run; the last count seen if they never do."""
    replicas = ""
    for _ in range(60):
        replicas = operator.docker("service", "ls", "--filter", f"name={service}",
                                   "--format", "{{.Replicas}}").stdout.strip()
        running, _, wanted = replicas.partition("/")
        if running and running == wanted:
            break
        time.sleep(1)
    return replicas


def test_remove_takes_out_what_context_added(operator: Operator) -> None:
    removed = operator.invoke("context", "--remove")
    assert removed.returncode == 0, removed.stderr
    assert f"docker context '{operator.context}' removed" in removed.stdout
    assert operator.run("docker", "context", "inspect", operator.context).returncode != 0
    assert operator.ssh_config.read_text() == OWN_CONFIG
    assert not (operator.cluster.ssh_config.parent / "docker-context.conf").exists()
    again = operator.invoke("context", "--remove")
    assert again.returncode == 0
    assert "nothing to remove" in again.stdout


def test_ssh_runs_a_command_on_a_node(operator: Operator, nodes: dict[str, dict],
                                     hostnames: dict[str, str]) -> None:
    worker = nodes["worker"]
    for node, expected in ((worker["hostname"], "worker"), ("swarm_worker[0]", "worker"),
                           (worker["address"], "worker"), (worker["id"][:6], "worker"),
                           ("leader", "manager")):
        ran = operator.invoke("ssh", node, "--", "hostname")
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.strip() == hostnames[expected]


def test_ssh_returns_the_commands_exit_status(operator: Operator) -> None:
    assert operator.invoke("ssh", "swarm_worker[0]", "--", "exit", "7").returncode == 7


def test_ssh_without_a_command_is_a_shell_at_the_terminal(operator: Operator,
                                                          hostnames: dict[str, str]) -> None:
    # `script` gives it a terminal, as an operator's; the shell reads what is typed there.
    command = shlex.join([*INVOKE, "ssh", "--cluster", operator.cluster.name, "leader"])
    typed = "tty && hostname\nexit 3\n"
    shell = operator.run("script", "-qec", command, "/dev/null", stdin=typed)
    assert shell.returncode == 3, shell.stdout + shell.stderr
    said = ANSI.sub("", shell.stdout.replace("\r", "")).splitlines()  # the shell's escapes out
    assert any(line.startswith("/dev/pts/") for line in said), said  # the node's own terminal
    assert hostnames["manager"] in said


def test_ssh_to_a_node_the_cluster_has_not(operator: Operator, hostnames: dict[str, str]) -> None:
    ran = operator.invoke("ssh", "nosuch", "--", "hostname")
    assert ran.returncode == 2
    assert ran.stderr.strip().splitlines() == [
        f"swarmforge: node 'nosuch' is not in this cluster; its nodes are: "
        f"{hostnames['manager']}, {hostnames['worker']}"]


def test_context_can_leave_ssh_config_alone(operator: Operator) -> None:
    made = operator.invoke("context", "--no-ssh-config")
    assert made.returncode == 0, made.stderr
    alias = operator.cluster.ssh_config.parent / "docker-context.conf"
    assert made.stdout.splitlines()[-1] == f'Include "{alias}"'  # the line to add
    assert operator.ssh_config.read_text() == OWN_CONFIG
    assert operator.run("docker", "context", "inspect", operator.context).returncode == 0

    removed = operator.invoke("context", "--remove")
    assert removed.returncode == 0, removed.stderr
    assert not alias.exists()
    assert operator.run("docker", "context", "inspect", operator.context).returncode != 0


def test_destroy_takes_out_what_context_left_on_the_operators_machine(
        operator: Operator) -> None:
    # The last of the cluster's tests. The hosts go first, by the machine's own destroy
    # (outside the operator's overlay, where namespaces and mounts are the machine's): it
    # finds no context of this cluster in the machine's home, and leaves that home alone
    # (machine_home_untouched). Then the operator's destroy, in the overlay, finds the
    # cluster gone, and still takes out the context and the Include it left.
    assert operator.invoke("context").returncode == 0
    gone = invoke("destroy", "--cluster", operator.cluster.name, "--yes",
                  state_dir=operator.cluster.state)
    assert gone.returncode == 0, gone.stderr
    assert "docker context" not in gone.stdout
    # Another checkout (its own state dir) destroying a cluster of the same name (while
    # the sandbox stood, the local target refused it: the sandbox was this state dir's)
    # leaves this one's context and Include alone.
    other = operator.invoke("destroy", "--yes", state=operator.dir / "other-checkout")
    assert other.returncode == 0, other.stderr
    assert other.stdout.splitlines() == [f"cluster {operator.cluster.name!r}: nothing to destroy"]
    assert operator.run("docker", "context", "inspect", operator.context).returncode == 0
    assert operator.ssh_config.read_text().count("Include ") == 1

    again = operator.invoke("destroy", "--yes")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [
        f"cluster {operator.cluster.name!r}: nothing to destroy",
        f"docker context {operator.context!r} removed; its Include taken out of ~/.ssh/config"]
    assert operator.run("docker", "context", "inspect", operator.context).returncode != 0
    assert operator.ssh_config.read_text() == OWN_CONFIG


# Many clusters' `invoke context` at once, as a script might run them: each edit of
# ~/.ssh/config reads, changes and replaces the whole file.
EDITORS = """
import multiprocessing, sys
from pathlib import Path
from swarmforge.operator_ssh import forget_alias, include_alias

def edit(name):
    for _ in range(10):
        include_alias(name, Path(f"/nowhere/{name}.conf"))
        forget_alias(name)
    include_alias(name, Path(f"/nowhere/{name}.conf"))

with multiprocessing.Pool(8) as pool:
    pool.map(edit, [f"c{i}" for i in range(8)])
"""


def test_edits_at_once_keep_every_include(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    (tmp_path / "upper" / ".ssh").mkdir(parents=True)
    (tmp_path / "upper" / ".ssh" / "config").write_text(OWN_CONFIG)
    ran = subprocess.run(["unshare", "--mount", "--", "sh", "-c", OVERLAY, "sh", str(HOME),
                          str(tmp_path), sys.executable, "-c", EDITORS], cwd=REPO,
                         capture_output=True, text=True, timeout=120, check=False)
    assert ran.returncode == 0, ran.stderr
    config = (tmp_path / "upper" / ".ssh" / "config").read_text()
    assert sorted(line for line in config.splitlines() if line.startswith("Include ")) == [
        f'Include "/nowhere/c{i}.conf"' for i in range(8)]
    assert config.endswith(OWN_CONFIG)
