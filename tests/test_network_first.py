"""A change of the network on a running cluster (issue 16, point 1): a new allowed_ssh_cidrs,
public_ports or worker_public_ip changes security-group rules, never a node.

Phase 2 plans without the join tokens, refuses only node removals, applies the
network's changes first (``-target``) and reaches the swarm for the tokens only if
nodes or their swarm steps change, so an operator whose own address changed is let
in by the very apply that needs SSH. Three layers of proof: plans shaped as
`terraform plan -json` prints them; terraform/aws read with python-hcl2 (a target
pulls in its dependencies, never its dependents, and nothing of the network depends
on a node); and the real Cluster.apply with a real Terraform on a stand-in of
null_resources (tests/data/network_first), whose `ssh` is a fake swarm that logs
what it was asked.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from swarmforge.apply_guards import changes_before_the_swarm, refuse_removals
from swarmforge.cluster import Cluster
from swarmforge.errors import QuorumError
from swarmforge.node_facts import NodeFacts
from swarmforge.nodes import NodeRef, follows_a_node, is_node, join_step_of
from swarmforge.progress import Progress
from swarmforge.settings import load_settings
from swarmforge.ssh import SshProfile
from swarmforge.targets.local.target import LocalTarget
from swarmforge.terraform_output import Plan, planned_changes
from swarmforge.tools import MIRRORED, PROVIDER_MIRROR
from tests.conftest import unique_cluster
from tests.fake_swarm import install_fake_ssh
from tests.terraform_config import TERRAFORM, blocks, labelled, locals_of

STAND_IN = Path(__file__).resolve().parent / "data" / "network_first"
SSH_RULE = 'aws_vpc_security_group_ingress_rule.ssh["{}"]'


# --- plans, as `terraform plan -json` prints them ------------------------------------------


def planned(address: str, action: str, reason: str | None = None) -> str:
    """One ``planned_change`` line, shaped as Terraform 1.11 prints it."""
    kind, rest = address.split(".", 1)
    name, _, key = rest.partition("[")
    change: dict[str, Any] = {
        "resource": {"addr": address, "module": "", "resource": address,
                     "implied_provider": kind.split("_")[0], "resource_type": kind,
                     "resource_name": name, "resource_key": key.rstrip("]").strip('"') or None},
        "action": action}
    if reason:
        change["reason"] = reason
    return json.dumps({"@level": "info", "@message": f"{address}: Plan to {action}",
                       "@module": "terraform.ui", "@timestamp": "2026-12-05T19:32:53.228833Z",
                       "change": change, "type": "planned_change"})


def plan_of(*lines: str) -> Plan:
    summary = json.dumps({"@level": "info", "type": "change_summary", "changes": {}})
    return Plan(tuple(planned_changes("\n".join([*lines, summary]))))


NEW_SSH_CIDR = [
    planned(SSH_RULE.format("198.51.100.0/24"), "create"),
    planned(SSH_RULE.format("203.0.113.7/32"), "delete", "delete_because_each_key"),
    planned('aws_vpc_security_group_ingress_rule.public["tcp-443-0.0.0.0/0"]', "replace"),
    planned('aws_vpc_security_group_ingress_rule.swarm["ssh"]', "create"),
]


def test_security_group_rules_that_go_are_not_node_removals() -> None:
    plan = plan_of(*NEW_SSH_CIDR)

    refuse_removals(plan, [])  # deletes and replaces of rules: no refusal
    assert [c.action for c in plan.removals()] == ["delete", "replace"]  # they were there
    with pytest.raises(QuorumError, match=r"aws_instance\.swarm_worker\[1\] \(replace\)"):
        refuse_removals(plan_of(*NEW_SSH_CIDR, planned("aws_instance.swarm_worker[1]", "replace")),
                        [])


def test_a_network_only_plan_is_applied_whole_before_the_swarm() -> None:
    plan = plan_of(*NEW_SSH_CIDR, planned("data.aws_subnets.default[0]", "read"))

    assert plan.swarm_changes() == []
    # Every change but the data source, which Terraform reads for what needs it.
    assert changes_before_the_swarm(plan) == [c.address for c in plan.changes[:4]]


def test_with_nodes_changing_only_what_is_created_or_updated_goes_first() -> None:
    """A replaced or deleted object may still be held by a node (a security group by its
    instances): it goes in the full apply, which orders the two."""
    plan = plan_of(*NEW_SSH_CIDR, planned("aws_security_group.swarm", "update"),
                   planned("aws_instance.swarm_worker[2]", "create"),
                   planned('null_resource.swarm_join["c-worker-2"]', "create"),
                   planned('null_resource.swarm_join["c-worker-0"]', "replace", "tainted"))

    assert [c.address for c in plan.swarm_changes()] == [
        "aws_instance.swarm_worker[2]", 'null_resource.swarm_join["c-worker-2"]',
        'null_resource.swarm_join["c-worker-0"]']
    assert changes_before_the_swarm(plan) == [
        SSH_RULE.format("198.51.100.0/24"), 'aws_vpc_security_group_ingress_rule.swarm["ssh"]',
        "aws_security_group.swarm"]


# --- terraform/aws, as python-hcl2 reads it ------------------------------------------------

AWS = TERRAFORM / "aws"
NODES = ("aws_instance.swarm_manager", "aws_instance.swarm_worker", "null_resource.swarm_join")
REFERENCE = re.compile(r"\b((?:data\.)?[a-z0-9]+_[a-z0-9_]+\.[a-z0-9_]+|local\.[a-z0-9_]+"
                       r"|var\.[a-z0-9_]+)")
SECRETS = {"var.swarm_manager_token", "var.swarm_worker_token", "var.swarm_manager_ip"}


def _inputs(value: Any, folder: Path, *, planned_only: bool = False) -> set[str]:
    """Everything ``value`` takes from, through locals, resources and data sources: what
    Terraform orders it after. ``planned_only``: through what a resource's plan is made of,
    without its provisioners and connection (they run, they plan nothing)."""
    resources = {**labelled(folder, "resource"),
                 **{f"data.{k}": v for k, v in labelled(folder, "data").items()}}
    if planned_only:
        resources = {address: _planned_part(body) for address, body in resources.items()}
    local_values = locals_of(folder)
    seen: set[str] = set()
    todo = set(REFERENCE.findall(str(value)))
    while todo:
        ref = todo.pop()
        if ref in seen:
            continue
        seen.add(ref)
        if ref.startswith("local."):
            todo |= set(REFERENCE.findall(str(local_values.get(ref.removeprefix("local."), ""))))
        elif ref in resources:
            todo |= set(REFERENCE.findall(str(resources[ref])))
    return seen


def test_nothing_of_the_network_depends_on_a_node_or_a_swarm_step() -> None:
    """So a ``-target`` of network addresses, which brings their dependencies along and
    never their dependents, changes no node and runs no swarm step."""
    support = {address: body for address, body in labelled(AWS, "resource").items()
               if address not in NODES and not follows_a_node(f"{address}[0]")}

    assert {"aws_security_group.swarm", "aws_vpc_security_group_ingress_rule.ssh",
            "aws_nat_gateway.workers"} <= set(support)  # not vacuous
    for address, body in support.items():
        reached = _inputs(body, AWS) & set(NODES)
        assert not reached, f"{address} depends on {', '.join(sorted(reached))}"


def test_the_dependency_walk_sees_a_node_directly_and_through_a_step() -> None:
    rule = labelled(AWS, "resource")["aws_vpc_security_group_ingress_rule.ssh"]

    assert "aws_instance.swarm_worker" in _inputs(
        {**rule, "description": "${aws_instance.swarm_worker[0].id}"}, AWS)
    # The swarm step's triggers name the instances: the walk goes on through them.
    assert "aws_instance.swarm_manager" in _inputs(
        {**rule, "depends_on": ["${null_resource.swarm_join}"]}, AWS)


@pytest.mark.parametrize("target", ["aws", "local"])
def test_the_tokens_feed_provisioners_only(target: str) -> None:
    """The tokens and the manager's address reach no trigger, no argument and no output: a
    plan without them (TF_VAR_* unset, the defaults "") plans the same actions."""
    folder = TERRAFORM / target
    for address, body in labelled(folder, "resource").items():
        assert not _inputs(_planned_part(body), folder, planned_only=True) & SECRETS, address
    outputs = blocks(folder).get("output", [])
    assert outputs and not _inputs(outputs, folder, planned_only=True) & SECRETS
    join = labelled(folder, "resource")["null_resource.swarm_join"]
    assert _inputs(join["provisioner"], folder) >= SECRETS  # used, where it is safe
    variables = {name.strip('"'): body for block in blocks(folder)["variable"]
                 for name, body in block.items() if not name.startswith("__")}
    for name in SECRETS:
        assert variables[name.removeprefix("var.")].get("default") == '""', name


def _planned_part(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ("provisioner", "connection")}


# --- the real apply, on a stand-in of null_resources ---------------------------------------

FAKE_SSH = """#!{python}
# A fake `ssh` that is a swarm of FAKE_SWARM managers,workers: it answers the commands
# swarmforge's Swarm sends and logs what it was asked (never a token) to FAKE_SWARM_LOG.
import json, os, sys

command = sys.argv[-1]
cluster = os.environ["FAKE_SWARM_CLUSTER"]
managers, workers = (int(n) for n in os.environ["FAKE_SWARM"].split(","))


def log(line):
    with open(os.environ["FAKE_SWARM_LOG"], "a") as out:
        out.write("ssh: " + line + "\\n")


if "join-token --rotate" in command:
    log("rotate the tokens")
elif "join-token -q manager" in command:
    log("read the tokens")
    print("SWMTKN-1-" + "m" * 50 + "-" + "a" * 25)
    print("SWMTKN-1-" + "m" * 50 + "-" + "b" * 25)
elif "http://docker/nodes" in command:
    log("list the nodes")
    nodes = [("manager", i) for i in range(managers)] + [("worker", i) for i in range(workers)]
    prefix = cluster
{listing}
elif command == "true":
    log("open a connection")
elif "docker info" in command:
    log("is it an active manager")
{active_manager}
else:
    log("unexpected: " + command)
    sys.exit(1)
"""


class StandInTarget:
    """The Target protocol over tests/data/network_first: its nodes are null_resources.
    What it does not say itself (where the lock and journal live, say) is the local
    target's, which keeps such things as files in the cluster's dir."""

    name = "stand-in"
    config_dir = STAND_IN
    resource_type = "null_resource"
    mirrored_providers = MIRRORED
    login_user = "swarm"

    def __init__(self, cluster: str, home: Path, order_log: Path) -> None:
        self.cluster, self.home, self.order_log = cluster, home, order_log
        self.cidrs = ["203.0.113.7/32"]
        self.local: LocalTarget | None = None  # set for each apply, with its settings

    def __getattr__(self, name: str) -> Any:
        return getattr(self.local, name)

    def prepare(self, *, destroying: bool = False) -> SshProfile:
        return SshProfile(name=self.cluster, user=self.login_user, identity=self.home / "id",
                          known_hosts=self.home / "known_hosts", config=self.home / "ssh_config")

    def variables(self, *, destroying: bool = False) -> dict[str, str]:
        return {"cluster_name": self.cluster, "allowed_ssh_cidrs": json.dumps(self.cidrs),
                "order_log": str(self.order_log)}

    def exists(self) -> bool:
        return True

    def teardown(self) -> None:
        pass

    def pin_host_keys(self, refs: list[NodeRef], say: Any) -> dict[str, str]:
        return {}

    def node_facts(self, refs: list[NodeRef]) -> dict[str, NodeFacts]:
        return {}

    def ssh_host_ahead(self, role: str, slot: int) -> str | None:
        return f"10.0.0.{10 + slot}" if role == "manager" else f"10.0.0.{100 + slot}"

    def describe_image(self) -> str:
        return "none (a stand-in)"

    def desired_image(self) -> str | None:
        return None


class StandIn:
    """A cluster of the stand-in target, its fake swarm and what both logged."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.name = unique_cluster("netfirst")
        self.order_log = tmp_path / "order.log"
        self.target = StandInTarget(self.name, tmp_path, self.order_log)
        self.state_dir = tmp_path / "state"
        install_fake_ssh(FAKE_SSH, tmp_path, monkeypatch)
        monkeypatch.setenv("FAKE_SWARM_LOG", str(self.order_log))
        monkeypatch.setenv("FAKE_SWARM_CLUSTER", self.name)
        self.monkeypatch = monkeypatch

    def apply(self, managers: int, workers: int) -> list[str]:
        """``Cluster.apply`` with these counts; the lines logged during it, in order."""
        self.monkeypatch.setenv("FAKE_SWARM", f"{managers},{workers}")
        self.order_log.write_text("")
        settings = load_settings({"target": "local", "cluster": self.name,
                                  "state_dir": str(self.state_dir), "managers": managers,
                                  "workers": workers, "health_timeout": 30}, {})
        self.target.local = LocalTarget(settings)
        Cluster(settings, Progress(), target=self.target).apply()  # type: ignore[arg-type]
        return self.order_log.read_text().splitlines()

    def terraform_runs(self) -> list[str]:
        log = self.state_dir / self.name / "terraform.log"
        return [line.split()[2] + (" -target" if "-target=" in line else "")
                for line in log.read_text().splitlines() if line.startswith("$ ")]


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StandIn:
    if not PROVIDER_MIRROR.exists():
        pytest.skip(f"no provider mirror at {PROVIDER_MIRROR} (run scripts/setup-host.sh)")
    cluster = StandIn(tmp_path, monkeypatch)
    formed = cluster.apply(1, 1)
    # The stand-in forms as the real targets do: phase 1 inits, phase 2 joins with a token.
    assert formed.index(f"step: {cluster.name}-manager-0 init without a token") \
        < formed.index("ssh: read the tokens") \
        < formed.index(f"step: {cluster.name}-worker-0 join with a token")
    return cluster


def test_a_network_change_is_applied_before_the_swarm_is_reached_and_no_token_is_read(
        stand_in: StandIn) -> None:
    runs_before = len(stand_in.terraform_runs())
    stand_in.target.cidrs = ["198.51.100.0/24"]  # the operator's address changed

    logged = stand_in.apply(1, 1)

    ssh = [i for i, line in enumerate(logged) if line.startswith("ssh: ")]
    network = [i for i, line in enumerate(logged) if line.startswith("network: ")]
    assert sorted(logged[i] for i in network) == ["network: close 203.0.113.7/32",
                                                   "network: open 198.51.100.0/24"]
    assert ssh and max(network) < min(ssh)  # health and rotation come after the rules
    assert "ssh: read the tokens" not in logged
    assert not [line for line in logged if line.startswith(("node: ", "step: "))]
    # One plan, without the tokens, then the network alone (no init: the workspace is as
    # the last run initialised it).
    assert stand_in.terraform_runs()[runs_before:] == ["plan", "apply -target"]


def test_network_and_node_changes_open_the_new_rule_before_the_tokens_are_read(
        stand_in: StandIn) -> None:
    name = stand_in.name
    stand_in.target.cidrs = ["198.51.100.0/24"]

    logged = stand_in.apply(1, 2)

    order = [logged.index(line) for line in (
        "network: open 198.51.100.0/24",  # first: the operator can reach the nodes again
        "ssh: read the tokens",
        f"node: {name}-worker-1",
        f"step: {name}-worker-1 join with a token")]
    assert order == sorted(order), logged
    # The old rule goes in the full apply (a removal waits while nodes change).
    assert logged.index("network: close 203.0.113.7/32") > logged.index("ssh: read the tokens")
    assert f"node: {name}-worker-0" not in logged  # running nodes are never touched


def test_a_converged_cluster_is_planned_once_without_reaching_for_the_tokens(
        stand_in: StandIn) -> None:
    runs_before = len(stand_in.terraform_runs())

    logged = stand_in.apply(1, 1)

    assert stand_in.terraform_runs()[runs_before:] == ["plan"]
    assert "ssh: read the tokens" not in logged


def test_the_stand_in_names_nodes_and_steps_as_the_real_configs_do() -> None:
    resources = labelled(STAND_IN, "resource")
    assert {a for a in resources if is_node(a + "[0]")} == {"null_resource.swarm_manager",
                                                           "null_resource.swarm_worker"}
    assert join_step_of('null_resource.swarm_join["x"]') == "x"
    assert resources["null_resource.swarm_join"]["depends_on"] == ["${null_resource.ssh_rule}"]
