"""One way to run external commands: argv lists, an explicit environment, output kept,
and a deadline for every one.

Secrets (join tokens) only ever travel in the ``env`` of a child process: never in
argv, never in a file. This module never logs a command's environment.

Deadlines: a child runs in a session of its own, so in a process group of its own,
and past its deadline the whole group is stopped (Terraform's provider plugins,
Packer's plugins, a script's children) and CommandTimeout says what ran, for how
long and which setting sets the deadline: never subprocess.TimeoutExpired. Stopping
starts with SIGINT, because on it Terraform stops gracefully, writes its state and
releases its state lock, and Packer removes what it made (a temporary instance, key
pair, security group): both need time for that, so SIGTERM and then SIGKILL come
only after ``grace`` seconds. Whatever the child leaves in its group is killed once
it has exited.

In a session of its own the child no longer gets the terminal's Ctrl-C: we forward
it (SIGINT to its group), give it the same grace, and only then let
KeyboardInterrupt go on; a second Ctrl-C meanwhile kills it at once. A SIGTERM to
us (a CI runner cancelling, ``timeout``) would no longer reach it either: it is
forwarded the same way, then we die of it as we would have.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from swarmforge.errors import CommandError, CommandTimeout
from swarmforge.private_files import CHILD_UMASK

LineSink = Callable[[str], None]

#: The deadline of a command that has no setting of its own (ip, git, ssh-keygen, docker
#: load/save): generous, since only a hung command should ever meet it.
DEFAULT_TIMEOUT = 1800.0
#: How long a stopped command gets to finish on SIGINT (Terraform: write its state and
#: release its lock; Packer: remove its temporary instance) before SIGTERM, then SIGKILL.
STOP_GRACE = 60.0
TERM_GRACE = 5.0  # from SIGTERM to SIGKILL
POLL = 0.05


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


#: The join tokens as Terraform reads them. Only a caller that means to hand them on
#: passes them in ``env`` (Terraform's runs); a child never inherits them from ours (the
#: sandbox command runs with Terraform's environment, tokens included, and starts
#: ip, ssh-keygen, docker).
SECRET_VARIABLES = frozenset({"TF_VAR_swarm_manager_token", "TF_VAR_swarm_worker_token"})


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Our environment without any join token, plus ``extra``, for one child only (ours is
    never changed)."""
    env = {name: value for name, value in os.environ.items()
           if name not in SECRET_VARIABLES and "SWMTKN-" not in value}
    env.update(extra or {})
    return env


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    stdin: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    what: str | None = None,
    setting: str = "",
    grace: float = STOP_GRACE,
) -> Completed:
    """Run ``argv`` to completion and capture its output; never raises on exit status.

    Past ``timeout`` seconds: CommandTimeout naming ``what`` (default: the program) and
    ``setting``, the setting that sets this deadline."""
    started = time.monotonic()
    with _running(argv, grace, stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                  env=child_env(env), cwd=cwd) as proc:
        try:
            stdout, stderr = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            killed_after = _stop(proc, grace)
            stdout, stderr = _leftover(proc)
            raise CommandTimeout(what or _name(argv), timeout, setting=setting,
                                 returncode=proc.returncode, output=stdout + stderr,
                                 killed_after=killed_after) from None
    return Completed(tuple(argv), proc.returncode, stdout, stderr, time.monotonic() - started)


def stream(
    argv: Sequence[str],
    on_line: LineSink,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    what: str | None = None,
    setting: str = "",
    grace: float = STOP_GRACE,
) -> Completed:
    """Run ``argv``, handing each line of its merged output to ``on_line`` as it comes.

    Past ``timeout`` seconds: CommandTimeout as for ``run``, with the lines so far."""
    started = time.monotonic()
    deadline = started + timeout
    lines: list[str] = []

    def take(line: str) -> None:
        lines.append(line)
        on_line(line)

    with _running(argv, grace, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                  stderr=subprocess.STDOUT, env=child_env(env), cwd=cwd) as proc:
        assert proc.stdout is not None
        # The output ends when every process holding it is gone, or the child exits later.
        if not (_read_lines(proc.stdout, deadline, take)
                and _exits(proc, deadline - time.monotonic())):
            killed_after = _stop(proc, grace)
            raise CommandTimeout(what or _name(argv), timeout, setting=setting,
                                 returncode=proc.returncode, output="\n".join(lines),
                                 killed_after=killed_after)
    return Completed(tuple(argv), proc.returncode, "\n".join(lines), "",
                     time.monotonic() - started)


def check(result: Completed, what: str, hint: str = "") -> Completed:
    """Return ``result`` if it succeeded, else raise a CommandError that says ``what`` failed."""
    if not result.ok:
        raise CommandError(what, result.returncode, result.stdout + "\n" + result.stderr, hint)
    return result


# --- the child's life ----------------------------------------------------------------


@contextlib.contextmanager
def _running(argv: Sequence[str], grace: float, **options: Any) -> Iterator[subprocess.Popen[Any]]:
    """The child, started in a session of its own; stopped (see ``_stop``) if the block
    ends in any exception: Ctrl-C, a forwarded SIGTERM, a deadline, an error of ours."""
    with _sigterm_raises(), subprocess.Popen(list(argv), start_new_session=True,
                                             umask=CHILD_UMASK, **options) as proc:
        try:
            yield proc
        except BaseException:
            _stop(proc, grace)
            raise


def _stop(proc: subprocess.Popen[Any], grace: float) -> float | None:
    """Stop ``proc`` and everything in its process group; reap it.

    SIGINT first, and ``grace`` seconds to exit on it; then SIGTERM, then SIGKILL. Once
    it has exited, whatever is left in its group is killed. Returns None when it exited
    on SIGINT in time, else ``grace``. Waits without reaping (WNOWAIT) until the end: an
    unreaped child keeps its pid, so its group id cannot name another group meanwhile.
    """
    if proc.returncode is not None:  # reaped already: its group id may be anyone's now
        return None
    killed_after = None
    try:
        _signal_group(proc, signal.SIGINT)
        if not _exits(proc, grace):
            killed_after = grace
            _signal_group(proc, signal.SIGTERM)
            _exits(proc, TERM_GRACE)
    finally:  # also on a second Ctrl-C while it stops: then it is killed at once
        _signal_group(proc, signal.SIGKILL)
        proc.wait()
    return killed_after


def _exits(proc: subprocess.Popen[Any], within: float) -> bool:
    """Whether ``proc`` exits within ``within`` seconds; it stays unreaped."""
    deadline = time.monotonic() + within
    pause = POLL / 64  # a child that closed its output is most often gone within a few ms
    while os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, POLL)
    return True


def _signal_group(proc: subprocess.Popen[Any], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)  # start_new_session: its pid is its group's id


def _leftover(proc: subprocess.Popen[Any]) -> tuple[str, str]:
    """What a stopped child printed; nothing if a process outside its group holds its pipes."""
    try:
        stdout, stderr = proc.communicate(timeout=TERM_GRACE)
    except subprocess.TimeoutExpired:
        return "", ""
    return stdout or "", stderr or ""


def _read_lines(pipe: IO[bytes], deadline: float, on_line: LineSink) -> bool:
    """Hand ``pipe``'s lines to ``on_line`` until it ends (True) or ``deadline`` (False)."""
    # UTF-8 whatever the locale: what Terraform and Packer write (box drawing in diagnostics).
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    with selectors.DefaultSelector() as selector:
        selector.register(pipe, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                if pending:
                    on_line(pending)
                return False
            if not selector.select(left):
                continue
            chunk = os.read(pipe.fileno(), 65536)
            pending += decoder.decode(chunk, final=not chunk)
            *complete, pending = pending.split("\n")
            for line in complete:
                on_line(line.removesuffix("\r"))
            if not chunk:
                if pending:
                    on_line(pending)
                return True


class _Terminated(BaseException):
    """SIGTERM arrived while a child ran: the child is stopped first, then we die of it."""


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn a SIGTERM to us into _Terminated while the block runs, then die of it.

    Only where SIGTERM would have killed us outright (its default action) and only in
    the main thread, where Python runs signal handlers; elsewhere nothing changes."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return

    def terminated(_signum: int, _frame: object) -> None:
        raise _Terminated

    signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    except _Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        raise  # not reached: SIGTERM's default action ends the process
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _name(argv: Sequence[str]) -> str:
    """The program and its subcommand, e.g. ``git describe``, for a message."""
    words = [Path(argv[0]).name] if argv else []
    if len(argv) > 1 and not argv[1].startswith("-"):
        words.append(argv[1])
    return " ".join(words)
