"""`invoke replace-node` of a worker and of a manager, against the same done by hand.

    .venv/bin/python benchmarks/replace.py [--runs 3] [--baseline DIR]

Each run forms two 3+2 clusters (not timed), each running the same service
(6 busybox replicas), and replaces worker-1, then manager-1, on both:

- the pipeline: ``invoke replace-node NODE --yes --no-backup`` through the real CLI
  (the backup replace-node takes before it touches a manager, issue 19, is a step the
  floor does not take: it stops a follower's Docker for the copy, ~6 s on this
  machine, as replace-node's own progress lines time it);
- the floor, by hand over SSH on hosts made by the sandbox's ``host-up``:
  worker: drain, wait until its tasks run elsewhere, ``swarm leave``, ``node rm``,
  a fresh host at the same address joins (token on ssh's stdin), one check;
  manager, in the same surge order as replace-node: a fresh manager joins in the
  twin slot, one check, then drain, wait, demote, leave, ``node rm``, one check.

Host creation and removal are kept out of the floor and timed apart; for the
pipeline they are read from Terraform's own log (its local-exec provisioners)
and taken out of the comparable number. The ratios are printed last: raw (which issue
18's targets name), the comparable one beside each.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from _bench import (
    REPO,
    Cleanup,
    FloorCluster,
    FloorTimes,
    PipelineCluster,
    baseline_repo,
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

SERVICE = ("docker service create --detach --name web --replicas 6 --no-resolve-image "
           "--stop-grace-period 1s swarmforge/sample:1 sleep 3600 >/dev/null")
REPLICAS = "docker service ls --filter name=web --format '{{.Replicas}}'"
KINDS = ("worker", "manager")


def start_service(ssh: Callable[[str], str]) -> None:
    ssh(SERVICE)
    deadline = time.monotonic() + 60
    while ssh(REPLICAS).strip() != "6/6":
        if time.monotonic() > deadline:
            raise SystemExit("the benchmark service did not reach 6/6")
        time.sleep(0.2)


# -- the pipeline ---------------------------------------------------------------------


def pipeline(root: Path, cleanup: Cleanup, repo: Path) -> dict[str, tuple[float, float]]:
    """{kind: (wall, host seconds)} for replace-node of worker-1 and manager-1."""
    cluster = PipelineCluster("p" if repo == REPO else "q", root, repo)
    cleanup.add(cluster.name, cluster.destroy)
    say(f"  replace-node on {cluster.name}{'' if repo == REPO else ' (baseline)'} ({load()})")
    cluster.apply(3, 2)
    leader = next(n["address"] for n in cluster.status()["nodes"] if n["manager_status"] == "leader")
    start_service(lambda command: cluster.ssh(leader, command))
    measured = {}
    for kind in KINDS:
        offset = cluster.log_size()
        result = must(cluster.invoke("replace-node", f"{cluster.name}-{kind}-1", "--yes",
                                     "--no-backup"),
                      f"replace-node {kind}")
        measured[kind] = (result.seconds, host_seconds(terraform_events(cluster.terraform_log, offset)))
        say(f"    {kind}: {result.seconds:.1f}s, steps: " + ", ".join(
            f"{title.split(']')[0].strip('[')} {seconds:.1f}" for title, _, seconds in result.steps()))
    cluster.destroy()
    return measured


# -- the floor, by hand -----------------------------------------------------------------


class Floor(FloorCluster):
    def node_id(self, hostname: str) -> str:
        return self.ssh(self.first, f"docker node inspect --format '{{{{.ID}}}}' {hostname}").strip()

    @property
    def first(self) -> str:
        return self.address("manager", 0)

    def drain(self, node_id: str) -> None:
        self.ssh(self.first, f"docker node update --availability drain {node_id} >/dev/null")
        while self.ssh(self.first, f"docker node ps {node_id} -q --filter desired-state=running").split():
            time.sleep(0.1)

    def leave(self, address: str) -> None:
        for _ in range(50):  # a just-demoted manager says it is a manager for a moment
            try:
                self.ssh(address, "docker swarm leave >/dev/null 2>&1 || docker swarm leave")
                return
            except SystemExit as exc:
                if "manager" not in str(exc):
                    raise
            time.sleep(0.1)

    def replace_worker(self, index: int) -> FloorTimes:
        t = FloorTimes()
        hostname, address = self.hostname("worker", index), self.address("worker", index)
        with t.step("drain, wait for tasks"):
            node_id = self.node_id(hostname)
            self.drain(node_id)
        with t.step("leave, node rm"):
            self.leave(address)
            self.ssh(self.first, f"docker node rm --force {node_id} >/dev/null")
        t.hosts += self.host_down("worker", index)
        t.hosts += self.hosts_up([("worker", index)])
        with t.step("tokens, join"):
            _, worker_token = self.tokens(self.first)
            self.join(address, worker_token, self.first)
        with t.step("check"):
            self.wait_formed(self.first, 3, 5)
        return t

    def replace_manager(self, index: int, twin: int) -> FloorTimes:
        t = FloorTimes()
        old, new = self.address("manager", index), self.address("manager", twin)
        t.hosts += self.hosts_up([("manager", twin)])
        with t.step("tokens, join"):
            manager_token, _ = self.tokens(self.first)
            self.join(new, manager_token, self.first)
        with t.step("check"):
            self.wait_formed(self.first, 4, 6)
        with t.step("drain, wait for tasks"):
            node_id = self.node_id(self.hostname("manager", index))
            self.drain(node_id)
        with t.step("demote, leave, node rm"):
            self.ssh(self.first, f"docker node demote {node_id} >/dev/null")
            self.leave(old)
            self.ssh(self.first, f"docker node rm --force {node_id} >/dev/null")
        t.hosts += self.host_down("manager", index)
        with t.step("check"):
            self.wait_formed(self.first, 3, 5)
        return t


def floor(root: Path, cleanup: Cleanup) -> dict[str, FloorTimes]:
    cluster = Floor("h", root)
    cleanup.add(cluster.name, cluster.teardown)
    say(f"  by hand on {cluster.name} ({load()})")
    cluster.prepare()
    cluster.form(3, 2)
    start_service(lambda command: cluster.ssh(cluster.first, command))
    measured = {"worker": cluster.replace_worker(1), "manager": cluster.replace_manager(1, 9)}
    cluster.teardown()
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", metavar="DIR", help="another checkout, timed in the same runs")
    args = parser.parse_args()
    require_root()
    baseline = baseline_repo(args.baseline)
    print(machine())
    floors: list[dict[str, FloorTimes]] = []
    pipelines: dict[str, list[dict[str, tuple[float, float]]]] = {"replace-node": []}
    if baseline:
        pipelines["baseline"] = []
    with state_root() as root, Cleanup() as cleanup:
        jobs: list[Callable[[], None]] = [lambda: floors.append(floor(root, cleanup)),
                                          lambda: pipelines["replace-node"].append(
                                              pipeline(root, cleanup, REPO))]
        if baseline:
            jobs.append(lambda: pipelines["baseline"].append(pipeline(root, cleanup, baseline)))
        for i in range(args.runs):
            say(f"run {i + 1}/{args.runs}")
            shift = i % len(jobs)
            for job in jobs[shift:] + jobs[:shift]:
                job()
    print(f"replace-node on a 3+2 cluster running 6 tasks: {args.runs} run(s), medians in seconds\n")
    rows: list[list[object]] = []
    ratios = {}
    for kind in KINDS:
        by_hand = median([f[kind].swarm for f in floors])
        rows.append([f"{kind}: by hand, hosts excluded (floor)", by_hand, ""])
        rows.append([f"{kind}: by hand, making/removing hosts", median([f[kind].hosts for f in floors]),
                     ""])
        for label, runs in pipelines.items():
            wall = median([r[kind][0] for r in runs])
            hosts = median([r[kind][1] for r in runs])
            comparable = median([r[kind][0] - r[kind][1] for r in runs])
            raw = wall / median([f[kind].swarm + f[kind].hosts for f in floors])
            rows.append([f"{kind}: {label}, raw", wall, raw])
            rows.append([f"{kind}: {label}, making/removing hosts", hosts, ""])
            rows.append([f"{kind}: {label}, hosts excluded", comparable, comparable / by_hand])
            if label == "replace-node":
                ratios[kind] = (raw, comparable / by_hand)
    print(table(["", "seconds", "ratio"], rows))
    for kind in KINDS:
        steps = list(floors[0][kind].steps)
        print(f"\nby hand, {kind}:  " + ",  ".join(
            f"{name} {median([f[kind].steps[name] for f in floors]):.2f}" for name in steps))
    print(f"\n{load()}")
    print("ratio (replace-node / by hand, raw: hosts included, as issue 18's targets): "
          + "; ".join(f"{kind} {ratios[kind][0]:.2f} (hosts excluded {ratios[kind][1]:.2f})"
                      for kind in KINDS))


if __name__ == "__main__":
    main()
