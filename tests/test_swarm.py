"""Parsing what managers say about the swarm, and judging its health (real captured output)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swarmforge.errors import CommandError, SwarmError
from swarmforge.swarm import (
    JoinTokens,
    Node,
    assess,
    describe_dead,
    in_election,
    member_at,
    node_table,
    parse_nodes,
)

DATA = Path(__file__).parent / "data"


def nodes(sample: str):
    return parse_nodes((DATA / sample).read_text())


def test_parses_every_field_of_a_healthy_three_plus_two_swarm() -> None:
    parsed = nodes("node-query-3m2w.json")
    assert [n.hostname for n in parsed] == [
        "dev1-manager-0", "dev1-manager-1", "dev1-manager-2", "dev1-worker-0", "dev1-worker-1"]
    leader = parsed[0]
    assert (leader.role, leader.status, leader.availability, leader.manager_status) == (
        "manager", "ready", "active", "leader")
    assert leader.address == "10.213.156.10"
    assert leader.engine_version == "20.10.24+dfsg1"
    assert [n.manager_status for n in parsed[3:]] == [None, None]
    assert {n.role for n in parsed[3:]} == {"worker"}


def test_a_node_still_joining_is_listed_with_what_there_is_and_is_not_ready() -> None:
    """Until a joining node first reports, the API lists it with an empty description
    (no hostname: what `invoke status` beside an apply met in CI) and an unknown state."""
    listing = json.loads((DATA / "node-query-3m2w.json").read_text())
    listing.append({"ID": "joining0node0id0000000000", "Version": {"Index": 41},
                    "Spec": {"Labels": {}, "Role": "worker", "Availability": "active"},
                    "Description": {"Platform": {}, "Resources": {}, "Engine": {},
                                    "TLSInfo": {}},
                    "Status": {"State": "unknown", "Addr": ""}})

    parsed = parse_nodes(json.dumps(listing))
    joining = next(n for n in parsed if n.id == "joining0node0id0000000000")

    assert (joining.hostname, joining.role, joining.status, joining.address) == (
        "", "worker", "unknown", "")
    assert assess(parsed, managers=3, workers=3).problems == (
        "node joining0node (no hostname yet) is unknown",)


def test_a_node_that_died_before_it_first_reported_is_named_by_its_id() -> None:
    nameless = Node(id="joining0node0id0000000000", hostname="", role="worker", status="down",
                    availability="active", manager_status=None, address="", engine_version="")
    assert describe_dead(nameless) == "worker node joining0node (no hostname yet) is down"


def test_a_healthy_swarm_is_healthy_with_the_counts_it_has() -> None:
    health = assess(nodes("node-query-3m2w.json"), managers=3, workers=2)
    assert health.healthy and health.problems == ()


def test_counts_that_differ_from_the_wanted_ones_are_problems() -> None:
    health = assess(nodes("node-query-3m2w.json"), managers=5, workers=2)
    assert health.problems == ("3 managers (want 5)",)


def test_a_dead_worker_makes_the_swarm_unhealthy_and_says_which() -> None:
    parsed = nodes("node-query-worker-down.json")
    health = assess(parsed, managers=3, workers=2)
    assert "dev1-worker-1 is down" in health.problems
    assert not health.healthy


def test_no_leader_is_a_problem() -> None:
    followers = [n for n in nodes("node-query-3m2w.json") if n.manager_status != "leader"]
    assert "0 leaders (want 1)" in assess(followers, managers=2, workers=2).problems


def test_member_at_prefers_the_ready_entry_over_a_stale_one() -> None:
    parsed = nodes("node-query-worker-down.json")
    assert member_at(parsed, "10.213.156.101").hostname == "dev1-worker-1"  # type: ignore[union-attr]
    assert member_at(parsed, "10.9.9.9") is None


def test_join_tokens_never_show_themselves() -> None:
    manager = "SWMTKN-1-" + "a" * 50 + "-" + "b" * 25
    tokens = JoinTokens(manager=manager, worker=manager.replace("b", "c"))
    assert "SWMTKN" not in repr(tokens) and "SWMTKN" not in f"{tokens}"
    with pytest.raises(SwarmError):
        JoinTokens(manager="Error: not a manager", worker=manager)


def test_node_table_lists_managers_first_with_aligned_columns() -> None:
    table = node_table(list(reversed(nodes("node-query-3m2w.json")))).splitlines()
    assert table[0].split() == ["HOSTNAME", "ROLE", "STATUS", "AVAILABILITY", "MANAGER",
                                "ADDRESS", "ENGINE"]
    assert table[1].startswith("dev1-manager-0") and table[-1].startswith("dev1-worker-1")
    role_column = table[0].index("ROLE")
    assert all(row[role_column:].split()[0] in ("ROLE", "manager", "worker") for row in table)


# Answers seen from Docker 20.10 managers: in a chaos run (the first two), and demoting a
# leader by hand in a sandbox swarm (the rest).
LOST_LEADER = ("Error response from daemon: rpc error: code = Unknown desc = raft: failed to "
               "process the request: node lost leader status")
STOPPED = ("Error response from daemon: rpc error: code = Unknown desc = raft: failed to "
           "process the request: node is stopped")
QUORUM = ("Error response from daemon: rpc error: code = FailedPrecondition desc = can't "
          "remove member from the raft: this would result in a loss of quorum")
NOT_A_MANAGER = ("Error response from daemon: This node is not a swarm manager. Use \"docker "
                 "swarm init\" or \"docker swarm join\" to connect this node to swarm and try "
                 "again.")


@pytest.mark.parametrize("answer", [LOST_LEADER, STOPPED])
def test_an_election_under_way_is_asked_again(answer: str) -> None:
    assert in_election(CommandError("demote m1 on 10.0.0.11", 1, answer))


@pytest.mark.parametrize("answer", [QUORUM, NOT_A_MANAGER, "ssh: connect to host: refused"])
def test_a_refusal_or_another_failure_is_not(answer: str) -> None:
    assert not in_election(CommandError("demote m1 on 10.0.0.11", 1, answer))
