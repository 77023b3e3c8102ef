"""The operator's SSH key as the aws target needs to know it: whether it has a passphrase,
and whether the running ssh-agent holds it.

Terraform's provisioners cannot ask for a passphrase: an encrypted key works only
through the agent (terraform/aws's ssh_use_agent), and our own ssh finds it there
too (BatchMode, the same IdentityFile). Keys are compared by their public half:
``KEY.pub`` when it exists, else the one an OpenSSH-format key carries unencrypted.
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
from pathlib import Path
from typing import NamedTuple

from swarmforge.process import run

OPENSSH_MAGIC = b"openssh-key-v1\0"
#: PEM keys with a passphrase: OpenSSL's traditional header, and PKCS#8.
PEM_ENCRYPTED = ("Proc-Type: 4,ENCRYPTED", "BEGIN ENCRYPTED PRIVATE KEY")
AGENT_TIMEOUT = 30.0


def is_encrypted(path: Path) -> bool:
    """Whether the private key at ``path`` needs a passphrase (OpenSSH or PEM format)."""
    text = path.read_text(errors="replace")
    if any(marker in text for marker in PEM_ENCRYPTED):
        return True
    key = _openssh_key(text)
    return key is not None and key.kdf != b"none"


def public_key(path: Path) -> bytes | None:
    """The key's public half in SSH wire format, or None when it cannot be known
    without the passphrase (a PEM key with no ``.pub`` beside it)."""
    pub = path.with_name(path.name + ".pub")
    if pub.is_file():
        return _blob_of(pub.read_text(errors="replace"))
    key = _openssh_key(path.read_text(errors="replace"))
    return key.public if key else None


def agent_holds(path: Path) -> bool:
    """Whether the ssh-agent at SSH_AUTH_SOCK holds the key at ``path``."""
    wanted = public_key(path)
    if not os.environ.get("SSH_AUTH_SOCK") or wanted is None:
        return False
    try:
        listed = run(["ssh-add", "-L"], timeout=AGENT_TIMEOUT, what="ssh-add -L")
    except OSError:
        return False  # no ssh-add here: no agent we could use
    # Exit 1: the agent holds no key; 2: no agent answers at SSH_AUTH_SOCK.
    return listed.ok and wanted in {_blob_of(line) for line in listed.stdout.splitlines()}


def _blob_of(line: str) -> bytes | None:
    """The wire-format key of an authorized_keys line ("type base64 comment")."""
    parts = line.split()
    if len(parts) < 2:
        return None
    try:
        return base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        return None


class OpensshKey(NamedTuple):
    """What an OpenSSH-format private key shows without its passphrase (PROTOCOL.key)."""

    kdf: bytes  # b"none" unless a passphrase protects the key (then b"bcrypt")
    public: bytes  # the first public key, wire format


def _openssh_key(text: str) -> OpensshKey | None:
    """The unencrypted head of an OpenSSH-format private key; None for any other text."""
    if "BEGIN OPENSSH PRIVATE KEY" not in text:
        return None
    body = "".join(line for line in text.splitlines() if line and not line.startswith("-----"))
    try:
        data = base64.b64decode(body)
    except (binascii.Error, ValueError):
        return None
    if not data.startswith(OPENSSH_MAGIC):
        return None
    try:
        _cipher, offset = _string(data, len(OPENSSH_MAGIC))
        kdf, offset = _string(data, offset)
        _options, offset = _string(data, offset)
        public, _ = _string(data, offset + 4)  # after the uint32 count of keys
    except struct.error:
        return None
    return OpensshKey(kdf, public)


def _string(data: bytes, offset: int) -> tuple[bytes, int]:
    """One SSH wire-format string (uint32 length, bytes) at ``offset``; and the offset after it."""
    (length,) = struct.unpack_from(">I", data, offset)
    end = offset + 4 + length
    if end > len(data):
        raise struct.error("string runs past the end of the key")
    return data[offset + 4:end], end
