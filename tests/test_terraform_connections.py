"""How Terraform's provisioners reach the nodes (issue 16, points 10 and 11), read with
python-hcl2: `agent` said in every connection, scripts never in /tmp, and the first
manager's `swarm init` given the overlay pool.

Terraform merges a provisioner's `connection` block over its resource's (a
provisioner that names only `script_path` keeps the resource's host, keys and
bastion); ``_effective`` reads them the same way.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.terraform_config import TERRAFORM, labelled, locals_of

TARGETS = ("local", "aws")


def _join_step(target: str) -> dict[str, Any]:
    return labelled(TERRAFORM / target, "resource")["null_resource.swarm_join"]


def _remote_execs(target: str) -> list[dict[str, Any]]:
    return [body for step in _join_step(target)["provisioner"] for kind, body in step.items()
            if kind.strip('"') == "remote-exec"]


def _effective(target: str, step: dict[str, Any]) -> dict[str, Any]:
    """A provisioner's connection: the resource's, with the provisioner's own block over it."""
    merged = dict(_join_step(target)["connection"][0])
    for block in step.get("connection", []):
        merged.update(block)
    return merged


def _expanded(target: str, text: str) -> str:
    """``text`` with ``${local.name}`` replaced by its value (python-hcl2 keeps the quotes
    of a string: they go), a few levels deep."""
    values = _locals(target)
    for _ in range(5):
        text = re.sub(r"\$\{local\.([a-z_]+)\}",
                      lambda ref: str(values.get(ref.group(1), ref.group(0))).strip('"'), text)
    return text.strip('"')


def _locals(target: str) -> dict[str, Any]:
    return locals_of(TERRAFORM / target)


@pytest.mark.parametrize("target", TARGETS)
def test_every_connection_says_whether_the_agent_is_used(target: str) -> None:
    """Never Terraform's default (the agent whenever SSH_AUTH_SOCK is set)."""
    connection = _join_step(target)["connection"][0]

    assert "agent" in connection
    assert _remote_execs(target), target  # else the loop below checks nothing
    for step in _remote_execs(target):
        assert "agent" in _effective(target, step)


def test_aws_uses_the_agent_only_for_a_key_it_holds_and_then_no_key_file() -> None:
    connection = _join_step("aws")["connection"][0]

    assert connection["agent"] == "${var.ssh_use_agent}"
    assert connection["private_key"] == connection["bastion_private_key"] == "${local.connection_key}"
    assert _locals("aws")["connection_key"] == "${var.ssh_use_agent ? null : local.private_key}"
    assert _locals("aws")["private_key"] == "${file(var.ssh_private_key_path)}"


def test_the_sandbox_never_uses_an_agent() -> None:
    assert _join_step("local")["connection"][0]["agent"] is False


@pytest.mark.parametrize("target", TARGETS)
def test_no_provisioner_script_goes_to_tmp(target: str) -> None:
    """/tmp may be mounted noexec; each script gets its own name (%RAND%)."""
    assert _remote_execs(target), target  # else the loop below checks nothing
    for step in _remote_execs(target):
        path = _expanded(target, _effective(target, step)["script_path"])
        assert "%RAND%" in path and "/tmp" not in path, path


def test_on_aws_every_script_lives_under_the_login_users_home() -> None:
    home = _expanded("aws", "${local.home_dir}")
    steps = _remote_execs("aws")

    paths = [_expanded("aws", _effective("aws", step)["script_path"]) for step in steps]

    assert all(path.startswith(f"{home}/") for path in paths), paths
    # The step that makes the private directory cannot put its script there; every later
    # one (the join request holds a token) does.
    private = _expanded("aws", "${local.provision_dir}/")
    assert inline_of(steps[0]) == ["${local.make_dir}"] and not paths[0].startswith(private)
    assert all(path.startswith(private) for path in paths[1:]), paths


def test_a_provisioner_overrides_its_script_path_only() -> None:
    """No second copy of the connection to drift from the first."""
    blocks = [block for step in _remote_execs("aws") for block in step.get("connection", [])]
    assert blocks  # aws's steps do override their script path: each override is checked
    for block in blocks:
        assert set(block) - {"__is_block__"} == {"script_path"}


def inline_of(step: dict[str, Any]) -> list[str]:
    inline: list[str] = step["inline"]
    return inline


def test_the_first_manager_makes_the_swarm_with_the_overlay_pool() -> None:
    run = " ".join(inline_of(_remote_execs("aws")[-1]))

    assert "init ${self.triggers.private_ip} ${var.swarm_default_addr_pool}" in run
    assert "trimspace(" in run  # an empty pool passes no argument: Docker's default


def test_the_sandbox_keeps_dockers_default_pool() -> None:
    run = " ".join(inline_of(_remote_execs("local")[-1]))

    assert re.search(r"swarm-node\.sh init \$\{self\.triggers\.address\}\"? ", run + " ")
    assert "addr_pool" not in run
