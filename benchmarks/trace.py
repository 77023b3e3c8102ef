"""Where a task's time goes: every external command it runs, with its start and duration.

    .venv/bin/python benchmarks/trace.py apply --cluster NAME [...]     (any invoke task)

Runs the task in this process, as `invoke` would, with swarmforge's one command
runner (swarmforge.process) wrapped to record each command: ssh (with its remote
command), terraform (with its subcommand), the rest. Prints the timeline and a
summary by kind on stderr; the task's own output is untouched. A diagnosis tool
for the benchmarks, not a benchmark: it prints no ratio.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

from _bench import REPO

STARTED = time.monotonic()
calls: list[tuple[float, float, str, str]] = []  # (start, seconds, kind, what)


def describe(argv: tuple[str, ...] | list[str]) -> tuple[str, str]:
    name = os.path.basename(argv[0])
    if name == "ssh":
        rest = [a for a in argv[1:] if not a.startswith("-")]
        # ssh -F CONFIG HOST COMMAND: the config path is the first bare word.
        host, command = (rest[1], rest[2]) if len(rest) > 2 else (rest[-1], "")
        return "ssh", f"{host}: {command[:70]}"
    if name == "terraform":
        return f"terraform {argv[1]}", ""
    return name, " ".join(argv[1:4])[:70]


def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
    def traced(argv: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return original(argv, *args, **kwargs)
        finally:
            kind, what = describe(list(argv))
            calls.append((started - STARTED, time.monotonic() - started, kind, what))
    return traced


def patch() -> None:
    """Wrap swarmforge.process's run and stream, before and after other modules took them."""
    import swarmforge.process as process

    originals = {process.run: wrap(process.run), process.stream: wrap(process.stream)}
    process.run, process.stream = originals[process.run], originals[process.stream]
    for name, module in list(sys.modules.items()):
        if not name.startswith("swarmforge") or module is None:
            continue
        for attr, value in list(vars(module).items()):
            if callable(value) and value in originals:
                setattr(module, attr, originals[value])


def report() -> None:
    out = sys.stderr
    print(f"\n{'start':>7} {'secs':>6}  command", file=out)
    for start, seconds, kind, what in calls:
        print(f"{start:7.2f} {seconds:6.2f}  {kind}  {what}", file=out)
    totals: dict[str, list[float]] = {}
    for _, seconds, kind, _ in calls:
        totals.setdefault(kind, []).append(seconds)
    print(f"\n{'kind':<20} {'calls':>5} {'secs':>7}", file=out)
    for kind, values in sorted(totals.items(), key=lambda item: -sum(item[1])):
        print(f"{kind:<20} {len(values):>5} {sum(values):7.2f}", file=out)
    print(f"{'wall':<20} {'':>5} {time.monotonic() - STARTED:7.2f}", file=out)


def main() -> None:
    os.chdir(REPO)
    patch()  # first: modules imported later take the wrapped runner
    from invoke.main import program

    try:
        program.run(["invoke", *sys.argv[1:]], exit=False)
    finally:
        report()


if __name__ == "__main__":
    main()
