"""Start-up: `invoke --list` and `invoke status`, against the cheapest thing each could be.

    .venv/bin/python benchmarks/startup.py [--runs 10] [--baseline DIR]

Floors, measured in the same run and interleaved with the commands:
- `invoke --list`: ``python -c pass`` (the interpreter alone); also shown, Invoke
  alone listing a one-task tasks.py (what no change of ours can go below);
- `invoke status` on a converged 3+2 sandbox cluster: a bare ``ssh NODE true``
  round trip on a fresh connection (status must reach the swarm at least once).
Then where the import time goes (``python -X importtime -c 'import tasks'``).
The ratios are printed last.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from _bench import (
    REPO,
    Cleanup,
    PipelineCluster,
    Timed,
    baseline_repo,
    child_env,
    invoke_argv,
    load,
    machine,
    median,
    must,
    repo_env,
    require_root,
    say,
    state_root,
    table,
    timed,
)

INVOKE_ALONE = '''from invoke import task


@task
def hello(c):
    """Say nothing."""
'''


def import_profile(repo: Path, top: int = 8) -> list[tuple[str, float]]:
    """The heaviest imports under ``import tasks``: (module, cumulative seconds), top level first."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", "import tasks"], cwd=repo,
                            env=child_env(repo_env(repo)), capture_output=True, text=True, check=False)
    rows = []
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if match and len(match.group(2)) <= 5:  # `tasks` and the two levels below it
            rows.append((match.group(3), int(match.group(1)) / 1e6))
    return sorted(rows, key=lambda row: -row[1])[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--baseline", metavar="DIR", help="another checkout, timed in the same runs")
    args = parser.parse_args()
    require_root()
    baseline = baseline_repo(args.baseline)
    print(machine())
    repos = {"": REPO, **({" (baseline)": baseline} if baseline else {})}
    times: dict[str, list[float]] = {}

    def job(label: str, run: Callable[[], Timed]) -> Callable[[], None]:
        def timed_job() -> None:
            times.setdefault(label, []).append(must(run(), label).seconds)
        return timed_job

    with state_root() as root, Cleanup() as cleanup, tempfile.TemporaryDirectory() as alone:
        Path(alone, "tasks.py").write_text(INVOKE_ALONE)
        cluster = PipelineCluster("s", root)
        cleanup.add(cluster.name, cluster.destroy)
        say(f"forming {cluster.name} ({load()})")
        cluster.apply(3, 2)
        node = cluster.status()["nodes"][0]["address"]
        bare_ssh = ["ssh", "-F", str(cluster.ssh_config()), "-o", "ControlMaster=no",
                    "-o", "ControlPath=none", node, "true"]
        jobs = [job("python -c pass", lambda: timed([sys.executable, "-c", "pass"])),
                job("invoke --list, one-task tasks.py", lambda: timed([*invoke_argv(), "--list"],
                                                                     cwd=Path(alone))),
                job("ssh NODE true (fresh connection)", lambda: timed(bare_ssh))]
        for suffix, repo in repos.items():
            jobs.append(job(f"invoke --list{suffix}", lambda repo=repo: timed(
                [*invoke_argv(), "--list"], env=repo_env(repo), cwd=repo)))
            other = PipelineCluster("s", root, repo, name=cluster.name)
            jobs.append(job(f"invoke status{suffix}", lambda other=other: other.invoke("status")))
        for run in jobs:  # warm-up, untimed: bytecode caches written, files in the page cache
            run()
        times.clear()
        for i in range(args.runs):
            say(f"run {i + 1}/{args.runs} ({load()})")
            shift = i % len(jobs)
            for run in jobs[shift:] + jobs[:shift]:
                run()
    medians = {label: median(values) for label, values in times.items()}
    python, ssh_floor = medians["python -c pass"], medians["ssh NODE true (fresh connection)"]
    rows = []
    for label, seconds in medians.items():
        floor = ssh_floor if label.startswith("invoke status") else python
        rows.append([label, seconds, seconds / floor if label.startswith("invoke") else ""])
    print(f"start-up: {args.runs} run(s) each, interleaved; medians in seconds; ratio against "
          "`python -c pass` (--list) or the bare ssh round trip (status)\n")
    print(table(["command", "seconds", "ratio"], rows))
    for suffix, repo in repos.items():
        print(f"\nheaviest imports under `import tasks`{suffix} (cumulative):\n")
        print(table(["module", "seconds"], import_profile(repo)))
    print(f"\n{load()}")
    invoke_alone = medians["invoke --list, one-task tasks.py"]
    print(f"ratio: invoke --list / Invoke alone (one-task tasks.py) = "
          f"{medians['invoke --list'] / invoke_alone:.2f}; "
          f"/ python -c pass = {medians['invoke --list'] / python:.1f}; "
          f"invoke status / ssh round trip = {medians['invoke status'] / ssh_floor:.1f}")


if __name__ == "__main__":
    main()
