"""Each instance's SSH host key, pinned before any session that could carry a join token.

EC2 hands out no host key before the first contact, so trusting the first key
seen would let whoever answers at a node's address first receive the join
material. cloud-init prints every host key it generated to the instance's
console (``-----BEGIN SSH HOST KEY KEYS-----``), which only the account can
read (``ec2:GetConsoleOutput``): the keys are read there, checked against the
fingerprints printed beside them, and pinned per instance id. known_hosts and
Terraform's ``host_key`` are written from the pins only, and every connection
checks strictly. A replaced instance has a new id, so its key is read anew.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from swarmforge.errors import SwarmforgeError
from swarmforge.nodes import NodeRef

KEYS_BEGIN, KEYS_END = "-----BEGIN SSH HOST KEY KEYS-----", "-----END SSH HOST KEY KEYS-----"
PRINTS_BEGIN = "-----BEGIN SSH HOST KEY FINGERPRINTS-----"
PRINTS_END = "-----END SSH HOST KEY FINGERPRINTS-----"
KEY = re.compile(r"\b(ssh-ed25519|ecdsa-sha2-nistp(?:256|384|521)|ssh-rsa) ([A-Za-z0-9+/]+={0,2})")
FINGERPRINT = re.compile(r"\bSHA256:([A-Za-z0-9+/]{43})\b")
#: The key Terraform and ssh pin: the strongest type cloud-init prints.
PREFERRED = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
             "ssh-rsa")
#: How long a new instance may take to print its keys (cloud-init runs early in boot,
#: but the console of older instance types lags by minutes).
CONSOLE_TIMEOUT = 900.0
POLL = 5.0


class HostKeyError(SwarmforgeError):
    """An instance's host key could not be read, or does not check out."""


def console_host_keys(console: str) -> list[str]:
    """The host keys cloud-init printed (``type base64``), checked against its fingerprints.

    Empty while the console does not hold the block yet. HostKeyError when the
    keys and the fingerprints printed beside them disagree.
    """
    block = _between(console, KEYS_BEGIN, KEYS_END)
    if block is None:
        return []
    keys = [f"{kind} {blob}" for kind, blob in KEY.findall(block)]
    prints = _between(console, PRINTS_BEGIN, PRINTS_END)
    if prints is not None:
        printed = set(FINGERPRINT.findall(prints))
        forged = [key for key in keys if fingerprint(key) not in printed]
        if forged:
            raise HostKeyError("the console's host keys do not match its fingerprints "
                               f"({', '.join(k.split()[0] for k in forged)}): not trusting them")
    return keys


def preferred(keys: Sequence[str]) -> str:
    return min(keys, key=lambda key: PREFERRED.index(key.split()[0]))


def fingerprint(key: str) -> str:
    """OpenSSH's SHA256 fingerprint of a ``type base64`` public key, without padding."""
    try:
        blob = base64.b64decode(key.split()[1], validate=True)
    except (IndexError, binascii.Error):
        return ""
    return base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _between(text: str, begin: str, end: str) -> str | None:
    start = text.rfind(begin)  # the newest boot's block, if the instance rebooted
    if start < 0:
        return None
    stop = text.find(end, start)
    return text[start + len(begin):stop] if stop >= 0 else None


class HostKeyPins:
    """The pinned keys of one cluster's instances (``host_keys.json``) and the known_hosts
    file made from them alone."""

    def __init__(self, ssh_dir: Path) -> None:
        self.path = ssh_dir / "host_keys.json"
        self.known_hosts = ssh_dir / "known_hosts"

    def load(self) -> dict[str, dict[str, Any]]:
        """{instance id: {"name", "key", "addresses"}}."""
        try:
            pins: dict[str, dict[str, Any]] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        return pins

    def key_at(self, address: str) -> str:
        """The pinned key of the node at ``address``; "" if none is pinned there."""
        return next((entry["key"] for entry in self.load().values()
                     if address in entry.get("addresses", ())), "")

    def pin(self, refs: Sequence[NodeRef], read_console: Callable[[str], str],
            say: Callable[[str], None], timeout: float | None = None) -> dict[str, str]:
        """Pin every node of ``refs`` not pinned yet (reading its console), keep only the
        pins of these nodes, rewrite known_hosts; returns {node name: pinned key}."""
        pinned = self.load()  # once: the file holds every node's pin
        pins = {ref.id: entry for ref in refs if (entry := pinned.get(ref.id))}
        for ref in refs:
            if ref.id and ref.id not in pins:
                say(f"reading {ref.name}'s host key from its console ({ref.id})")
                key = self._read(ref, read_console, CONSOLE_TIMEOUT if timeout is None else timeout)
                pins[ref.id] = {"name": ref.name, "key": key}
            if ref.id in pins:  # addresses change with a stop/start: always the current ones
                pins[ref.id]["addresses"] = sorted({ref.ssh_host, ref.private_ip})
        self._save(pins)
        return {entry["name"]: entry["key"] for entry in pins.values()}

    def _read(self, ref: NodeRef, read_console: Callable[[str], str], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            keys = console_host_keys(read_console(ref.id))
            if keys:
                return preferred(keys)
            if time.monotonic() > deadline:
                raise HostKeyError(
                    f"{ref.name} ({ref.id}) printed no SSH host keys to its console within "
                    f"{timeout:.0f} s, so it cannot be verified and gets no join token. Its AMI "
                    "must run cloud-init on first boot (`invoke bake` makes such AMIs); run "
                    "`invoke apply` again to carry on, or `invoke replace-node` for this node.")
            time.sleep(POLL)

    def _save(self, pins: dict[str, dict[str, Any]]) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_private(self.path, json.dumps(pins, indent=2, sort_keys=True) + "\n")
        _write_private(self.known_hosts, "".join(_known_hosts_lines(pins.values())))


def _known_hosts_lines(entries: Iterable[dict[str, Any]]) -> Iterable[str]:
    for entry in entries:
        yield f"{','.join(entry['addresses'])} {entry['key']}\n"


def _write_private(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.replace(partial, path)
