"""Recovery: the swarm after losing its quorum, and after losing a worker, against the same
done by hand.

    .venv/bin/python benchmarks/recovery.py [--runs 1]

Each run forms two 3+1 clusters (not timed) running the same service (2 busybox
replicas), then on both:

- quorum lost: the dockerd of 2 of the 3 managers SIGKILLed, then (not timed, the same
  wait on both) until the survivor answers that there is no leader. The pipeline: ``invoke
  restore --yes`` (force a new cluster on the survivor, remove the lost managers'
  entries, make their hosts anew with Terraform, wait until healthy). By hand, over
  SSH on hosts made by the sandbox's ``host-up``: ``docker swarm init
  --force-new-cluster`` on the survivor, ``node rm --force`` the lost managers, fresh
  hosts at their addresses join as managers (token on ssh's stdin), one check.
- a worker dead: its dockerd SIGKILLed, then (not timed, the same wait on both) until
  the swarm calls it Down. The pipeline: ``invoke heal --yes``. By hand: ``node rm
  --force``, a fresh host at its address joins, one check.

Host creation and removal are kept out of the floor and timed apart; for the pipeline
they are read from Terraform's own log and taken out of the comparable number. The
ratios (pipeline / by hand, hosts excluded) are printed last.
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from _bench import (
    Cleanup,
    FloorCluster,
    FloorTimes,
    PipelineCluster,
    host_seconds,
    load,
    machine,
    median,
    must,
    require_root,
    say,
    state_root,
    table,
    terraform_events,
)

SANDBOX = Path("/run/swarmforge")
SERVICE = ("docker service create --detach --name web --replicas 2 --no-resolve-image "
           "--stop-grace-period 1s swarmforge/sample:1 sleep 3600 >/dev/null")
REPLICAS = "docker service ls --filter name=web --format '{{.Replicas}}'"
CASES = ("quorum lost", "worker dead")


def kill_dockerd(cluster: str, host_dir: str) -> None:
    """SIGKILL a node's dockerd, by the PID its sandbox host keeps: this run's clusters only."""
    os.kill(int((SANDBOX / cluster / host_dir / "docker.pid").read_text()), signal.SIGKILL)


def wait_until(check: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not happen within {timeout:.0f}s")
        time.sleep(0.2)


def start_service(ssh: Callable[[str], str]) -> None:
    ssh(SERVICE)
    wait_until(lambda: ssh(REPLICAS).strip() == "2/2", "the service's 2 replicas")


def quorum_lost(ssh: Callable[[str], str]) -> bool:
    """The survivor says so at once: until then (about 40 s after the kills) every manager
    command waits out Docker's deadlines, the same for an operator as for the pipeline."""
    return "does not have a leader" in ssh("timeout 5 docker node ls -q 2>&1 || true")


def worker_down(ssh: Callable[[str], str]) -> bool:
    return "Down" in ssh("docker node ls --filter role=worker --format '{{.Status}}'")


# -- the pipeline ---------------------------------------------------------------------


def pipeline(root: Path, cleanup: Cleanup) -> dict[str, tuple[float, float]]:
    """{case: (wall, host seconds)}."""
    cluster = PipelineCluster("r", root)
    cluster.env["INVOKE_SWARMFORGE_DEAD_AFTER"] = "10"  # the kills are SIGKILLs
    cleanup.add(cluster.name, cluster.destroy)
    say(f"  the pipeline on {cluster.name} ({load()})")
    cluster.apply(3, 1, "--yes")
    survivor = next(n["address"] for n in cluster.status()["nodes"]
                    if n["hostname"].endswith("-manager-2"))
    start_service(lambda command: cluster.ssh(survivor, command))
    measured = {}
    for host_dir in ("m0", "m1"):
        kill_dockerd(cluster.name, host_dir)
    wait_until(lambda: quorum_lost(lambda c: cluster.ssh(survivor, c)), "the quorum lost")
    offset = cluster.log_size()
    restored = must(cluster.invoke("restore", "--yes"), "invoke restore")
    measured["quorum lost"] = (restored.seconds,
                               host_seconds(terraform_events(cluster.terraform_log, offset)))
    say(f"    quorum lost: {restored.seconds:.1f}s ({restored.stdout.strip().splitlines()[-1]})")
    kill_dockerd(cluster.name, "w0")
    wait_until(lambda: worker_down(lambda c: cluster.ssh(survivor, c)), "the worker Down")
    offset = cluster.log_size()
    healed = must(cluster.invoke("heal", "--yes"), "invoke heal")
    measured["worker dead"] = (healed.seconds,
                               host_seconds(terraform_events(cluster.terraform_log, offset)))
    say(f"    worker dead: {healed.seconds:.1f}s")
    cluster.destroy()
    return measured


# -- the floor, by hand -----------------------------------------------------------------


class Floor(FloorCluster):
    @property
    def survivor(self) -> str:
        return self.address("manager", 2)

    def restore(self) -> FloorTimes:
        t = FloorTimes()
        with t.step("force-new-cluster"):
            self.ssh(self.survivor, "docker swarm init --force-new-cluster --advertise-addr "
                                    f"{self.survivor} >/dev/null")
        with t.step("node rm"):
            own = self.ssh(self.survivor, "docker info --format '{{.Swarm.NodeID}}'").strip()
            lost = set(self.ssh(self.survivor, "docker node ls -q --filter role=manager").split())
            for node_id in sorted(lost - {own}):
                self.ssh(self.survivor, f"docker node rm --force {node_id} >/dev/null")
        for index in (0, 1):
            t.hosts += self.host_down("manager", index)
        t.hosts += self.hosts_up([("manager", 0), ("manager", 1)])
        with t.step("tokens, joins"):
            manager_token, _ = self.tokens(self.survivor)
            self.join_all([(self.address("manager", i), manager_token) for i in (0, 1)],
                          self.survivor)
        with t.step("check"):
            self.wait_formed(self.survivor, 3, 4)
        return t

    def replace_dead_worker(self) -> FloorTimes:
        t = FloorTimes()
        with t.step("node rm"):
            node_id = self.ssh(self.survivor, "docker node ls -q --filter role=worker").split()[0]
            self.ssh(self.survivor, f"docker node rm --force {node_id} >/dev/null")
        t.hosts += self.host_down("worker", 0)
        t.hosts += self.hosts_up([("worker", 0)])
        with t.step("tokens, join"):
            _, worker_token = self.tokens(self.survivor)
            self.join(self.address("worker", 0), worker_token, self.survivor)
        with t.step("check"):
            self.wait_formed(self.survivor, 3, 4)
        return t


def floor(root: Path, cleanup: Cleanup) -> dict[str, FloorTimes]:
    cluster = Floor("h", root)
    cleanup.add(cluster.name, cluster.teardown)
    say(f"  by hand on {cluster.name} ({load()})")
    cluster.prepare()
    cluster.form(3, 1)
    start_service(lambda command: cluster.ssh(cluster.survivor, command))
    for host_dir in ("m0", "m1"):
        kill_dockerd(cluster.name, host_dir)
    wait_until(lambda: quorum_lost(lambda c: cluster.ssh(cluster.survivor, c)), "the quorum lost")
    measured = {"quorum lost": cluster.restore()}
    kill_dockerd(cluster.name, "w0")
    wait_until(lambda: worker_down(lambda c: cluster.ssh(cluster.survivor, c)), "the worker Down")
    measured["worker dead"] = cluster.replace_dead_worker()
    cluster.teardown()
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    require_root()
    print(machine())
    floors: list[dict[str, FloorTimes]] = []
    pipelines: list[dict[str, tuple[float, float]]] = []
    with state_root() as root, Cleanup() as cleanup:
        jobs: list[Callable[[], None]] = [lambda: floors.append(floor(root, cleanup)),
                                          lambda: pipelines.append(pipeline(root, cleanup))]
        for i in range(args.runs):
            say(f"run {i + 1}/{args.runs}")
            for job in jobs[i % 2:] + jobs[:i % 2]:
                job()
    print(f"recovery of a 3+1 cluster running 2 tasks: {args.runs} run(s), medians in seconds\n")
    rows: list[list[object]] = []
    ratios = {}
    for case in CASES:
        by_hand = median([f[case].swarm for f in floors])
        hosts_by_hand = median([f[case].hosts for f in floors])
        wall = median([p[case][0] for p in pipelines])
        comparable = median([p[case][0] - p[case][1] for p in pipelines])
        ratios[case] = comparable / by_hand
        rows += [[f"{case}: by hand, hosts excluded (floor)", by_hand, ""],
                 [f"{case}: by hand, making/removing hosts", hosts_by_hand, ""],
                 [f"{case}: pipeline, raw", wall, wall / (by_hand + hosts_by_hand)],
                 [f"{case}: pipeline, hosts excluded", comparable, ratios[case]]]
    print(table(["", "seconds", "ratio"], rows))
    for case in CASES:
        steps = list(floors[0][case].steps)
        print(f"\nby hand, {case}:  " + ",  ".join(
            f"{name} {median([f[case].steps[name] for f in floors]):.2f}" for name in steps))
    print(f"\n{load()}")
    print("ratio (pipeline / by hand, hosts excluded): "
          + "; ".join(f"{case} {ratios[case]:.2f}" for case in CASES))


if __name__ == "__main__":
    main()
