"""scripts/clean-image.sh, the bake's last step, against directory trees made here.

Every run has a ROOT under tmp_path: never this machine's /, whose host keys,
machine id and Docker this script would clean. `systemctl`, `cloud-init` and
`apt-get` on its PATH are fakes that note every call: under any root but / the
script must do their work on files and never call them. The real builds' use of
it (packer/build.pkr.hcl, packer/local/) is checked here against the templates,
and for real in test_local_bake.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import hcl2
import pytest

from swarmforge.errors import SandboxError
from swarmforge.settings import PACKER_DIR, SCRIPTS_DIR
from swarmforge.targets.local.builder import Builder
from swarmforge.targets.local.sandbox import SandboxLayout

SCRIPT = SCRIPTS_DIR / "clean-image.sh"
STEPS = [
    "==> Stopping Docker, so that it writes nothing once its state is gone",
    "==> Removing Docker's swarm state and engine identity (each node makes its own)",
    "==> Removing the SSH host keys (made anew on first boot)",
    "==> Emptying the machine id (made anew on first boot)",
    "==> Resetting cloud-init, so that the image's instances boot as a first boot",
    "==> Clearing the build's SSH access and shell history",
    "==> Removing apt's caches and package lists",
    "==> Emptying the scratch dirs the build used",
]
#: What a bake leaves on an Ubuntu machine (path: content), all of which must go or be emptied.
LEFT_BY_A_BAKE = {
    "etc/ssh/ssh_host_ed25519_key": "private",
    "etc/ssh/ssh_host_ed25519_key.pub": "ssh-ed25519 AAAA host",
    "etc/ssh/ssh_host_rsa_key": "private",
    "etc/ssh/ssh_host_rsa_key.pub": "ssh-rsa AAAA host",
    "etc/ssh/ssh_host_ecdsa_key": "private",
    "etc/ssh/ssh_host_ecdsa_key.pub": "ecdsa-sha2-nistp256 AAAA host",
    "etc/machine-id": "0123456789abcdef0123456789abcdef\n",
    "var/lib/dbus/machine-id": "0123456789abcdef0123456789abcdef\n",
    "var/lib/cloud/instances/i-0abc/obj.pkl": "pickle",
    "var/lib/cloud/instances/i-0abc/user-data.txt": "#cloud-config",
    "var/lib/cloud/data/instance-id": "i-0abc",
    "var/lib/cloud/sem/config_scripts_per_once.once": "",
    "var/log/cloud-init.log": "log",
    "var/log/cloud-init.log.1": "rotated log",
    "var/log/cloud-init-output.log": "output",
    "home/ubuntu/.ssh/authorized_keys": "ssh-rsa AAAA packer_6571d2b8\n",
    "home/ubuntu/.bash_history": "sudo -i\n",
    "root/.ssh/authorized_keys": 'no-port-forwarding,command="echo Please" ssh-rsa AAAA packer\n',
    "root/.bash_history": "docker info\n",
    "var/lib/docker/swarm/docker-state.json": "{}",
    "var/lib/docker/swarm/raft/wal-v3-encrypted/0.wal": "wal",
    "var/lib/docker/swarm/certificates/swarm-node.key": "key",
    "var/lib/docker/engine-id": "6f1b6b4c-0000-4000-8000-000000000000",
    "etc/docker/key.json": '{"kid": "ABCD:EFGH"}',
    "var/lib/apt/lists/archive.ubuntu.com_ubuntu_dists_noble_InRelease": "release",
    "var/lib/apt/lists/download.docker.com_linux_ubuntu_dists_noble_stable_binary-amd64_Packages": "p",
    "var/lib/apt/lists/lock": "",
    "var/lib/apt/lists/partial/half.gz": "half",
    "var/cache/apt/archives/docker-ce_27.3.1-1_amd64.deb": "deb",
    "var/cache/apt/archives/partial/containerd.io_1.7.22-1_amd64.deb": "deb",
    "var/cache/apt/pkgcache.bin": "cache",
    "var/cache/apt/srcpkgcache.bin": "cache",
    "tmp/script_8123.sh": "#!/bin/sh",
    "tmp/packer-shell123/env": "X=1",
    "var/tmp/build.log": "log",
}
#: What a machine keeps (path: content): the image's own settings, Docker's images, the seed.
KEPT = {
    "etc/ssh/sshd_config": "PasswordAuthentication no\n",
    "etc/docker/daemon.json": '{"log-driver": "json-file"}\n',
    "var/lib/docker/image/overlay2/repositories.json": "{}",
    "var/lib/docker/overlay2/l/ABC": "layer",
    "var/lib/cloud/seed/nocloud/meta-data": "instance-id: seed",
    "var/log/syslog": "syslog",
    "var/cache/apt/archives/lock": "",
    "home/ubuntu/.bashrc": "# bashrc",
    "tmp/systemd-private-1234-chrony.service-ab/tmp/x": "service tmp",
}
FAKE_COMMANDS = ("systemctl", "cloud-init", "apt-get")
FAKE_DOCKERD = """#!/bin/bash
# A stand-in for dockerd: on TERM it notes whether the swarm state was still there
# when it was asked to stop, takes a moment, and exits.
trap 'sleep 0.5; [[ -e "$DATA_ROOT/swarm" ]] && echo present >"$NOTE"; exit 0' TERM
while :; do sleep 0.1; done
"""


def write(root: Path, files: dict[str, str]) -> None:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def snapshot(tree: Path) -> dict[str, tuple[str, str]]:
    """Every entry under ``tree``: its kind and its content, link target or mode."""
    seen: dict[str, tuple[str, str]] = {}
    for path in sorted(tree.rglob("*")):
        relative = str(path.relative_to(tree))
        if path.is_symlink():
            seen[relative] = ("link", os.readlink(path))
        elif path.is_dir():
            seen[relative] = ("dir", oct(path.stat().st_mode))
        else:
            seen[relative] = ("file", path.read_text())
    return seen


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    """A dir of commands that only note their calls, first on the script's PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in FAKE_COMMANDS:
        fake = bin_dir / name
        fake.write_text(f'#!/bin/sh\necho "{name} $*" >>"{tmp_path / "calls"}"\n')
        fake.chmod(0o755)
    return bin_dir


def calls(fake_bin: Path) -> list[str]:
    noted = fake_bin.parent / "calls"
    return noted.read_text().splitlines() if noted.exists() else []


def clean(fake_bin: Path, *args: str, env: dict[str, str] | None = None,
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          env={"PATH": f"{fake_bin}:/usr/bin:/bin", **(env or {})},
                          check=False, timeout=120)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A machine's root as a bake leaves it."""
    made = tmp_path / "root"
    write(made, {**LEFT_BY_A_BAKE, **KEPT})
    return made


@pytest.fixture
def sibling(tmp_path: Path) -> Path:
    """A tree beside the root holding the same kind of files: it must never change."""
    made = tmp_path / "sibling"
    write(made, {"machine-id": "feedface\n", "authorized_keys": "ssh-ed25519 AAAA mine\n",
                 "docker/swarm/docker-state.json": "{}", "docker/engine-id": "mine",
                 "ssh/ssh_host_ed25519_key": "mine", "cloud/instances/i-1/x": "x",
                 "lists/Packages": "p", "home/.bash_history": "ls\n", "tmp/keep": "keep"})
    return made


def test_it_cleans_what_a_bake_leaves_and_keeps_the_rest(root: Path, fake_bin: Path) -> None:
    done = clean(fake_bin, str(root))

    assert done.returncode == 0, done.stderr
    assert [line for line in done.stdout.splitlines() if line.startswith("==>")] == STEPS
    left = {relative for relative in LEFT_BY_A_BAKE if (root / relative).exists()}
    # Emptied in place, not removed: the machine id (systemd fills it on first boot)
    # and the build user's authorized_keys.
    assert left == {"etc/machine-id", "home/ubuntu/.ssh/authorized_keys",
                    "root/.ssh/authorized_keys", "var/lib/dbus/machine-id"}
    for emptied in ("etc/machine-id", "home/ubuntu/.ssh/authorized_keys", "root/.ssh/authorized_keys"):
        assert (root / emptied).is_file() and not (root / emptied).is_symlink()
        assert (root / emptied).read_text() == "", emptied
    assert os.readlink(root / "var/lib/dbus/machine-id") == "/etc/machine-id"
    assert not list((root / "etc/ssh").glob("ssh_host_*"))
    assert not (root / "var/lib/docker/swarm").exists()
    assert sorted(p.name for p in (root / "var/lib/cloud").iterdir()) == ["seed"]
    assert list((root / "var/lib/apt/lists").iterdir()) == []
    assert list((root / "var/cache/apt/archives/partial").iterdir()) == []
    assert sorted(p.name for p in (root / "tmp").iterdir()) == ["systemd-private-1234-chrony.service-ab"]
    assert list((root / "var/tmp").iterdir()) == []
    for relative, content in KEPT.items():
        assert (root / relative).read_text() == content, relative
    assert calls(fake_bin) == []  # their work done on files, under a root that is not /


def test_the_root_may_come_from_the_environment(root: Path, fake_bin: Path) -> None:
    done = clean(fake_bin, env={"ROOT": str(root)})

    assert done.returncode == 0, done.stderr
    assert not (root / "var/lib/docker/engine-id").exists()
    assert (root / "etc/machine-id").read_text() == ""


def test_running_it_again_changes_nothing(root: Path, fake_bin: Path) -> None:
    first = clean(fake_bin, str(root))
    after_first = snapshot(root)

    again = clean(fake_bin, str(root))

    assert first.returncode == again.returncode == 0, first.stderr + again.stderr
    assert snapshot(root) == after_first
    assert again.stdout.splitlines() == STEPS  # each step found nothing to do


@pytest.mark.parametrize(("given", "complaint"), [
    ("no/such/dir", "ROOT must be an absolute path"),
    ("{tmp}/no-such-dir", "is not a directory"),
    ("{tmp}/a-file", "is not a directory"),
])
def test_it_refuses_a_root_that_is_not_a_directory(tmp_path: Path, fake_bin: Path, sibling: Path,
                                                    given: str, complaint: str) -> None:
    (tmp_path / "a-file").write_text("not a root")
    before = snapshot(tmp_path)

    refused = clean(fake_bin, given.format(tmp=tmp_path))

    assert refused.returncode == 2
    assert complaint in refused.stderr
    assert "==>" not in refused.stdout  # no step started
    assert snapshot(tmp_path) == before


def test_it_takes_one_root_only(root: Path, fake_bin: Path) -> None:
    refused = clean(fake_bin, str(root), str(root))

    assert refused.returncode == 2
    assert "usage: clean-image.sh [ROOT]" in refused.stderr


@pytest.mark.parametrize("name", ["DOCKER_DATA_ROOT", "DOCKER_KEY_FILE", "DOCKER_PIDFILE",
                                  "SSH_HOST_KEY_DIR", "HOME_DIRS", "TMP_DIRS"])
def test_it_refuses_an_override_outside_the_root(root: Path, sibling: Path, fake_bin: Path,
                                                 name: str) -> None:
    before = snapshot(root), snapshot(sibling)
    # Through a name under the root that leads out: `..`, then a list whose second entry does.
    outside = {"HOME_DIRS": f"{root}/root:{sibling}/home",
               "TMP_DIRS": f"{root}/tmp:{root}/../sibling/tmp"}.get(name, f"{root}/../sibling/docker")

    refused = clean(fake_bin, str(root), env={name: outside})

    assert refused.returncode == 2
    assert f"{name} must be an absolute path under ROOT" in refused.stderr
    assert "==>" not in refused.stdout
    assert (snapshot(root), snapshot(sibling)) == before


def test_it_never_follows_a_link_out_of_the_root(tmp_path: Path, sibling: Path, fake_bin: Path) -> None:
    root = tmp_path / "root"
    write(root, {"etc/ssh/sshd_config": "x", "var/lib/apt/keep": "", "root/.bashrc": ""})
    links = {  # a path the script cleans, and where it leads: out of the root
        "etc/machine-id": sibling / "machine-id",
        "var/lib/docker": sibling / "docker",
        "etc/ssh/ssh_host_ed25519_key": sibling / "ssh/ssh_host_ed25519_key",
        "root/.ssh": sibling,  # its authorized_keys
        "home/ubuntu": sibling / "home",
        "var/lib/cloud": sibling / "cloud",
        "var/lib/apt/lists": sibling / "lists",
        "tmp": sibling / "tmp",
        "var/tmp/escape": sibling,
    }
    for relative, target in links.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).symlink_to(target)
    before = snapshot(sibling)

    done = clean(fake_bin, str(root))

    assert done.returncode == 0, done.stderr
    assert snapshot(sibling) == before
    # Links in the root that it removes or replaces go, their targets stay.
    assert (root / "etc/machine-id").is_file() and not (root / "etc/machine-id").is_symlink()
    assert not (root / "etc/ssh/ssh_host_ed25519_key").is_symlink()
    assert not (root / "var/tmp/escape").is_symlink()
    assert f"left alone: {root}/var/lib/docker/swarm leads out of {root}" in done.stdout
    assert f"left alone: {root}/var/lib/cloud leads out of {root}" in done.stdout


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; whatever is left of them is stopped after it."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)


def start_dockerd(tmp_path: Path, data_root: Path, note: Path,
                  processes: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """A process named dockerd whose argv says ``--data-root data_root``."""
    fake = tmp_path / "fake" / "dockerd"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text(FAKE_DOCKERD)
    fake.chmod(0o755)
    process = subprocess.Popen([str(fake), "--data-root", str(data_root)],
                               env={"PATH": "/usr/bin:/bin", "DATA_ROOT": str(data_root),
                                    "NOTE": str(note)})
    processes.append(process)
    return process


def test_it_stops_the_roots_dockerd_before_removing_its_state(
        root: Path, tmp_path: Path, fake_bin: Path, processes: list[subprocess.Popen[bytes]]) -> None:
    note = tmp_path / "note"
    dockerd = start_dockerd(tmp_path, root / "var/lib/docker", note, processes)
    write(root, {"var/run/docker.pid": f"{dockerd.pid}\n"})

    done = clean(fake_bin, str(root))

    assert done.returncode == 0, done.stderr
    assert f"stopped dockerd (pid {dockerd.pid})" in done.stdout
    assert dockerd.wait(timeout=5) == 0  # it had exited: the script waited for it
    assert note.read_text() == "present\n"  # asked to stop while its swarm state was there
    assert not (root / "var/lib/docker/swarm").exists()


def test_it_leaves_a_dockerd_of_another_data_root_alone(
        root: Path, tmp_path: Path, fake_bin: Path, processes: list[subprocess.Popen[bytes]]) -> None:
    # The pidfile names a live dockerd, but not this root's: a reused pid, or a stale file.
    other = start_dockerd(tmp_path, tmp_path / "elsewhere", tmp_path / "note", processes)
    write(root, {"var/run/docker.pid": f"{other.pid}\n"})

    done = clean(fake_bin, str(root))

    assert done.returncode == 0, done.stderr
    assert "stopped dockerd" not in done.stdout
    assert other.poll() is None


# --- the builds run it last ---------------------------------------------------------------------


def last_provisioner(build_file: Path) -> dict[str, object]:
    (build,) = hcl2.loads(build_file.read_text())["build"]
    ((kind, body),) = build["provisioner"][-1].items()
    assert kind.strip('"') == "shell"
    return {key: value for key, value in body.items() if key != "__is_block__"}


def unquoted(value: object) -> str:
    assert isinstance(value, str)
    return value.strip('"')


def test_the_ami_build_runs_it_last_on_its_own_root_with_sudo() -> None:
    step = last_provisioner(PACKER_DIR / "build.pkr.hcl")

    assert unquoted(step["script"]) == "${var.scripts_dir}/clean-image.sh"
    assert [unquoted(v) for v in step["environment_vars"]] == ["ROOT=/"]  # type: ignore[attr-defined]
    assert "sudo env {{ .Vars }} {{ .Path }}" in unquoted(step["execute_command"])


def local_environment(builder_dir: Path) -> dict[str, str]:
    """The local build's environment for the script, for a builder at ``builder_dir``."""
    step = last_provisioner(PACKER_DIR / "local" / "sandbox-build.pkr.hcl")
    assert unquoted(step["script"]) == "${var.scripts_dir}/clean-image.sh"
    assert unquoted(step["remote_folder"]) == "${var.builder_dir}/provision"
    pairs = [unquoted(v).split("=", 1) for v in step["environment_vars"]]  # type: ignore[attr-defined]
    # Every path it is given is the builder's: never one of this machine's.
    assert pairs and all(value.startswith("${var.builder_dir}") for _, value in pairs), pairs
    return {name: value.replace("${var.builder_dir}", str(builder_dir)) for name, value in pairs}


def test_the_local_build_cleans_what_the_capture_checks(
        tmp_path: Path, fake_bin: Path, sibling: Path,
        processes: list[subprocess.Popen[bytes]]) -> None:
    """The local build's mapping of a machine's paths onto the builder's dir (host.py's
    layout) cleans exactly what ``Builder.require_clean`` refuses to capture."""
    layout = SandboxLayout(cluster="clean", dir=str(tmp_path / "sandbox"), ssh_dir=str(tmp_path / "ssh"),
                           network="10.213.250.0/24", bridge="sfbclean", tag="c1ea00")
    builder = Builder(layout)
    b0 = builder.dir
    write(b0, {"data/swarm/docker-state.json": "{}", "data/image/overlay2/repositories.json": "{}",
               "key.json": '{"kid": "ABCD"}', "ssh_host_ed25519_key": "private",
               "ssh_host_ed25519_key.pub": "public", "ssh_host_ed25519_key-cert.pub": "cert",
               "home/.bash_history": "ls\n", "provision/script_1234.sh": "#!/bin/sh",
               "daemon-settings.json": '{"log-driver": "json-file"}', "daemon.json": "{}",
               "sshd_config": "Port 22", "hostname": "clean-builder-0\n"})
    dockerd = start_dockerd(tmp_path, b0 / "data", tmp_path / "note", processes)
    write(b0, {"docker.pid": f"{dockerd.pid}\n"})
    with pytest.raises(SandboxError) as unclean:
        builder.require_clean()
    for leftover in ("its dockerd", "data/swarm", "key.json", "ssh_host_ed25519_key-cert.pub",
                     "home/.bash_history", "provision/script_1234.sh"):
        assert leftover in str(unclean.value)
    before = snapshot(sibling)

    done = clean(fake_bin, env=local_environment(b0))

    assert done.returncode == 0, done.stderr
    builder.require_clean()  # nothing left
    assert dockerd.wait(timeout=5) == 0
    assert sorted(p.name for p in b0.iterdir()) == [
        "daemon-settings.json", "daemon.json", "data", "docker.pid", "home", "hostname",
        "provision", "sshd_config"]
    assert (b0 / "data/image/overlay2/repositories.json").exists()  # the images stay
    assert calls(fake_bin) == []
    assert snapshot(sibling) == before
