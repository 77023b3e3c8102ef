"""Python source for the fake `ssh` scripts that stand in for a swarm's managers.

``NODE_LISTING`` prints what swarmforge's NODE_QUERY gets from a manager: the nodes
``nodes`` (a list of (role, index)) as Docker's API lists them, one per line, named
``{prefix}-{role}-{index}``, all ready, the first manager leading, managers at 10.0.0.10+i
and workers at 10.0.0.100+i. A script sets ``nodes`` and ``prefix`` and imports json
first. ``ACTIVE_MANAGER`` answers MANAGER_CHECK: an active manager with quorum.
``block()`` indents either for the branch it goes in.
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

NODE_LISTING = """\
listed = []
for role, i in nodes:
    address = f"10.0.0.{10 + i if role == 'manager' else 100 + i}"
    node = {"ID": f"{role}{i}", "Spec": {"Role": role, "Availability": "active"},
            "Description": {"Hostname": f"{prefix}-{role}-{i}",
                            "Engine": {"EngineVersion": "27.0"}},
            "Status": {"State": "ready", "Addr": address}}
    if role == "manager":
        node["ManagerStatus"] = {"Leader": i == 0, "Reachability": "reachable",
                                 "Addr": address + ":2377"}
    listed.append(json.dumps(node))
print("[" + ",\\n".join(listed) + "]")
"""

ACTIVE_MANAGER = """\
print(json.dumps({"LocalNodeState": "active", "ControlAvailable": True}))
print("quorum")
"""


def block(source: str, indent: str = "    ") -> str:
    """``source`` indented by ``indent``, without its last newline."""
    return textwrap.indent(source, indent).rstrip("\n")


def install_fake_ssh(template: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``template`` (``{python}``, ``{listing}``, ``{active_manager}`` filled in) as the
    `ssh` first on PATH, in ``tmp_path``/bin; that dir."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ssh = bin_dir / "ssh"
    ssh.write_text(template.format(python=sys.executable, listing=block(NODE_LISTING),
                                   active_manager=block(ACTIVE_MANAGER)))
    ssh.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir
