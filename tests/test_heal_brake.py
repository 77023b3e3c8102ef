"""heal's brake: how many unhealthy nodes it replaces without a person looking, and the
refusal past that (the real check on swarm nodes as `docker node ls` describes them; the
sandbox run is tests/test_heal.py)."""

from __future__ import annotations

import pytest

from swarmforge.errors import ConfigError, QuorumError, UnhealthyError
from swarmforge.heal import Diagnosis, PartitionSuspected, Sick, check_brake, limits
from swarmforge.nodes import NodeRef
from swarmforge.picks import Pick, check_replaceable
from swarmforge.settings import Settings, load_settings
from swarmforge.swarm import Node, describe_dead


def down(role: str, index: int) -> Sick:
    name = f"prod-{role}-{index}"
    member = Node(id=f"id{role}{index}", hostname=name, role=role, status="down",
                  availability="active", manager_status="unreachable" if role == "manager" else None,
                  address=f"10.0.0.{index}", engine_version="27.3.1")
    ref = NodeRef(name=name, private_ip=member.address, ssh_host=member.address)
    return Sick(Pick(f"null_resource.swarm_{role}[{index}]", ref, member), describe_dead(member))


def diagnosis(dead_managers: int, dead_workers: int, workers: int) -> Diagnosis:
    sick = [down("manager", i) for i in range(dead_managers)]
    sick += [down("worker", i) for i in range(dead_workers)]
    return Diagnosis(tuple(sick), (), managers=3, workers=workers)


@pytest.mark.parametrize(("workers", "most"), [(0, 1), (1, 1), (3, 1), (5, 1), (6, 2), (10, 3),
                                               (100, 34)])
def test_by_default_a_third_of_the_workers_at_least_one(workers: int, most: int) -> None:
    assert limits(Settings(), workers) == (1, most)


def test_the_limits_are_settings() -> None:
    settings = load_settings({}, {"max_unhealthy_managers": "0", "max_unhealthy_workers": "4"})
    assert limits(settings, 3) == (0, 4)
    with pytest.raises(ConfigError, match="max_unhealthy_workers: -1 is negative"):
        load_settings({}, {"max_unhealthy_workers": "-1"})


def test_within_the_limits_heal_goes_on() -> None:
    check_brake(diagnosis(1, 1, workers=3), Settings())
    check_brake(diagnosis(0, 2, workers=6), Settings())


def test_two_of_three_workers_is_refused_naming_them_and_the_way_on() -> None:
    with pytest.raises(PartitionSuspected) as refused:
        check_brake(diagnosis(0, 2, workers=3), Settings(cluster="prod", target="aws"))
    assert refused.value.exit_code == 5
    assert str(refused.value) == (
        "refusing to heal: 2 of 3 workers unhealthy (worker prod-worker-0 is down, worker "
        "prod-worker-1 is down), more than max_unhealthy_workers 1. So many at once smells of "
        "a network partition rather than dead nodes, and replacing them would double the "
        "cluster once it heals. Check the network and the hosts; if they are truly gone, "
        "raise the limit for one run (`invoke heal --cluster prod --target aws "
        "--max-unhealthy-workers 2 --yes`).")


def test_two_managers_down_is_refused_before_the_workers_are_counted() -> None:
    with pytest.raises(PartitionSuspected, match=r"^refusing to heal: 2 of 3 managers unhealthy "
                       r"\(manager prod-manager-0 is down, manager prod-manager-1 is down\), "
                       r"more than max_unhealthy_managers 1; 2 of 3 workers"):
        check_brake(diagnosis(2, 2, workers=3), Settings(cluster="prod"))
    with pytest.raises(PartitionSuspected, match="--max-unhealthy-managers 2 "
                       "--max-unhealthy-workers 2 --yes"):
        check_brake(diagnosis(2, 2, workers=3), Settings(cluster="prod"))


# -- what lets heal replace two dead nodes where replace-node refuses ---------------------


def up(role: str, index: int, status: str = "reachable") -> Node:
    return Node(id=f"id{role}{index}", hostname=f"prod-{role}-{index}", role=role,
                status="ready", availability="active",
                manager_status=status if role == "manager" else None,
                address=f"10.0.1.{index}", engine_version="27.3.1")


def test_a_dead_worker_is_replaced_beside_another_only_when_heal_replaces_that_one_next() -> None:
    first, second = down("worker", 1), down("worker", 2)
    nodes = [up("manager", 0, "leader"), up("worker", 0), first.pick.member, second.pick.member]
    assert all(n is not None for n in nodes)
    members = [n for n in nodes if n is not None]
    with pytest.raises(UnhealthyError, match="worker prod-worker-2 is down \\(dead, and not "
                                             "this replacement's\\)"):
        check_replaceable([first.pick], members, 1, 3)
    check_replaceable([first.pick], members, 1, 3, tolerate=[second.pick])


def test_a_dead_manager_tolerated_is_never_counted_as_a_sound_one() -> None:
    """3 managers, 2 dead: heal's brake stops it first, and were the limit raised, the quorum
    check still refuses replacing either (the other dead one is no majority's member)."""
    first, second = down("manager", 1), down("manager", 2)
    members = [up("manager", 0, "leader"), up("worker", 0)]
    members += [s.pick.member for s in (first, second) if s.pick.member is not None]
    with pytest.raises(QuorumError, match="of 3 managers only 1 other\\(s\\) are reachable"):
        check_replaceable([first.pick], members, 3, 1, tolerate=[second.pick])
    # One dead manager and one dead worker: the manager goes first, the worker waits.
    worker = down("worker", 1)
    assert worker.pick.member is not None
    members = [up("manager", 0, "leader"), up("manager", 2), first.pick.member,
               up("worker", 0), worker.pick.member]
    check_replaceable([first.pick], members, 3, 2, tolerate=[worker.pick])
