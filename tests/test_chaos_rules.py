"""The rules that let a dead manager be replaced in the middle of another operation.

Node listings are real captured output (tests/data): a 3+1 sandbox swarm whose
manager-2 had its dockerd killed (raft calls it unreachable while Docker still says
Ready), and a 3+2 one with a worker Down. The sandbox runs are in tests/test_chaos.py.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from swarmforge.cluster import Cluster
from swarmforge.errors import QuorumError, UnhealthyError
from swarmforge.nodes import NodeRef
from swarmforge.operation import NodeEntry, ReplacementRecord, RollRecord, restored
from swarmforge.picks import check_replaceable, find_node
from swarmforge.progress import Progress
from swarmforge.replace_node import _without
from swarmforge.replacement import Replacement
from swarmforge.settings import Settings
from swarmforge.swarm import DeadNodeError, dead_nodes, parse_nodes

DATA = Path(__file__).parent / "data"
SETTINGS = Settings(cluster="dev1", target="local")
FIX = "`invoke replace-node dev1-manager-2 --cluster dev1 --target local --yes`"


def nodes(sample: str):
    return parse_nodes((DATA / sample).read_text())


MANAGERS = [NodeRef(f"dev1-manager-{slot}", f"10.213.206.{10 + slot}", f"10.213.206.{10 + slot}")
            for slot in (2, 8, 9)]
WORKERS = [NodeRef("dev1-worker-0", "10.213.206.100", "10.213.206.100")]


def pick(query: str):
    return find_node(query, "null_resource", MANAGERS, WORKERS, nodes("node-query-manager-unreachable.json"))


def test_a_manager_raft_cannot_reach_is_dead_though_docker_says_ready() -> None:
    dead = dead_nodes(nodes("node-query-manager-unreachable.json"))
    assert [(n.hostname, n.status) for n in dead] == [("dev1-manager-2", "ready")]
    assert str(DeadNodeError(dead)) == ("manager dev1-manager-2 is unreachable: "
                                        "waiting cannot make the swarm healthy")


def test_a_down_worker_is_dead_and_a_healthy_swarm_has_no_dead_node() -> None:
    assert [n.hostname for n in dead_nodes(nodes("node-query-worker-down.json"))] == ["dev1-worker-1"]
    assert dead_nodes(nodes("node-query-3m2w.json")) == []


def test_another_manager_is_not_replaced_and_the_refusal_names_the_fix() -> None:
    listed = nodes("node-query-manager-unreachable.json")
    with pytest.raises(QuorumError) as refused:
        check_replaceable([pick("dev1-manager-8")], listed, 3, 1, SETTINGS)
    assert "only 1 other(s) are reachable, not a majority" in str(refused.value)
    assert FIX in str(refused.value)


def test_the_worker_is_not_replaced_while_a_manager_is_dead_and_the_refusal_names_it() -> None:
    listed = nodes("node-query-manager-unreachable.json")
    with pytest.raises(UnhealthyError) as refused:
        check_replaceable([pick("dev1-worker-0")], listed, 3, 1, SETTINGS)
    assert "manager dev1-manager-2 is unreachable" in str(refused.value)
    assert FIX in str(refused.value)


def test_the_dead_manager_itself_may_be_replaced() -> None:
    # 2 of 3 sound now; 2 of 2 once its entry is gone; 2 of 3 while the twin joins.
    check_replaceable([pick("dev1-manager-2")], nodes("node-query-manager-unreachable.json"),
                      3, 1, SETTINGS)


def step_names(record: ReplacementRecord) -> list[str]:
    cluster = Cluster(SETTINGS, Progress())
    return [name for name, _, _ in Replacement(cluster, record, lambda: None, drain_timeout=0,
                                                resume="").steps()]


def test_a_dead_manager_leaves_before_its_twin_joins_and_a_live_one_surges() -> None:
    # A surge beside the dead manager would make 2 of 4 voters until the twin votes.
    dead = Replacement.record_for([pick("dev1-manager-2")], MANAGERS, WORKERS)
    assert dead.leaves_first
    assert step_names(dead) == ["drain", "demote", "leave", "surge", "retire", "settle"]
    live = Replacement.record_for([pick("dev1-manager-8")], MANAGERS, WORKERS)
    assert not live.leaves_first
    assert step_names(live) == ["surge", "drain", "demote", "leave", "retire", "settle"]
    # heal's hosts are gone though the swarm may list them Ready a few seconds more
    gone = Replacement.record_for([pick("dev1-manager-8")], MANAGERS, WORKERS, dead=True)
    assert gone.leaves_first


def test_a_journal_from_before_the_dead_first_order_resumes_as_a_surge() -> None:
    record = asdict(Replacement.record_for([pick("dev1-manager-2")], MANAGERS, WORKERS))
    del record["leaves_first"]
    assert step_names(ReplacementRecord.from_dict(record))[0] == "surge"


def roll_record() -> RollRecord:
    worker = NodeEntry("null_resource.swarm_worker[0]", "dev1-worker-0", "10.0.0.100",
                       "10.0.0.100", "x1", "dev1-worker-0")
    return RollRecord(summary="roll 4 node(s)", resume="invoke roll --all --yes",
                      max_unavailable=1, started="2026-12-05T20:00:00Z",
                      pending=["null_resource.swarm_manager[0]", "null_resource.swarm_manager[1]",
                               "null_resource.swarm_manager[2]"],
                      current=ReplacementRecord("worker", [worker], 3, 1, [0, 1, 2],
                                                done=["drain", "leave", "replace"]))


def test_a_roll_set_aside_comes_back_without_the_node_replaced_meanwhile() -> None:
    dead = NodeEntry("null_resource.swarm_manager[1]", "dev1-manager-1", "10.0.0.11", "10.0.0.11",
                     "y1", "dev1-manager-1")
    kept = restored(asdict(roll_record()))  # as the replace-node record holds it, in JSON
    back = _without(kept, ReplacementRecord("manager", [dead], 3, 1, [0, 1, 2], new_slot=8))
    assert isinstance(back, RollRecord)
    assert back.pending == ["null_resource.swarm_manager[0]", "null_resource.swarm_manager[2]"]
    assert back.replaced == ["dev1-manager-1"]
    assert back.current is not None and back.current.done == ["drain", "leave", "replace"]
    assert back.current.slots == [0, 8, 2]  # the fresh manager's slot, for its last check
    assert back.started == "2026-12-05T20:00:00Z"
