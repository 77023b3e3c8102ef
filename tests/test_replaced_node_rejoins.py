"""A node made anew in place (``terraform apply -replace``) joins the swarm again on aws.

terraform/aws makes a node's swarm step only once the node's host key is pinned
(``swarm_host_keys``), and the key of a node being made anew is void: its step goes
in the apply that replaces it, and must be made again, once its new key is pinned,
by the second apply of ``Cluster.apply_terraform``. The node keeps its name, so the
second apply cannot be asked for by new names alone.

The real ``Cluster.apply`` and ``Cluster.apply_terraform`` with a real Terraform on a
stand-in of null_resources (tests/data/pinned_steps) whose steps wait for the pins as
terraform/aws's do; the pins are the aws target's own HostKeyPins, read from console
transcripts as cloud-init prints them (real keys from ssh-keygen); ``ssh`` is the
fake swarm of tests/test_network_first.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from swarmforge.cluster import Cluster
from swarmforge.nodes import NodeRef
from swarmforge.progress import Progress
from swarmforge.settings import Settings, load_settings
from swarmforge.state_file import LOCAL_STATE
from swarmforge.targets.aws.host_keys import HostKeyPins
from swarmforge.targets.local.target import LocalTarget
from swarmforge.tools import PROVIDER_MIRROR
from tests.conftest import unique_cluster
from tests.terraform_config import TERRAFORM, locals_of
from tests.test_host_keys import console, keypair
from tests.test_network_first import StandIn, StandInTarget

PINNED_STEPS = Path(__file__).resolve().parent / "data" / "pinned_steps"
GATE = "contains(keys(var.swarm_host_keys), name)"


class PinningTarget(StandInTarget):
    """The stand-in target with aws's host keys: each node's key is read from its console
    (a new key for each new instance, as a new instance generates its own) and pinned
    per instance id by HostKeyPins."""

    config_dir = PINNED_STEPS

    def __init__(self, cluster: str, home: Path, order_log: Path) -> None:
        super().__init__(cluster, home, order_log)
        self.pins = HostKeyPins(home / "pins")
        self.keys: dict[str, str] = {}  # {instance id: its host key}
        self.read: list[str] = []  # the instances whose console was read

    def variables(self, *, destroying: bool = False) -> dict[str, str]:
        return {"cluster_name": self.cluster, "order_log": str(self.order_log)}

    def pin_host_keys(self, refs: list[NodeRef], say: Callable[[str], None]) -> dict[str, str]:
        return self.pins.pin(refs, self._console, say)

    def _console(self, instance: str) -> str:
        self.read.append(instance)
        if instance not in self.keys:
            folder = self.home / "keys" / instance
            folder.mkdir(parents=True)
            self.keys[instance] = keypair(folder, "ed25519")
        return console([self.keys[instance]])


class PinnedStandIn(StandIn):
    """A stand-in cluster whose swarm steps wait for the pins."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        super().__init__(tmp_path, monkeypatch)
        self.name = unique_cluster("rejoin")
        monkeypatch.setenv("FAKE_SWARM_CLUSTER", self.name)
        self.target = PinningTarget(self.name, tmp_path, self.order_log)

    def cluster(self, managers: int, workers: int) -> Cluster:
        """A Cluster of these counts, as a run of replace-node or roll makes one."""
        self.monkeypatch.setenv("FAKE_SWARM", f"{managers},{workers}")
        settings: Settings = load_settings({
            "target": "local", "cluster": self.name, "state_dir": str(self.state_dir),
            "managers": managers, "workers": workers, "health_timeout": 30}, {})
        self.target.local = LocalTarget(settings)
        return Cluster(settings, Progress(), target=self.target)  # type: ignore[arg-type]

    def joined(self) -> list[str]:
        state = json.loads((self.state_dir / self.name / LOCAL_STATE).read_text())
        joined: list[str] = state["outputs"]["joined"]["value"]
        return joined


@pytest.fixture
def pinned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PinnedStandIn:
    if not PROVIDER_MIRROR.exists():
        pytest.skip(f"no provider mirror at {PROVIDER_MIRROR} (run scripts/setup-host.sh)")
    cluster = PinnedStandIn(tmp_path, monkeypatch)
    formed = cluster.apply(1, 1)
    name = cluster.name
    # Formed as on aws: each step ran once its node's key was pinned, the init first.
    assert formed.index(f"step: {name}-manager-0 init without a token") \
        < formed.index(f"step: {name}-worker-0 join with a token")
    assert sorted(cluster.joined()) == [f"{name}-manager-0", f"{name}-worker-0"]
    return cluster


def test_a_worker_replaced_in_place_joins_again_once_its_new_key_is_pinned(
        pinned: PinnedStandIn) -> None:
    name, worker = pinned.name, f"{pinned.name}-worker-0"
    cluster = pinned.cluster(1, 1)
    managers, workers = cluster.nodes_in_state()
    old_id, old_key = workers[0].id, pinned.target.keys[workers[0].id]
    secrets = cluster.secrets(cluster.swarm(managers), managers[0].ssh_host, managers)
    pinned.order_log.write_text("")

    cluster.apply_terraform(lambda: cluster.variables(managers=1, workers=1, slots=[0]), secrets,
                            replace=["null_resource.swarm_worker[0]"])

    logged = pinned.order_log.read_text().splitlines()
    _, [new] = cluster.nodes_in_state()
    assert new.name == worker and new.id != old_id  # the same name, a new instance
    assert pinned.target.read[-1] == new.id  # its key read from its own console
    assert pinned.target.pins.key_at(new.ssh_host) == pinned.target.keys[new.id] != old_key
    assert logged.index(f"node: {worker}") < logged.index(f"step: {worker} join with a token")
    assert sorted(pinned.joined()) == [f"{name}-manager-0", worker]
    assert f"node: {name}-manager-0" not in logged  # nothing else is touched


def test_the_stand_in_waits_for_the_pins_as_terraform_aws_does() -> None:
    assert GATE in locals_of(TERRAFORM / "aws")["join_steps"]
    assert GATE in locals_of(PINNED_STEPS)["join_steps"]
