"""A manager's dockerd killed mid-operation, many times in a row: clean recoveries and their time.

    .venv/bin/python benchmarks/chaos.py [--runs 10] [--only roll|roll-managers|replace-node] [--dead-after S]

One 3+1 sandbox cluster (not timed). Each run of each order kills a follower
manager's dockerd (by PID, this cluster's own) while an operation runs:

- roll: ``invoke roll --all --yes``, as soon as its journal shows the first worker's
  replacement begun (the case issue 17 saw deadlock; it was 6 s in until replacements
  got faster and 6 s fell on the backup before the first manager);
- roll-managers: as soon as its journal shows a manager's replacement begun, its
  twin about to join (that replacement finishes, then the roll stops for the dead one);
- replace-node: 2 s into ``invoke replace-node <cluster>-worker-0 --yes``;

then recovers as the failed operation's message says (tests/chaos.py): the
replace-node of the dead manager, then the interrupted operation. A recovery is
clean when the swarm ends healthy (3+1, empty journal) after at most two
commands, and a majority of managers answered on every poll from outside. The
time is from the kill to a healthy swarm; "stopped" is from the kill to the
operation's exit with its message. The next run starts from the healed cluster.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

# _bench puts this checkout on sys.path: tests.* below import from it.
from _bench import Cleanup, load, machine, median, require_root, say, state_root, table

from tests.chaos import Recovery, kill_during, replacing_a_manager, replacing_a_worker
from tests.conftest import invoke
from tests.sandbox_swarm import Cluster

ORDERS: dict[str, tuple[list[str], float, Callable[[dict], bool] | None]] = {
    "roll": (["roll", "--all", "--yes"], 0.0, replacing_a_worker),
    "roll-managers": (["roll", "--all", "--yes"], 0.0, replacing_a_manager),
    "replace-node": (["replace-node", "{cluster}-worker-0", "--yes"], 2.0, None),
}


def scenario(cluster: Cluster, order: str) -> Recovery:
    words, after, when = ORDERS[order]
    return kill_during(cluster, [w.format(cluster=cluster.name) for w in words], after=after,
                       when=when)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of each order (default 10)")
    parser.add_argument("--only", choices=sorted(ORDERS), help="one order only")
    parser.add_argument("--dead-after", type=float, default=None,
                        help="swarmforge.dead_after for the operations (default: the setting's "
                             "own, 60 s; the kills are SIGKILLs, so 15 s is enough to see them)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    require_root()
    say(machine())
    orders = [args.only] if args.only else list(ORDERS)
    cleanup = Cleanup()
    with state_root() as root:
        env = ({"INVOKE_SWARMFORGE_DEAD_AFTER": str(args.dead_after)}
               if args.dead_after is not None else {})
        cluster = Cluster(f"bench-chaos-{int(time.time()) % 100000}", root, env=env)
        cleanup.add(cluster.name, lambda: invoke("destroy", "--cluster", cluster.name, "--yes",
                                                 state_dir=root))
        try:
            result = cluster.run("apply", "--managers", "3", "--workers", "1", timeout=900)
            must_pass(result.returncode, result.stderr, "apply 3+1")
            results = {order: run_order(cluster, order, args.runs) for order in orders}
        finally:
            cleanup.run()
    say("")
    print(table(["order", "runs", "clean", "median s", "max s", "median stopped s"],
                [[order, len(found), sum(r.clean for r in found),
                  median([r.seconds for r in found]), max(r.seconds for r in found),
                  median([r.stopped_after for r in found])]
                 for order, found in results.items()]))


def run_order(cluster: Cluster, order: str, runs: int) -> list[Recovery]:
    found = []
    for run in range(1, runs + 1):
        recovery = scenario(cluster, order)
        found.append(recovery)
        say(f"  {order} #{run}: {'clean' if recovery.clean else 'NOT CLEAN'}, "
            f"{recovery.seconds:.1f}s to healthy (stopped {recovery.stopped_after:.1f}s after "
            f"the kill, exit {recovery.rc}), killed {recovery.victim}, then: "
            f"{'; '.join(recovery.commands) or 'nothing'} ({load()})")
        last = recovery.message.splitlines()[-1] if recovery.message else ""
        say(f"    {recovery.quorum_problem or last[:400]}")
        if not recovery.clean:  # all of what the commands said, to see why
            say("    " + "\n    ".join(recovery.message.splitlines()[-40:]))
        if not recovery.healthy:
            break  # the next run needs a healthy cluster
    return found


def must_pass(returncode: int, stderr: str, what: str) -> None:
    if returncode != 0:
        raise SystemExit(f"{what} failed:\n{stderr[-2000:]}")


if __name__ == "__main__":
    main()
