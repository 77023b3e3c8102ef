"""terraform/local and terraform/aws keep one contract (docs/architecture.md, "Two targets, one contract").

The pipeline drives both targets with the same variables and reads the same
outputs, so a variable, resource or output added to one config and not the
other must fail here, not in the middle of an apply.
"""

from __future__ import annotations

import re
from typing import Any

from tests.terraform_config import TERRAFORM, blocks, labelled, locals_of

SHARED_VARIABLES = {
    "cluster_name",
    "swarm_init",
    "swarm_managers",
    "swarm_manager_slots",
    "swarm_workers",
    "swarm_manager_token",
    "swarm_worker_token",
    "swarm_manager_ip",
    "ssh_user",
    "ssh_private_key_path",
    "swarm_host_keys",
}
SECRET_VARIABLES = {"swarm_manager_token", "swarm_worker_token"}
# What only the sandbox needs to create its hosts; everything else is shared.
LOCAL_ONLY_VARIABLES = {"sandbox_dir", "sandbox_network", "ssh_host_ca_public_key_path",
                        "sandbox_image"}
NODE_RESOURCES = {"swarm_manager", "swarm_worker"}
NODE_TYPE = {"local": "null_resource", "aws": "aws_instance"}
OUTPUT_FIELDS = {"name", "private_ip", "ssh_host", "id"}
# What only aws has to say, which the pipeline reads nowhere (README, "Ingress").
AWS_ONLY_OUTPUTS = {"ingress_dns_name"}


def test_the_shared_variables_are_declared_alike() -> None:
    local, aws = _variables("local"), _variables("aws")

    assert set(local) - LOCAL_ONLY_VARIABLES == SHARED_VARIABLES
    assert set(aws) >= SHARED_VARIABLES
    for name in SHARED_VARIABLES:
        assert _declaration(local[name]) == _declaration(aws[name]), name


def test_only_the_tokens_are_sensitive_and_they_default_to_empty() -> None:
    for target in ("local", "aws"):
        variables = _variables(target)
        sensitive = {name for name, body in variables.items() if body.get("sensitive") is True}
        assert sensitive == SECRET_VARIABLES, target
        for name in SECRET_VARIABLES:
            assert variables[name].get("default") == '""', (target, name)


def test_every_variable_is_described_and_typed() -> None:
    for target in ("local", "aws"):
        variables = _variables(target)
        assert set(variables) >= SHARED_VARIABLES, target  # read, not an empty parse
        for name, body in variables.items():
            assert body.get("description"), (target, name)
            assert body.get("type"), (target, name)


def test_nodes_are_the_same_counted_resources() -> None:
    for target, node_type in NODE_TYPE.items():
        resources = _resources(target)
        nodes = {name for (kind, name) in resources if kind == node_type} & (NODE_RESOURCES | {"swarm_join"})
        assert nodes - {"swarm_join"} == NODE_RESOURCES, target
        assert resources[(node_type, "swarm_manager")]["count"] == "${var.swarm_managers}"
        assert resources[(node_type, "swarm_worker")]["count"] == "${var.swarm_workers}"


def test_nodes_carry_no_ssh_step_of_their_own() -> None:
    """A node is only made (sandbox host-up / EC2); what runs on it over SSH is the swarm step."""
    for target, node_type in NODE_TYPE.items():
        for node in NODE_RESOURCES:
            steps = _provisioners(_resources(target)[(node_type, node)])
            assert {kind for kind, _ in steps} <= {"local-exec"}, (target, node)
            assert "connection" not in _resources(target)[(node_type, node)], (target, node)


def test_every_node_joins_through_one_swarm_step() -> None:
    """One join resource per target, over every node by name: init on the first manager
    in phase 1 (swarm_init), join everywhere in phase 2."""
    for target in NODE_TYPE:
        resources = _resources(target)
        steps_of = {name for (kind, name) in resources if kind == "null_resource"
                    and name not in NODE_RESOURCES}
        assert steps_of == {"swarm_join"}, target
        join = resources[("null_resource", "swarm_join")]
        assert join["for_each"] == "${local.join_steps}", target
        phase_steps = "${var.swarm_init ? {(local.bootstrap) = local.nodes[local.bootstrap]} : local.nodes}"
        if target == "local":  # the sandbox's host CA pins every host from the start
            assert _locals(target)["join_steps"] == phase_steps
        else:  # a step waits for its node's pinned host key (tests/test_host_keys.py)
            assert _locals(target)["all_steps"] == phase_steps
            assert "local.all_steps" in _locals(target)["join_steps"]
        assert _locals(target)["bootstrap"] == "${local.manager_names[0]}", target


def test_the_swarm_step_runs_the_same_provisioning_steps() -> None:
    """Upload the node script, then one script writes the join request and runs it.

    That script deletes itself before anything else: Terraform leaves a script that
    failed as it was, and only blanks one that succeeded (issue 17.3)."""
    for target in NODE_TYPE:
        steps = _provisioners(_resources(target)[("null_resource", "swarm_join")])
        creation = [kind for kind, body in steps if body.get("when") != "destroy"]
        # Before these, aws makes the private provisioning dir (the sandbox's host has it).
        assert creation[-2:] == ["file", "remote-exec"], target
        run = _expanded(target, steps[-1][1])
        assert "JoinToken" in run and "umask 077" in run, target
        assert "swarm_manager_token" in run and "swarm_worker_token" in run
        assert "swarm-node.sh join" in run and "swarm-node.sh init" in run, target
        before_token = run[run.index('join("; ", ['):run.index("JoinToken")]
        assert re.search(r'^\["rm -f -- \W+\$0\W+", ', before_token[len('join("; ", '):]), target
        assert "trap " in before_token and "join.json" in _expanded(target, before_token), target


def test_the_swarm_step_follows_the_node_it_runs_on() -> None:
    """Triggered by the node's id: a replaced node joins again, a running one never reruns."""
    for target, node_type in NODE_TYPE.items():
        triggers = _resources(target)[("null_resource", "swarm_join")]["triggers"]
        ids = [value for value in triggers.values() if str(value).endswith(".id}")]
        assert len(ids) == 1, (target, triggers)
        assert f"{node_type}.swarm_manager[each.value.index].id" in ids[0], target
        assert f"{node_type}.swarm_worker[each.value.index].id" in ids[0], target


def test_tokens_are_never_uploaded_with_file_content() -> None:
    # Terraform writes a file provisioner's `content` to a local temp file first.
    for target in NODE_TYPE:
        uploads = [step for body in _resources(target).values()
                   for kind, step in _provisioners(body) if kind == "file"]
        assert uploads, target  # the node script is uploaded: there is something to check
        for step in uploads:
            assert "content" not in step, target
            assert "swarm-node.sh" in _expanded(target, step), target


def test_the_node_script_is_taken_from_next_to_the_config() -> None:
    for target in NODE_TYPE:
        assert _locals(target)["node_script"] == '"${path.module}/scripts/swarm-node.sh"', target


def test_the_outputs_are_the_same() -> None:
    local, aws = _outputs("local"), _outputs("aws")

    assert set(local) == set(aws) - AWS_ONLY_OUTPUTS == {"managers", "workers", "ssh_user", "joined"}
    for target, outputs in (("local", local), ("aws", aws)):
        assert outputs["joined"]["value"] == "${keys(null_resource.swarm_join)}", target
    for name in ("managers", "workers"):
        for target, outputs in (("local", local), ("aws", aws)):
            assert _object_fields(outputs[name]["value"]) == OUTPUT_FIELDS, (target, name)
            # A for expression over the counted resource: never an index that
            # fails while fewer nodes exist (phase 1 has only manager 0).
            assert re.search(r"\[\d+\]", outputs[name]["value"]) is None, (target, name)


# --- reading the configs ------------------------------------------------------------


def _config(target: str) -> dict[str, list[Any]]:
    """All top-level blocks of ``terraform/<target>``, merged over its .tf files."""
    return blocks(TERRAFORM / target)


def _variables(target: str) -> dict[str, dict[str, Any]]:
    return _named(_config(target).get("variable", []))


def _outputs(target: str) -> dict[str, dict[str, Any]]:
    return _named(_config(target).get("output", []))


def _locals(target: str) -> dict[str, Any]:
    return locals_of(TERRAFORM / target)


def _resources(target: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(kind, name): body for address, body in labelled(TERRAFORM / target, "resource").items()
            for kind, name in [address.split(".", 1)]}


def _provisioners(resource: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (_unquote(kind), body)
        for step in resource.get("provisioner", [])
        for kind, body in step.items()
    ]


def _named(blocks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {_unquote(name): body for block in blocks for name, body in block.items()}


def _declaration(variable: dict[str, Any]) -> tuple[Any, ...]:
    """What callers rely on: the type and whether the value is secret."""
    return (variable.get("type"), variable.get("sensitive", False))


def _object_fields(expression: str) -> set[str]:
    """Field names of the object built in a ``[for x in ... : {a = ..., b = ...}]`` output."""
    return set(re.findall(r"[{,]\s*([a-z_]+)\s*=", expression))


def _expanded(target: str, body: Any) -> str:
    """``body`` as text with ``${local.name}`` references replaced by their values."""
    text, values = str(body), _locals(target)
    for _ in range(5):  # locals referring to locals, a few levels deep
        text = re.sub(
            r"\$\{local\.([a-z_]+)\}",
            lambda ref: str(values.get(ref.group(1), ref.group(0))).strip('"'),
            text,
        )
    return text


def _unquote(name: str) -> str:
    # python-hcl2 keeps the quotes of block labels.
    return name.strip('"')
