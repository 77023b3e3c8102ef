"""A no-op `invoke apply` on a converged cluster, against `terraform plan` alone in its workspace.

    .venv/bin/python benchmarks/reapply.py [--runs 5] [--workers 2] [--baseline DIR]

One cluster is formed (not timed), then each run times, in a rotating order:
``invoke apply`` with the same counts (it must change nothing), and the
``terraform plan`` that apply runs, alone, with the same arguments in the same
workspace (read from the cluster's terraform.log). The floor is that plan: a
re-apply cannot know there is nothing to do without it. The ratio is printed last.

With ``--baseline``, the other checkout forms a cluster of its own and re-applies
that, against its own plan: two checkouts taking turns on one workspace would each
find it rendered by the other (another mirror path in its CLI config) and init it
again at every run, a cost no operator's re-apply pays.
"""

from __future__ import annotations

import argparse
import os
import shlex
from collections.abc import Callable

from _bench import (
    REPO,
    Cleanup,
    PipelineCluster,
    Timed,
    baseline_repo,
    load,
    machine,
    median,
    must,
    require_root,
    say,
    state_root,
    table,
    timed,
)

SHORT = (("preparing", "prepare"), ("phase 2: planning", "plan (tokens, terraform plan)"),
         ("waiting", "health"), ("reading the swarm", "health"), ("rotating", "rotate tokens"))


def plan_argv(cluster: PipelineCluster) -> list[str]:
    """The last `terraform plan` the adapter logged, as argv (it holds no secret: tokens
    travel in the environment only)."""
    lines = [line for line in cluster.terraform_log.read_text().splitlines()
             if line.startswith("$ ") and " plan " in line]
    if not lines:
        raise SystemExit(f"no terraform plan in {cluster.terraform_log}")
    command = lines[-1][2:].rsplit("  (exit ", 1)[0]
    return shlex.split(command)


def plan_alone(cluster: PipelineCluster, argv: list[str]) -> Timed:
    env = {"CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1", "TF_INPUT": "0",
           "TF_CLI_CONFIG_FILE": str(cluster.dir / "terraformrc")}
    result = timed(argv, env={**env, "PATH": os.environ["PATH"]}, cwd=cluster.dir / "terraform")
    must(result, "terraform plan")
    if '"type":"planned_change"' in result.stdout:
        raise SystemExit("terraform plan shows changes on a converged cluster")
    return result


def marked(label: str) -> str:
    """How a row of ``label``'s checkout is marked: the baseline's say so."""
    return " (baseline)" if label == "baseline" else ""


def plan_label(label: str) -> str:
    return "terraform plan" + marked(label)


def steps_of(result: Timed) -> dict[str, float]:
    steps: dict[str, float] = {}
    for title, _, seconds in result.steps():
        name = next((short for prefix, short in SHORT if title.startswith(prefix)), title)
        steps[name] = steps.get(name, 0.0) + seconds
    steps["start-up, SSH checks, other"] = result.seconds - sum(steps.values())
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--managers", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--baseline", metavar="DIR",
                        help="another checkout whose `invoke apply` is timed too, on the same cluster")
    args = parser.parse_args()
    require_root()
    baseline = baseline_repo(args.baseline)
    print(machine())
    counts = ("--managers", str(args.managers), "--workers", str(args.workers))
    repos = {"apply": REPO, **({"baseline": baseline} if baseline else {})}
    labels = list(repos)
    times: dict[str, list[float]] = {}
    steps: dict[str, list[dict[str, float]]] = {label: [] for label in labels}
    with state_root() as root, Cleanup() as cleanup:
        clusters: dict[str, PipelineCluster] = {}
        argvs: dict[str, list[str]] = {}
        for label in labels:
            cluster = PipelineCluster("r", root, repos[label])
            cleanup.add(cluster.name, cluster.destroy)
            say(f"forming {cluster.name} ({label}, {load()})")
            cluster.apply(args.managers, args.workers)
            # Formation plans nothing (phase 2 follows phase 1 without a plan): one no-op
            # apply, untimed, logs the plan every re-apply runs.
            cluster.apply(args.managers, args.workers)
            clusters[label], argvs[label] = cluster, plan_argv(cluster)
            times[plan_label(label)], times[label] = [], []

        def reapply(label: str) -> Callable[[], None]:
            def run() -> None:
                result = must(clusters[label].invoke("apply", *counts), f"no-op apply ({label})")
                if "unchanged" not in result.stdout:
                    raise SystemExit(f"the re-apply changed something:\n{result.stdout}")
                times[label].append(result.seconds)
                steps[label].append(steps_of(result))
            return run

        def plan(label: str) -> Callable[[], None]:
            def run() -> None:
                times[plan_label(label)].append(plan_alone(clusters[label], argvs[label]).seconds)
            return run

        jobs = [job for label in labels for job in (plan(label), reapply(label))]
        for i in range(args.runs):
            say(f"run {i + 1}/{args.runs} ({load()})")
            shift = i % len(jobs)
            for job in jobs[shift:] + jobs[:shift]:
                job()
    floor = median(times["terraform plan"])
    rows: list[list[object]] = []
    for label in labels:
        own_floor = median(times[plan_label(label)])
        rows.append([f"terraform plan alone (floor){marked(label)}", own_floor, 1.0])
        rows.append([f"invoke apply, no-op{marked(label)}", median(times[label]),
                     median(times[label]) / own_floor])
    print(f"no-op re-apply of a converged {args.managers}+{args.workers} cluster: "
          f"{args.runs} run(s), medians in seconds\n")
    print(table(["", "seconds", "ratio"], rows))
    print("\nper run: " + ";  ".join(f"{k} " + " ".join(f"{x:.2f}" for x in v)
                                     for k, v in times.items()))
    names = list(dict.fromkeys(n for label in labels for s in steps[label] for n in s))
    print()
    print(table(["no-op apply step", *labels],
                [[n, *(median([s.get(n, 0.0) for s in steps[label]]) for label in labels)]
                 for n in names]))
    print(f"\n{load()}")
    print(f"ratio (no-op apply / terraform plan alone): {median(times['apply']) / floor:.2f}")


if __name__ == "__main__":
    main()
