"""Host keys are pinned before any token travels: read from a trusted source, checked strictly.

aws: each instance's keys come from its console, as cloud-init prints them on
first boot, checked against the fingerprints printed beside them, pinned per
instance id. The console transcripts here are made of real keys from ssh-keygen
in cloud-init's format; moto's console (which holds no keys) shows the refusal.
"""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from swarmforge.nodes import NodeRef
from swarmforge.targets.aws import host_keys
from swarmforge.targets.aws.host_keys import (
    HostKeyError,
    HostKeyPins,
    console_host_keys,
    fingerprint,
)
from tests.terraform_config import TERRAFORM, labelled, locals_of

TERRAFORM_AWS = TERRAFORM / "aws"


def keypair(folder: Path, kind: str) -> str:
    """A real public host key (``type base64``) made by ssh-keygen."""
    path = folder / f"host_{kind}"
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True)
    return " ".join(Path(f"{path}.pub").read_text().split()[:2])


def keygen_fingerprint(folder: Path, key: str) -> str:
    path = folder / "probe.pub"
    path.write_text(key + "\n")
    listed = subprocess.run(["ssh-keygen", "-l", "-f", str(path)], check=True, capture_output=True,
                            text=True).stdout
    return listed.split()[1].removeprefix("SHA256:")


def console(keys: list[str], prints: list[str] | None = None, prefix: str = "") -> str:
    """A console transcript as cloud-init writes it (optionally with a kernel-log prefix)."""
    prints = prints if prints is not None else [fingerprint(k) for k in keys]
    lines = ["[    0.000000] Linux version 6.8.0-1015-aws", "cloud-init[812]: modules:final",
             "ec2: #############################################################",
             "ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----",
             *(f"ec2: 256 SHA256:{p} root@ip-10-0-1-5 (X)" for p in prints),
             "ec2: -----END SSH HOST KEY FINGERPRINTS-----",
             "ec2: #############################################################",
             "-----BEGIN SSH HOST KEY KEYS-----",
             *(f"{key} root@ip-10-0-1-5" for key in keys),
             "-----END SSH HOST KEY KEYS-----",
             "Cloud-init v. 24.1 finished"]
    return "\n".join(prefix + line for line in lines)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("keys")
    return {kind: keypair(folder, kind) for kind in ("ed25519", "ecdsa", "rsa")}


def test_fingerprints_are_openssh_s(keys: dict[str, str], tmp_path: Path) -> None:
    for key in keys.values():
        assert fingerprint(key) == keygen_fingerprint(tmp_path, key)


def test_the_console_s_keys_are_read_and_ed25519_is_preferred(keys: dict[str, str]) -> None:
    found = console_host_keys(console([keys["ecdsa"], keys["ed25519"], keys["rsa"]]))

    assert sorted(found) == sorted(keys.values())
    assert host_keys.preferred(found) == keys["ed25519"]


def test_a_console_without_the_block_yet_has_no_keys() -> None:
    assert console_host_keys("[    0.000000] Linux version 6.8.0\ncloud-init[812]: init-local") == []
    assert console_host_keys(console([])[:200]) == []


def test_keys_that_do_not_match_their_fingerprints_are_refused(keys: dict[str, str]) -> None:
    forged = console([keys["ed25519"]], prints=[fingerprint(keys["ecdsa"])])

    with pytest.raises(HostKeyError, match="do not match its fingerprints"):
        console_host_keys(forged)


def test_the_newest_boot_s_block_counts(keys: dict[str, str]) -> None:
    two_boots = console([keys["rsa"]]) + "\n" + console([keys["ed25519"]])
    assert console_host_keys(two_boots) == [keys["ed25519"]]


def test_pins_are_kept_per_instance_and_written_private(keys: dict[str, str], tmp_path: Path) -> None:
    pins = HostKeyPins(tmp_path / "ssh")
    consoles = {"i-0aaa": console([keys["ed25519"]]), "i-0bbb": console([keys["ecdsa"]])}
    read: list[str] = []

    def read_console(instance: str) -> str:
        read.append(instance)
        return consoles[instance]

    refs = [NodeRef("c-manager-0", "10.0.1.5", "203.0.113.5", "i-0aaa"),
            NodeRef("c-worker-0", "10.0.2.7", "203.0.113.7", "i-0bbb")]
    assert pins.pin(refs, read_console, say=lambda line: None, timeout=1) == {
        "c-manager-0": keys["ed25519"], "c-worker-0": keys["ecdsa"]}
    assert pins.known_hosts.read_text().splitlines() == [
        f"10.0.1.5,203.0.113.5 {keys['ed25519']}", f"10.0.2.7,203.0.113.7 {keys['ecdsa']}"]
    for path in (pins.path, pins.known_hosts):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    # Pinned once: the console is not read again. A replaced worker (same name, new
    # instance) is read anew; the old instance's pin goes.
    consoles["i-0ccc"] = console([keys["rsa"]])
    replaced = [refs[0], NodeRef("c-worker-0", "10.0.2.8", "203.0.113.8", "i-0ccc")]
    assert pins.pin(replaced, read_console, say=lambda line: None, timeout=1)["c-worker-0"] \
        == keys["rsa"]
    assert read == ["i-0aaa", "i-0bbb", "i-0ccc"]
    assert set(json.loads(pins.path.read_text())) == {"i-0aaa", "i-0ccc"}
    assert keys["ecdsa"] not in pins.known_hosts.read_text()
    assert pins.key_at("203.0.113.8") == keys["rsa"] and pins.key_at("198.51.100.1") == ""


class CountedPins(HostKeyPins):
    """HostKeyPins that count their reads of host_keys.json."""

    reads = 0

    def load(self) -> dict[str, dict[str, Any]]:
        self.reads += 1
        return super().load()


def test_the_pins_file_is_read_once_however_many_nodes(keys: dict[str, str], tmp_path: Path) -> None:
    """Once per node was 0.8 s of CPU per look-up at 507 nodes (benchmarks/aws_model.py)."""
    pins = CountedPins(tmp_path / "ssh")
    refs = [NodeRef(f"c-worker-{n}", f"10.0.2.{n}", f"203.0.113.{n}", f"i-0{n:03}") for n in range(30)]
    first = pins.pin(refs, lambda instance: console([keys["ed25519"]]), say=lambda line: None,
                     timeout=1)
    assert (len(first), pins.reads) == (30, 1)

    again = pins.pin(refs, lambda instance: "", say=lambda line: None, timeout=1)  # all pinned

    assert (again, pins.reads) == (first, 2)


def test_a_node_that_never_prints_its_keys_gets_no_token(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host_keys, "POLL", 0.05)
    pins = HostKeyPins(tmp_path / "ssh")
    ref = NodeRef("c-worker-3", "10.0.2.9", "203.0.113.9", "i-0ddd")

    with pytest.raises(HostKeyError) as refused:
        pins.pin([ref], lambda instance: "booting...", say=lambda line: None, timeout=0.2)

    assert "c-worker-3 (i-0ddd) printed no SSH host keys" in str(refused.value)
    assert "gets no join token" in str(refused.value)
    assert not pins.known_hosts.exists() or "203.0.113.9" not in pins.known_hosts.read_text()


def test_on_moto_a_console_without_keys_is_refused(endpoint: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The real boto3 call, against moto's server (whose console prints no host keys)."""
    from swarmforge.targets.aws import client
    from swarmforge.targets.aws.target import console_output

    monkeypatch.setattr(host_keys, "POLL", 0.05)
    monkeypatch.setattr(host_keys, "CONSOLE_TIMEOUT", 0.3)
    ec2 = client("ec2", "eu-west-1", endpoint)
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]
    text = console_output(ec2, instance["InstanceId"])
    assert text and "Linux version" in text  # decoded: moto's sample console

    ref = NodeRef("c-manager-0", instance["PrivateIpAddress"], "203.0.113.10",
                  instance["InstanceId"])
    with pytest.raises(HostKeyError, match="printed no SSH host keys"):
        HostKeyPins(tmp_path).pin([ref], lambda i: console_output(ec2, i), say=lambda line: None)


def test_terraform_verifies_every_swarm_step_against_the_pin() -> None:
    join = labelled(TERRAFORM_AWS, "resource")["null_resource.swarm_join"]
    locals_ = locals_of(TERRAFORM_AWS)

    connection = join["connection"][0]
    assert connection["host_key"] == "${var.swarm_host_keys[each.key]}"
    assert "var.ssh_bastion_host_key" in connection["bastion_host_key"]
    # A provisioner's own connection block is merged over the resource's: none may set
    # another key (or none) for the node or its bastion.
    overrides = [body["connection"][0] for step in join["provisioner"] for body in step.values()
                 if "connection" in body]
    for override in overrides:
        assert not {"host", "host_key", "bastion_host", "bastion_host_key"} & set(override)
    # No step for a node whose key is not pinned yet.
    assert "contains(keys(var.swarm_host_keys), name)" in locals_["join_steps"]
