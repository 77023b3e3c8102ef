"""terraform/aws's optional parts (issue 20, parts 1-4) read as Terraform's graph walk meets them.

No AWS provider runs here, so each reading of the configuration is a test:
python-hcl2 for the shape and the graph (what each resource waits for), and the
real terraform binary for the variables' validations and for the locals that
decide how many listeners, target groups and attachments there are, evaluated
from the configuration's own expressions with the optional parts off and on.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest
from packaging.specifiers import SpecifierSet

from swarmforge.apply_guards import changes_before_the_swarm
from swarmforge.nodes import follows_a_node
from swarmforge.terraform_output import Plan, PlannedChange
from swarmforge.tools import find_terraform
from tests.terraform_config import TERRAFORM, labelled, locals_of

AWS = TERRAFORM / "aws"
NODES = ("aws_instance.swarm_manager", "aws_instance.swarm_worker")
#: Resources an instance must never wait for: a node is made whatever the NLB,
#: the log group or the file system are doing, and a change to them never touches it.
OPTIONAL_PARTS = ("aws_lb", "aws_lb_listener", "aws_lb_target_group", "aws_lb_target_group_attachment",
                  "aws_cloudwatch_log_group", "aws_efs_file_system", "aws_efs_mount_target",
                  "aws_iam_role_policy", "aws_iam_role_policy_attachment")
NEW_FILES = ("ingress.tf", "iam.tf", "logs.tf", "efs.tf")
INPUT = re.compile(r"\b((?:data\.)?aws_[a-z0-9_]+\.[a-z0-9_]+|null_resource\.[a-z0-9_]+"
                   r"|local\.[a-z0-9_]+|var\.[a-z0-9_]+)")


def resources() -> dict[str, dict[str, Any]]:
    return labelled(AWS, "resource")


def data_sources() -> dict[str, dict[str, Any]]:
    return labelled(AWS, "data")


def inputs(value: Any) -> set[str]:
    """Every variable, local, data source and resource ``value`` takes something from,
    directly or through locals, data sources and other resources."""
    seen: set[str] = set()
    todo = set(INPUT.findall(str(value)))
    while todo:
        ref = todo.pop()
        if ref in seen:
            continue
        seen.add(ref)
        if ref.startswith("local."):
            todo |= set(INPUT.findall(str(locals_of(AWS).get(ref.removeprefix("local."), ""))))
        elif ref.startswith("data.") and ref.removeprefix("data.") in data_sources():
            todo |= set(INPUT.findall(str(data_sources()[ref.removeprefix("data.")])))
        elif ref in resources():
            todo |= set(INPUT.findall(str(resources()[ref])))
    return seen


def text(value: Any) -> str:
    """A string literal as written, without the quotes python-hcl2 keeps."""
    return str(value).strip('"')


def managed(refs: set[str]) -> set[str]:
    return {ref for ref in refs if ref in resources()}


def new_resources() -> dict[str, dict[str, Any]]:
    """The resources of ingress.tf, iam.tf, logs.tf and efs.tf."""
    found = {}
    for name in NEW_FILES:
        with (AWS / name).open() as handle:
            for block in hcl2.load(handle).get("resource", []):
                for kind, named in block.items():
                    for label in named:
                        if not label.startswith("__"):
                            address = f"{kind.strip(chr(34))}.{label.strip(chr(34))}"
                            found[address] = resources()[address]
    return found


# --- the graph ------------------------------------------------------------------------------


@pytest.mark.parametrize("node", NODES)
def test_an_instance_never_waits_for_an_optional_part(node: str) -> None:
    reached = managed(inputs(resources()[node]))

    assert "aws_iam_instance_profile.nodes" in reached  # not vacuous: the walk follows the profile
    waits_for = sorted(ref for ref in reached if ref.split(".")[0] in OPTIONAL_PARTS)
    assert not waits_for, f"{node} waits for {waits_for}"


def test_the_walk_sees_a_node_that_would_wait_for_the_nlb() -> None:
    body = {**resources()["aws_instance.swarm_worker"], "user_data": "${aws_lb.ingress[0].dns_name}"}
    assert "aws_lb.ingress" in managed(inputs(body))


def test_every_count_and_for_each_is_known_at_plan() -> None:
    """From variables, locals and data sources only: an attribute of a resource not yet
    made would be unknown, and Terraform would refuse to plan without -target."""
    checked = 0
    for address, body in new_resources().items():
        for meta in ("count", "for_each"):
            if meta in body:
                checked += 1
                unknown = managed(inputs(body[meta]))
                assert not unknown, f"{address}.{meta} depends on {sorted(unknown)}"
    assert checked >= 12


@pytest.mark.parametrize("role", ["manager", "worker"])
def test_every_node_is_attached_by_its_instance_id(role: str) -> None:
    """target_id is the instance's id, so a replaced node (a new id) is attached anew: its
    attachment is replaced, the old target deregistered before the old instance goes."""
    attachment = resources()["aws_lb_target_group_attachment.ingress"]

    assert f"aws_instance.swarm_{role}[each.value.index].id" in attachment["target_id"]
    assert attachment["for_each"] == "${local.ingress_targets}"
    assert "local.nodes" in locals_of(AWS)["ingress_targets"]  # every manager and worker


def test_each_port_has_a_listener_forwarding_to_its_tcp_checked_group() -> None:
    group = resources()["aws_lb_target_group.ingress"]
    listener = resources()["aws_lb_listener.ingress"]
    check = group["health_check"][0]

    assert text(group["protocol"]) == text(listener["protocol"]) == "TCP"
    assert text(group["target_type"]) == "instance"
    assert text(check["protocol"]) == "TCP" and text(check["port"]) == "traffic-port"
    assert group["lifecycle"][0]["create_before_destroy"] is True and "name" not in group
    assert listener["default_action"][0]["target_group_arn"] == "${aws_lb_target_group.ingress[each.key].arn}"
    assert listener["port"] == group["port"] == "${tonumber(each.key)}"


def test_the_nodes_let_the_nlb_in_and_only_the_nlb_meets_the_clients() -> None:
    from_nlb = resources()["aws_vpc_security_group_ingress_rule.nodes_from_ingress"]
    clients = resources()["aws_vpc_security_group_ingress_rule.ingress_clients"]

    assert from_nlb["security_group_id"] == "${aws_security_group.swarm.id}"
    assert from_nlb["referenced_security_group_id"] == "${aws_security_group.ingress[0].id}"
    assert clients["security_group_id"] == "${aws_security_group.ingress[0].id}"
    assert resources()["aws_lb.ingress"]["security_groups"] == ["${aws_security_group.ingress[0].id}"]


def test_the_swarm_step_waits_for_what_the_node_settings_need() -> None:
    join = resources()["null_resource.swarm_join"]
    waits = set(INPUT.findall(str(join["depends_on"])))

    assert {"aws_efs_mount_target.shared", "aws_vpc_security_group_ingress_rule.efs_from_nodes",
            "aws_iam_role_policy.node_logs", "aws_iam_role_policy_attachment.ecr_read_only"} <= waits
    settings = inputs(locals_of(AWS)["node_settings"])
    assert {"aws_cloudwatch_log_group.containers", "aws_efs_file_system.shared"} <= settings
    assert "local.node_settings" in locals_of(AWS)["run_node"]


def test_the_node_settings_hold_no_secret() -> None:
    """They travel in the step's command line: never a token."""
    settings = inputs(locals_of(AWS)["node_settings"])
    assert not {ref for ref in settings if "token" in ref or "private_key" in ref}, settings
    assert "var.region" in settings  # not vacuous


def test_no_setting_changes_a_running_node() -> None:
    """container_logs and efs apply to nodes made from then on: a change must not rerun every
    node's swarm step (a Docker restart on every node at once)."""
    triggers = resources()["null_resource.swarm_join"]["triggers"]
    assert not {"var.container_logs", "var.efs", "local.node_settings"} & inputs(triggers)


# --- the nodes' IAM role ------------------------------------------------------------------------


def policy_documents() -> dict[str, dict[str, Any]]:
    return {address: body for address, body in data_sources().items()
            if address.startswith("aws_iam_policy_document.")}


def unplain_actions(documents: dict[str, dict[str, Any]]) -> list[str]:
    """Every action of an Allow statement that is not one plain action ("*", "logs:*",
    "logs:Put*"), and every NotAction (which grants all but what it names)."""
    found = []
    for address, body in documents.items():
        for statement in body["statement"]:
            assert text(statement["effect"]) == "Allow", address
            found += [f"{address}: not_actions" for _ in statement.get("not_actions", [])[:1]]
            found += [f"{address}: {action}" for action in map(text, statement.get("actions", []))
                      if not re.fullmatch(r"[a-z0-9-]+:[A-Za-z]+", action)]
    return found


def test_the_node_policies_grant_no_wildcard_action() -> None:
    documents = policy_documents()

    assert set(documents) == {"aws_iam_policy_document.node_assume_role",
                              "aws_iam_policy_document.node_logs"}
    assert unplain_actions(documents) == []


@pytest.mark.parametrize("actions", [['"*"'], ['"logs:*"'], ['"logs:Put*"']])
def test_the_wildcard_check_sees_a_wildcard(actions: list[str]) -> None:
    logs = policy_documents()["aws_iam_policy_document.node_logs"]
    widened = {"doc": {**logs, "statement": [{**logs["statement"][0], "actions": actions}]}}
    assert unplain_actions(widened) == [f"doc: {text(actions[0])}"]


def test_the_log_policy_names_the_cluster_group_only() -> None:
    statement = policy_documents()["aws_iam_policy_document.node_logs"]["statement"][0]

    assert sorted(map(text, statement["actions"])) == ["logs:CreateLogStream", "logs:PutLogEvents"]
    for resource in map(text, statement["resources"]):
        assert resource.startswith("${aws_cloudwatch_log_group.containers[0].arn}"), resource
    assert text(resources()["aws_cloudwatch_log_group.containers"]["name"]) == "${local.log_group_name}"


def test_the_role_gets_aws_ecr_read_only_policy_and_nothing_wider() -> None:
    attachments = {address: body for address, body in resources().items()
                   if address.startswith("aws_iam_role_policy_attachment.")}

    assert list(attachments) == ["aws_iam_role_policy_attachment.ecr_read_only"]
    assert locals_of(AWS)["ecr_read_only"] == (
        '"arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly"')


@pytest.mark.parametrize("node", NODES)
def test_an_operator_profile_replaces_ours(node: str) -> None:
    assert resources()[node]["iam_instance_profile"] == "${local.node_profile}"
    profile = locals_of(AWS)["node_profile"]
    assert "var.iam_instance_profile" in profile and "aws_iam_instance_profile.nodes[0].name" in profile
    for ours in ("aws_iam_role.nodes", "aws_iam_instance_profile.nodes",
                 "aws_iam_role_policy_attachment.ecr_read_only"):
        assert resources()[ours]["count"] == "${local.create_node_role ? 1 : 0}", ours
    assert locals_of(AWS)["create_node_role"] == "${var.iam_instance_profile == null}"


# --- Terraform itself: the validations, and the counts off and on ------------------------------


def terraform() -> str:
    binary, _ = find_terraform(None, SpecifierSet(">=1.0"), "terraform/")
    return binary


REQUIRED = ["cluster_name=demo", "ssh_private_key_path=/dev/null", "swarm_ami_id=ami-0123456789abcdef0",
            "key_name=swarm", 'allowed_ssh_cidrs=["203.0.113.7/32"]']
ALL_ON = ["container_logs=cloudwatch", "log_retention_days=365", "efs=true",
          "log_kms_key_id=arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab",
          "efs_kms_key_id=arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab",
          'public_ports=[{port=80},{port=443,cidr_blocks=["198.51.100.0/24","203.0.113.0/24"]},'
          '{port=53,protocol="udp"}]']
#: The locals that decide the ingress resources' counts, evaluated from the config's own text.
INGRESS_LOCALS = ("public_ports", "manager_slots", "manager_names", "worker_names", "nodes",
                  "ingress_ports", "ingress", "ingress_clients", "ingress_targets")


def run_terraform(folder: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([terraform(), *args], cwd=folder, input=stdin, capture_output=True,
                          text=True, timeout=60, check=False,
                          env={**os.environ, "CHECKPOINT_DISABLE": "1", "TF_CLI_CONFIG_FILE": os.devnull})


@pytest.mark.parametrize(("override", "complaint"), [
    ([], None),
    (ALL_ON, None),
    (["ingress_nlb=false", "public_ports=[{port=80}]"], None),
    (["published_ports=[80,8080]", 'allowed_ingress_cidrs=["198.51.100.0/24"]'], None),
    (["published_ports=[2377]"], "not 22 (see allowed_ssh_cidrs) or the swarm's internal ports"),
    (["published_ports=[70000]"], "must be a port from 1 to 65535"),
    (['allowed_ingress_cidrs=["everyone"]'], "must be one or more IPv4 CIDRs"),
    (["allowed_ingress_cidrs=[]"], "must be one or more IPv4 CIDRs"),
    (["container_logs=syslog"], 'must be "local" or "cloudwatch"'),
    (["container_logs=cloudwatch", "log_retention_days=10"], "must be one of CloudWatch's values"),
    (["log_kms_key_id=arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab"],
     'set container_logs = "cloudwatch" too'),
    (["container_logs=cloudwatch", "log_kms_key_id=alias/logs"], "must be null or a KMS key ARN"),
    (['efs_subnet_ids=["subnet-0123456789abcdef0"]'], "set efs = true and vpc_id too"),
    (["efs=true", 'efs_subnet_ids=["subnet-0123456789abcdef0"]'], "set efs = true and vpc_id too"),
    (["efs=true", "vpc_id=vpc-0123456789abcdef0", 'subnet_ids=["subnet-0123456789abcdef0"]',
      'efs_subnet_ids=["subnet-0123456789abcdef1"]'], None),
    (["efs=true", 'efs_subnet_ids=["subnet-x"]'], "must be a subnet id"),
    (["efs_kms_key_id=arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab"], "set efs = true too"),
])
def test_the_option_variables_refuse_what_cannot_work(tmp_path: Path, override: list[str],
                                                     complaint: str | None) -> None:
    shutil.copy(AWS / "variables.tf", tmp_path)

    plan = run_terraform(tmp_path, "plan", "-input=false", "-no-color",
                         *[f"-var={value}" for value in [*REQUIRED, *override]])

    if complaint is None:
        assert plan.returncode == 0, plan.stdout + plan.stderr
    else:
        assert plan.returncode != 0
        assert complaint in " ".join(plan.stderr.replace("│", " ").split())


def evaluate(tmp_path: Path, variables: list[str], expression: str) -> Any:
    """``expression`` in a module of terraform/aws's variables.tf and INGRESS_LOCALS as written."""
    shutil.copy(AWS / "variables.tf", tmp_path)
    written = locals_of(AWS)
    (tmp_path / "locals.tf").write_text("locals {\n" + "".join(
        f"  {name} = {written[name].removeprefix('${').removesuffix('}')}\n"
        for name in INGRESS_LOCALS) + "}\n")
    shown = run_terraform(tmp_path, "console", *[f"-var={v}" for v in [*REQUIRED, *variables]],
                          stdin=f"jsonencode({expression})\n")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    return json.loads(json.loads(shown.stdout))


def test_no_tcp_port_means_no_load_balancer(tmp_path: Path) -> None:
    found = evaluate(tmp_path, ['public_ports=[{port=53,protocol="udp"}]'],
                     "[local.ingress, local.ingress_targets, local.ingress_clients]")
    assert found == [False, {}, {}]


def test_ingress_off_leaves_the_ports_to_the_nodes_alone(tmp_path: Path) -> None:
    found = evaluate(tmp_path, ["ingress_nlb=false", "public_ports=[{port=80}]"],
                     "[local.ingress, local.ingress_ports]")
    assert found == [False, []]


def test_every_node_is_a_target_of_every_tcp_port(tmp_path: Path) -> None:
    found = evaluate(tmp_path, [*ALL_ON, "swarm_managers=3", "swarm_manager_slots=[0,9,2]",
                                "swarm_workers=2"],
                     "[local.ingress_ports, local.ingress_targets, keys(local.ingress_clients)]")
    ports, targets, clients = found

    assert ports == ["443", "80"]  # tcp only: the udp port stays on the nodes' own rules
    assert set(targets) == {f"{port}/demo-{node}" for port in ports
                            for node in ("manager-0", "manager-9", "manager-2", "worker-0", "worker-1")}
    assert targets["80/demo-manager-9"] == {"role": "manager", "index": 1, "port": "80"}
    assert targets["443/demo-worker-1"] == {"role": "worker", "index": 1, "port": "443"}
    assert sorted(clients) == ["443-198.51.100.0/24", "443-203.0.113.0/24", "80-0.0.0.0/0"]


def test_published_ports_are_tcp_ports_open_to_the_allowed_ingress_cidrs(tmp_path: Path) -> None:
    found = evaluate(tmp_path, ["published_ports=[8080,80]",
                                'allowed_ingress_cidrs=["198.51.100.0/24","203.0.113.0/24"]',
                                'public_ports=[{port=443},{port=53,protocol="udp"}]'],
                     "[local.ingress_ports, keys(local.ingress_clients)]")
    ports, clients = found

    assert ports == ["443", "80", "8080"]  # both lists add up; udp stays on the nodes' rules
    assert sorted(clients) == ["443-0.0.0.0/0", "80-198.51.100.0/24", "80-203.0.113.0/24",
                               "8080-198.51.100.0/24", "8080-203.0.113.0/24"]


# --- the pipeline's two applies: the network first, then what needs the swarm -------------------


def test_an_attachment_waits_for_the_swarm_apply_with_its_node() -> None:
    """A -target of an attachment would make its node in the network's own apply (a target
    brings its dependencies along): attachments go with the nodes (swarmforge/nodes.py)."""
    attach = 'aws_lb_target_group_attachment.ingress["443/demo-worker-2"]'
    plan = Plan((PlannedChange("aws_instance.swarm_worker[2]", "create"),
                 PlannedChange(attach, "create"),
                 PlannedChange('aws_lb_listener.ingress["443"]', "create"),
                 PlannedChange('aws_vpc_security_group_ingress_rule.nodes_from_ingress["443"]', "create")))

    assert changes_before_the_swarm(plan) == ['aws_lb_listener.ingress["443"]',
                                              'aws_vpc_security_group_ingress_rule.nodes_from_ingress["443"]']
    assert attach in [c.address for c in plan.swarm_changes()]


def test_every_resource_that_references_a_node_follows_it() -> None:
    followers = [address for address, body in resources().items()
                 if address not in (*NODES, "null_resource.swarm_join")
                 and managed(inputs(body)) & set(NODES)]

    assert followers == ["aws_lb_target_group_attachment.ingress"]
    assert all(follows_a_node(f"{address}[0]") for address in followers)
