"""One way to run external commands: argv lists, an explicit environment, output kept.

Secrets (join tokens) only ever travel in the ``env`` of a child process: never in
argv, never in a file. This module never logs a command's environment.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from swarmforge.errors import CommandError

LineSink = Callable[[str], None]


@dataclass(frozen=True)
class Completed:
    """A finished command: its exit status and everything it printed."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Our environment plus ``extra``, for one child only (ours is never changed)."""
    env = dict(os.environ)
    env.update(extra or {})
    return env


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    stdin: str | None = None,
    timeout: float | None = None,
) -> Completed:
    """Run ``argv`` to completion and capture its output; never raises on exit status."""
    started = time.monotonic()
    proc = subprocess.run(
        list(argv),
        input=stdin,
        capture_output=True,
        text=True,
        env=child_env(env),
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    return Completed(
        tuple(argv), proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started
    )


def stream(
    argv: Sequence[str],
    on_line: LineSink,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> Completed:
    """Run ``argv``, handing each line of its merged output to ``on_line`` as it comes."""
    started = time.monotonic()
    lines: list[str] = []
    with subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=child_env(env),
        cwd=cwd,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            on_line(line)
    output = "\n".join(lines)
    return Completed(tuple(argv), proc.returncode, output, "", time.monotonic() - started)


def check(result: Completed, what: str, hint: str = "") -> Completed:
    """Return ``result`` if it succeeded, else raise a CommandError that says ``what`` failed."""
    if not result.ok:
        raise CommandError(what, result.returncode, result.stdout + "\n" + result.stderr, hint)
    return result
