"""No join token or unlock key in any text swarmforge keeps or shows (issue 17, point 2).

``redact`` on the shapes Docker prints, then the places that text goes: a real command
that prints a token and fails (or hangs) through the real process runner, the error the
CLI prints, the operation journal and the rebuild report as written to disk. The whole
path on a real swarm, a worker-token read that fails after the manager's token was read,
is tests/test_failures_local.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from invoke.exceptions import Exit

from swarmforge import process
from swarmforge.cli import clean_exit
from swarmforge.errors import CommandError, CommandTimeout, SwarmError
from swarmforge.operation import (
    FileStorage,
    Journal,
    NodeEntry,
    ReplacementRecord,
    ReplaceNodeRecord,
)
from swarmforge.rebuild import RebuildReport
from swarmforge.redact import JOIN_TOKEN_MARKER, UNLOCK_KEY_MARKER, redact

# As `docker swarm join-token -q manager` and `docker swarm unlock-key -q` print them.
MANAGER_TOKEN = ("SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-"
                 "1awxwuwd3z9j1z3puu7rcgdbx")
WORKER_TOKEN = ("SWMTKN-1-49nj1cmql0jkz5s954yi3oex3nedyz0fb0xx14ie39trti4wxv-"
                "8vxv8rssmk743ojnwacrr2e7c")
UNLOCK_KEY = "SWMKEY-1-7c37Cc8654o6p38HnroywCi19pllOnGtbdZEgtKxZu8"
UNLOCK_KEY_B64 = "SWMKEY-1-fySn8TY4w5lKcWcJPIpKufejh9hxx5KYwx6XZigx3Q4+/a"


def test_redact_replaces_every_token_and_key_and_keeps_the_rest() -> None:
    text = (f"To add a manager to this swarm, run the following command:\n\n"
            f"    docker swarm join --token {MANAGER_TOKEN} 10.213.4.10:2377\n"
            f"worker={WORKER_TOKEN}; unlock: {UNLOCK_KEY} or {UNLOCK_KEY_B64}.\n"
            f'{{"JoinToken": "{WORKER_TOKEN}"}} cut off: SWMTKN-')

    assert redact(text) == (
        f"To add a manager to this swarm, run the following command:\n\n"
        f"    docker swarm join --token {JOIN_TOKEN_MARKER} 10.213.4.10:2377\n"
        f"worker={JOIN_TOKEN_MARKER}; unlock: {UNLOCK_KEY_MARKER} or {UNLOCK_KEY_MARKER}.\n"
        f'{{"JoinToken": "{JOIN_TOKEN_MARKER}"}} cut off: {JOIN_TOKEN_MARKER}')
    assert redact("docker swarm join-token -q worker failed (exit 1)") == \
        "docker swarm join-token -q worker failed (exit 1)"


# A manager that answered the first read and refused the second, as `sh -c` does it here.
HALF_READ = (f"echo {MANAGER_TOKEN}; "
             "echo 'Error response from daemon: This node is not a swarm manager.' >&2; exit 1")


def test_a_command_that_printed_a_token_then_failed_leaves_none_in_its_error() -> None:
    result = process.run(["sh", "-c", HALF_READ])
    assert result.returncode == 1 and MANAGER_TOKEN in result.stdout  # the token was there

    with pytest.raises(CommandError) as caught:
        process.check(result, "docker swarm join-token")

    error = caught.value
    assert "SWMTKN-" not in str(error) + repr(error) + error.output + repr(error.args)
    assert str(error) == ("docker swarm join-token failed (exit 1):\n"
                          f"{JOIN_TOKEN_MARKER}\n"
                          "Error response from daemon: This node is not a swarm manager.")


def test_a_hung_command_that_printed_a_token_leaves_none_in_its_timeout() -> None:
    with pytest.raises(CommandTimeout) as caught:
        process.run(["sh", "-c", f"echo {MANAGER_TOKEN}; exec sleep 30"], timeout=0.5, grace=1)

    error = caught.value
    error.detail = f"it said {WORKER_TOKEN}"  # what an adapter adds later is redacted too
    assert "SWMTKN-" not in str(error) + error.output
    assert JOIN_TOKEN_MARKER in error.output


def test_the_cli_prints_an_error_without_the_token_it_held() -> None:
    @clean_exit
    def task() -> None:
        raise CommandError("docker swarm join-token on 10.213.4.10", 1,
                           process.run(["sh", "-c", HALF_READ]).stdout)

    @clean_exit
    def other_task() -> None:
        error = SwarmError("from a message: ")
        error.args = (f"from a message: {UNLOCK_KEY}",)  # as if made without our __init__
        raise error

    for failing in (task, other_task):
        with pytest.raises(Exit) as caught:
            failing()
        assert caught.value.message.startswith("swarmforge: ")
        assert "SWMTKN-" not in caught.value.message and "SWMKEY-" not in caught.value.message


def test_the_journal_and_the_rebuild_report_keep_no_token(tmp_path: Path) -> None:
    journal = Journal(FileStorage(tmp_path / "journal.json"))
    entry = NodeEntry("null_resource.swarm_worker[0]", "w0", "10.213.4.100", "10.213.4.100",
                      "abc", "c-worker-0")
    record = ReplaceNodeRecord(
        summary="replace worker c-worker-0", resume="invoke replace-node c-worker-0 --yes",
        query="c-worker-0",
        replacement=ReplacementRecord("worker", [entry], 1, 1, [0],
                                      stopped=f"step 3/4 (replace): failed: {MANAGER_TOKEN}"))
    journal.begin(record)
    report = RebuildReport("c", "local", "2026-12-05T20:00:00+00:00",
                           error=f"step 3/4 failed:\n{MANAGER_TOKEN}",
                           notes=[f"unlock key {UNLOCK_KEY}"])
    report.save(tmp_path / "rebuild-report.json")

    for written in ("journal.json", "rebuild-report.json"):
        text = (tmp_path / written).read_text()
        assert "SWMTKN-" not in text and "SWMKEY-" not in text, written
        json.loads(text)  # still JSON
    loaded = journal.load()
    assert isinstance(loaded, ReplaceNodeRecord)
    assert loaded.replacement.stopped == f"step 3/4 (replace): failed: {JOIN_TOKEN_MARKER}"
    saved = json.loads((tmp_path / "rebuild-report.json").read_text())
    assert saved["error"] == f"step 3/4 failed:\n{JOIN_TOKEN_MARKER}"
    assert saved["notes"] == [f"unlock key {UNLOCK_KEY_MARKER}"]
