"""departure's majority rule: a manager is demoted only while the managers that stay,
sound, are a majority of them (the scale-in's check before each demotion; Docker's own
refusal comes later, and not for every case: a stopped machine is not a demotion)."""

from __future__ import annotations

import pytest

from swarmforge.departure import check_majority_kept
from swarmforge.errors import QuorumError
from swarmforge.swarm import Node


def manager(index: int, status: str = "reachable") -> Node:
    return Node(id=f"m{index}", hostname=f"prod-manager-{index}", role="manager",
                status="down" if status == "unreachable" else "ready", availability="active",
                manager_status=status, address=f"10.0.0.{index}", engine_version="27.3.1")


def test_five_to_three_to_one_one_at_a_time_keeps_a_majority() -> None:
    nodes = [manager(0, "leader"), *(manager(i) for i in range(1, 5))]
    for going in (4, 3, 2, 1):
        check_majority_kept(nodes, [nodes[going]])
        nodes = nodes[:going]


def test_a_demotion_that_leaves_no_sound_majority_is_refused() -> None:
    nodes = [manager(0, "leader"), manager(1), manager(2, "unreachable")]
    with pytest.raises(QuorumError, match="refusing to demote prod-manager-1: of the 2 "
                                          "manager\\(s\\) that would stay only 1 are sound"):
        check_majority_kept(nodes, [nodes[1]])
    check_majority_kept(nodes, [nodes[2]])  # the dead one may go: 2 of 2 stay sound


def test_the_last_manager_is_never_demoted() -> None:
    with pytest.raises(QuorumError, match="of the 0 manager"):
        check_majority_kept([manager(0, "leader")], [manager(0, "leader")])
