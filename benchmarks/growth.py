"""How formation time grows with the cluster: `invoke apply` against the floor, by size.

    .venv/bin/python benchmarks/growth.py [--workers 2,10,25] [--parallelism 10,30] [--runs 1]

For each worker count (3 managers each) and each Terraform parallelism, the
same measurement as formation.py: the floor (init + parallel joins over SSH on
fresh sandbox hosts) and `invoke apply --parallelism P`, on fresh clusters, in
alternating order. Host creation is shown apart, as in formation.py. Also the
marginal cost of one more worker (slope between the smallest and largest size).
The raw ratio (hosts included in both) at the largest size is printed last: at
scale Terraform makes some hosts while others join, which the hosts-excluded
number cannot separate.
"""

from __future__ import annotations

import argparse

from _bench import baseline_repo, load, machine, require_root, say, table
from formation import measure, summary

from swarmforge.targets.local.target import LocalTarget


def numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--managers", type=int, default=3)
    parser.add_argument("--workers", type=numbers, default=[2, 10, 25],
                        help="worker counts, comma-separated (default 2,10,25)")
    default = LocalTarget.default_parallelism
    parser.add_argument("--parallelism", type=numbers, default=[default],
                        help=f"Terraform parallelism values to try, comma-separated (default "
                             f"{default}, the local target's)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--baseline", metavar="DIR", help="another checkout, timed in the same runs")
    args = parser.parse_args()
    require_root()
    baseline = baseline_repo(args.baseline)
    print(machine())
    results = {}
    for workers in args.workers:
        for parallelism in args.parallelism:
            say(f"{args.managers}+{workers}, parallelism {parallelism}")
            results[workers, parallelism] = measure(args.managers, workers, args.runs, parallelism,
                                                    baseline)
    labels = ["apply", *(["baseline"] if baseline else [])]
    rows = []
    for (workers, parallelism), runs in results.items():
        for label in labels:
            s = summary(runs, label)
            rows.append([f"{args.managers}+{workers}", parallelism, label, s["floor_hosts"],
                         s["floor_swarm"], s["apply_wall"], s["apply_hosts"], s["apply_comparable"],
                         s["ratio"], s["raw_ratio"]])
    print(f"formation by size: {args.runs} run(s) each, medians in seconds\n")
    print(table(["size", "par.", "run", "floor hosts", "floor", "apply", "apply hosts",
                 "apply w/o hosts", "ratio", "raw ratio"], rows))
    small, large = min(args.workers), max(args.workers)
    if small != large:
        print(f"\none more worker costs (seconds, slope from {args.managers}+{small} to "
              f"{args.managers}+{large}):")
        for parallelism in args.parallelism:
            a, b = summary(results[small, parallelism]), summary(results[large, parallelism])
            slope = {key: (b[key] - a[key]) / (large - small) for key in a}
            print(f"  parallelism {parallelism}: floor {slope['floor_raw']:.2f} "
                  f"(its host {slope['floor_hosts']:.2f} + its join {slope['floor_swarm']:.2f}), "
                  f"invoke apply {slope['apply_wall']:.2f}")
    print("\nAt scale Terraform makes hosts while other nodes join, so `apply w/o hosts` (apply "
          "minus the time any host was being made) is only a lower bound there: read the raw "
          "ratio.")
    print(f"\n{load()}")
    best = min(args.parallelism, key=lambda p: summary(results[large, p])["apply_wall"])
    s = summary(results[large, best])
    print(f"ratio (formation {args.managers}+{large}, parallelism {best}, apply / floor, hosts "
          f"included in both): {s['raw_ratio']:.2f}  (hosts excluded: {s['ratio']:.2f})")


if __name__ == "__main__":
    main()
