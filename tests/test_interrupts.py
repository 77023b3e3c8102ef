"""Ctrl-C and a deadline end a task with one line, never a traceback (issue 17, point 10).

Through the real `invoke` entry point: a task blocked for real (a hung `packer` stand-in,
an AWS endpoint that accepts and never answers) gets SIGINT as a terminal's Ctrl-C sends
it, to the foreground process group. A journalled operation interrupted on a real swarm,
with its resume command, is tests/test_failures_local.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from invoke.exceptions import Exit

from swarmforge.cli import clean_exit
from tests.conftest import INVOKE, REPO, unique_cluster
from tests.test_deadlines import Fake


def _start(*args: str, state: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`invoke ARGS` leading its own process group, as a shell runs a foreground job."""
    return subprocess.Popen([*INVOKE, *args], cwd=REPO, start_new_session=True,
                            env={**os.environ, "INVOKE_SWARMFORGE_STATE_DIR": str(state),
                                 **(env or {})},
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _ctrl_c(task: subprocess.Popen[str]) -> tuple[str, str]:
    os.killpg(task.pid, signal.SIGINT)
    return task.communicate(timeout=60)


def _the_one_line(stderr: str) -> str:
    """The error line: the last of stderr, and the only one that says ``swarmforge:``."""
    assert "Traceback" not in stderr, stderr
    said = [line for line in stderr.splitlines() if line.startswith("swarmforge:")]
    assert len(said) == 1 and stderr.strip().splitlines()[-1] == said[0], stderr
    return said[0]


def test_ctrl_c_during_a_step_says_which_and_exits_130(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Fake(tmp_path, "packer", monkeypatch)  # a packer that hangs: the step blocks
    task = _start("bake", "--target", "aws", "--dry-run", "--cluster", unique_cluster("intr"),
                  state=tmp_path / "state")
    fake.pids()  # packer runs

    _, stderr = _ctrl_c(task)

    assert task.returncode == 130, stderr
    assert _the_one_line(stderr) == ("swarmforge: interrupted during validating packer/ with "
                                     "Packer 1.9.4")
    assert fake.signals == ["SIGINT"] and fake.stopped_cleanly  # forwarded, waited for
    assert fake.all_gone()


@pytest.fixture
def silent_endpoint() -> Iterator[tuple[str, threading.Event]]:
    """An HTTP endpoint that accepts connections and never answers; the event is set at the
    first connection."""
    server = socket.create_server(("127.0.0.1", 0))
    connected = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:  # closed: the test is over
                return
            connected.set()

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}", connected
    server.close()
    for conn in held:
        conn.close()


def test_ctrl_c_while_aws_does_not_answer_ends_in_one_line(
        tmp_path: Path, silent_endpoint: tuple[str, threading.Event]) -> None:
    url, connected = silent_endpoint
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
           "INVOKE_SWARMFORGE_AWS_ENDPOINT": url, "INVOKE_SWARMFORGE_STATE_ENDPOINT": url,
           "INVOKE_SWARMFORGE_STATE_BUCKET": "swarmforge-intr-state",
           "INVOKE_SWARMFORGE_KEY_NAME": "intr", "INVOKE_SWARMFORGE_SSH_KEY": str(key),
           "INVOKE_SWARMFORGE_ALLOWED_SSH_CIDRS": "203.0.113.7/32"}
    task = _start("status", "--target", "aws", "--cluster", unique_cluster("intr"),
                  state=tmp_path / "state", env=aws)
    assert connected.wait(30), "status never called AWS"
    assert task.poll() is None  # blocked on the endpoint

    _, stderr = _ctrl_c(task)

    assert task.returncode == 130, stderr
    assert _the_one_line(stderr).startswith("swarmforge: interrupted")


def test_a_deadline_nobody_caught_ends_in_one_line() -> None:
    @clean_exit
    def task() -> None:  # a library's own subprocess deadline, outside process.run
        subprocess.run(["sleep", "5"], timeout=0.2, check=False)

    with pytest.raises(Exit) as caught:
        task()

    assert caught.value.code == 1
    assert caught.value.message == ("swarmforge: sleep did not finish within 0.2 s. Run the "
                                    "same command again to carry on.")

