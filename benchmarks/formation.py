"""How long `invoke apply` takes to form a swarm, against the floor, on the local sandbox.

    .venv/bin/python benchmarks/formation.py [--runs 3] [--managers 3] [--workers 2]

Each run forms two clusters on fresh sandbox hosts, one after the other (the
order alternates between runs, so that neither always meets a busier machine):

- the pipeline: ``invoke apply`` through the real CLI, wall time;
- the floor: a plain script on hosts made by the sandbox's own ``host-up``:
  ``docker swarm init``, both tokens read into memory, every join in parallel
  over SSH (the request on ssh's stdin), then one check that all are Ready.

apply also makes its hosts (Terraform's local-exec runs ``host-up``); the floor
makes them before its clock starts. So two comparisons are printed:
raw (both with their host creation) and comparable (apply minus the time during
which Terraform was making hosts, read from its own log, against the floor
without hosts). The raw ratio, which issue 18's target names, is printed last, the
comparable one beside it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from _bench import (
    REPO,
    Cleanup,
    FloorCluster,
    FloorTimes,
    PipelineCluster,
    Timed,
    baseline_repo,
    host_seconds,
    load,
    machine,
    median,
    provisioner_seconds,
    require_root,
    say,
    state_root,
    table,
    terraform_commands,
    terraform_events,
)

# apply's progress steps, shortened for the table (matched on how a title starts).
STEP_NAMES = (("preparing", "prepare"), ("phase 1", "phase 1"),
              ("phase 2: planning", "phase 2 plan"), ("phase 2:", "phase 2 apply"),
              ("waiting", "health"), ("rotating", "rotate tokens"))


@dataclass
class ApplyTimes:
    wall: float
    hosts: float  # Terraform making hosts (local-exec host-up), union of intervals
    steps: dict[str, float] = field(default_factory=dict)
    terraform: dict[str, float] = field(default_factory=dict)
    provisioners: dict[str, float] = field(default_factory=dict)  # median per node

    @property
    def comparable(self) -> float:
        return self.wall - self.hosts


@dataclass
class Run:
    floor: FloorTimes
    applies: dict[str, ApplyTimes]  # "apply", and "baseline" with --baseline

    @property
    def apply(self) -> ApplyTimes:
        return self.applies["apply"]


def measure_apply(root: Path, managers: int, workers: int, parallelism: int | None,
                  cleanup: Cleanup, repo: Path = REPO, label: str = "apply") -> ApplyTimes:
    cluster = PipelineCluster("a" if label == "apply" else "b", root, repo)
    cleanup.add(cluster.name, cluster.destroy)
    say(f"  {label} {managers}+{workers} on {cluster.name} from {repo} ({load()})")
    extra = ("--parallelism", str(parallelism)) if parallelism else ()
    result = cluster.apply(managers, workers, *extra)
    times = apply_times(result, cluster)
    cluster.destroy()
    return times


def apply_times(result: Timed, cluster: PipelineCluster, offset: int = 0) -> ApplyTimes:
    """A run's wall time, its host time from Terraform's log, and its steps."""
    events = terraform_events(cluster.terraform_log, offset)
    times = ApplyTimes(result.seconds, host_seconds(events))
    times.provisioners = {kind: median(values) for kind, values in provisioner_seconds(events).items()}
    for title, _, seconds in result.steps():
        name = next((short for prefix, short in STEP_NAMES if title.startswith(prefix)), title)
        times.steps[name] = times.steps.get(name, 0.0) + seconds
    times.steps["start-up, SSH checks, other"] = result.seconds - sum(times.steps.values())
    for command, seconds in terraform_commands(cluster.terraform_log, offset):
        times.terraform[command] = times.terraform.get(command, 0.0) + seconds
    return times


def measure_floor(root: Path, managers: int, workers: int, cleanup: Cleanup,
                  repo: Path = REPO) -> FloorTimes:
    floor = FloorCluster("f", root, repo)
    cleanup.add(floor.name, floor.teardown)
    say(f"  floor {managers}+{workers} on {floor.name} ({load()})")
    floor.prepare()
    times = floor.form(managers, workers)
    floor.teardown()
    return times


def measure(managers: int, workers: int, runs: int, parallelism: int | None = None,
            baseline: Path | None = None, repo: Path = REPO) -> list[Run]:
    """``runs`` rounds of floor, apply (and the baseline's apply), in a rotating order.

    ``repo``: the checkout whose `invoke apply` and `sandbox host-up` (for the floor) run.
    """
    measured = []
    with state_root() as root, Cleanup() as cleanup:
        for i in range(runs):
            say(f"run {i + 1}/{runs}")
            jobs: list[tuple[str, Callable[[], object]]] = [
                ("floor", lambda: measure_floor(root, managers, workers, cleanup, repo)),
                ("apply", lambda: measure_apply(root, managers, workers, parallelism, cleanup,
                                                repo))]
            if baseline:
                jobs.append(("baseline", lambda: measure_apply(root, managers, workers, parallelism,
                                                               cleanup, baseline, "baseline")))
            shift = i % len(jobs)
            results = {label: job() for label, job in jobs[shift:] + jobs[:shift]}
            floor = results.pop("floor")
            assert isinstance(floor, FloorTimes)
            measured.append(Run(floor, {k: v for k, v in results.items()
                                        if isinstance(v, ApplyTimes)}))
    return measured


def summary(runs: list[Run], label: str = "apply") -> dict[str, float]:
    """Medians over the runs, and the two ratios (of medians)."""
    floor_swarm = median([r.floor.swarm for r in runs])
    floor_raw = median([r.floor.swarm + r.floor.hosts for r in runs])
    apply_wall = median([r.applies[label].wall for r in runs])
    apply_comparable = median([r.applies[label].comparable for r in runs])
    return {"floor_swarm": floor_swarm, "floor_hosts": median([r.floor.hosts for r in runs]),
            "floor_raw": floor_raw, "apply_wall": apply_wall,
            "apply_hosts": median([r.applies[label].hosts for r in runs]),
            "apply_comparable": apply_comparable, "raw_ratio": apply_wall / floor_raw,
            "ratio": apply_comparable / floor_swarm}


def report(runs: list[Run], managers: int, workers: int) -> str:
    labels = list(runs[0].applies)
    lines = [f"formation {managers}+{workers}: {len(runs)} run(s), medians in seconds", ""]
    s = summary(runs)
    rows: list[list[object]] = [["floor, raw: hosts included", s["floor_raw"], ""],
                                ["floor, making the hosts", s["floor_hosts"], ""],
                                ["floor, comparable: hosts excluded", s["floor_swarm"], ""]]
    for label in labels:
        a = summary(runs, label)
        name = "invoke apply" + (" (baseline)" if label == "baseline" else "")
        rows += [[f"{name}, raw", a["apply_wall"], a["raw_ratio"]],
                 [f"{name}, making the hosts", a["apply_hosts"], ""],
                 [f"{name}, comparable", a["apply_comparable"], a["ratio"]]]
    lines.append(table(["", "seconds", "ratio"], rows))
    lines += ["", "per run, floor / " + " / ".join(labels) + " (hosts excluded):  " + ",  ".join(
        " / ".join(f"{x:.2f}" for x in [r.floor.swarm, *(r.applies[k].comparable for k in labels)])
        for r in runs), ""]
    floor_steps = list(runs[0].floor.steps)
    lines.append(table(["floor step", "seconds"],
                       [[name, median([r.floor.steps[name] for r in runs])] for name in floor_steps]))
    lines.append("")
    steps = list(dict.fromkeys(n for r in runs for k in labels for n in r.applies[k].steps))
    lines.append(table(["apply step (hosts included)", *labels],
                       [[name, *(median([r.applies[k].steps.get(name, 0.0) for r in runs])
                                 for k in labels)] for name in steps]))
    lines.append("")
    commands = list(dict.fromkeys(n for r in runs for k in labels for n in r.applies[k].terraform))
    lines.append(table(["terraform command (summed)", *labels],
                       [[name, *(median([r.applies[k].terraform.get(name, 0.0) for r in runs])
                                 for k in labels)] for name in commands]))
    lines.append("")
    kinds = list(dict.fromkeys(n for r in runs for k in labels for n in r.applies[k].provisioners))
    lines.append(table(["provisioner, per node (Terraform's log)", *labels],
                       [[name, *(median([r.applies[k].provisioners.get(name, 0.0) for r in runs])
                                 for k in labels)] for name in kinds]))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--managers", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--parallelism", type=int, default=None,
                        help="passed to `invoke apply --parallelism` (default: the local target's)")
    parser.add_argument("--baseline", metavar="DIR",
                        help="another checkout to measure in the same runs (before/after a change)")
    parser.add_argument("--repo", metavar="DIR",
                        help="run apply and the floor's host-up from this checkout instead of this one")
    args = parser.parse_args()
    require_root()
    print(machine())
    runs = measure(args.managers, args.workers, args.runs, args.parallelism,
                   baseline_repo(args.baseline), baseline_repo(args.repo) or REPO)
    print(report(runs, args.managers, args.workers))
    print(f"\n{load()}")
    s = summary(runs)
    print(f"ratio (formation {args.managers}+{args.workers}, apply / floor, raw: hosts included, "
          f"as issue 18's target): {s['raw_ratio']:.2f}  (hosts excluded: {s['ratio']:.2f})")


if __name__ == "__main__":
    main()
