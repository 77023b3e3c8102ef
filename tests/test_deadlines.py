"""Every external command has a deadline (issue 15, point 9).

Real processes throughout: a shell script stands in for a hung `terraform`, `packer`
or `ssh` and is driven through the real adapters. It starts a child of its own (a
grandchild of ours, as Terraform's provider plugins are), and on SIGINT it records the
signal, takes a second to clean up, as Terraform does, and leaves a marker; the tests
check that marker, that no process of its group survives, and the one-line message.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from packaging.version import Version

from swarmforge import packer, process
from swarmforge.errors import CommandError, CommandTimeout
from swarmforge.ssh import SSH, SshProfile
from swarmforge.terraform import Terraform
from tests.conftest import REPO, invoke, unique_cluster

FAKE = r"""#!/bin/sh
# A hung terraform, packer or ssh: it answers `version`; anything else starts a child
# and waits. On SIGINT it takes a second to clean up, then exits; FAKE_IGNORE_SIGINT=1
# makes it deaf to SIGINT (SIGTERM still ends it).
case "$(basename "$0") $1" in
  "terraform version") echo '{"terraform_version": "1.9.0"}'; exit 0 ;;
  "packer version") echo 'Packer v1.9.4'; exit 0 ;;
esac
dir="${FAKE_DIR:?}"
if [ -n "$FAKE_IGNORE_SIGINT" ]; then
  trap '' INT
else
  trap 'echo SIGINT >> "$dir/signals"; stopping=1' INT
fi
trap 'echo SIGTERM >> "$dir/signals"; exit 143' TERM
echo $$ > "$dir/pid"
echo '{"type":"apply_start","@message":"swarm_worker[0]: Creating..."}'
sleep 30 &
child=$!
echo $child > "$dir/grandchild"
while [ -z "$stopping" ] && kill -0 $child 2>/dev/null; do wait $child; done
sleep 1
echo clean > "$dir/stopped"
exit 130
"""


class Fake:
    """The fake program as ``name``, first on PATH, and what it left behind."""

    def __init__(self, tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.dir = tmp_path / "fake"
        self.bin = tmp_path / "bin"
        self.dir.mkdir()
        self.bin.mkdir()
        self.path = self.bin / name
        self.path.write_text(FAKE)
        self.path.chmod(0o755)
        monkeypatch.setenv("FAKE_DIR", str(self.dir))
        monkeypatch.setenv("PATH", f"{self.bin}{os.pathsep}{os.environ['PATH']}")

    @property
    def signals(self) -> list[str]:
        marker = self.dir / "signals"
        return marker.read_text().split() if marker.exists() else []

    @property
    def stopped_cleanly(self) -> bool:
        return (self.dir / "stopped").exists()

    def pids(self) -> list[int]:
        """The fake and its own child, once both have started."""
        files = [self.dir / "pid", self.dir / "grandchild"]
        _wait_for(lambda: all(f.exists() and f.read_text().strip() for f in files))
        return [int(f.read_text()) for f in files]

    def all_gone(self) -> bool:
        return all(_gone(pid) for pid in self.pids())


def _wait_for(condition: object, within: float = 15.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def _gone(pid: int) -> bool:
    """Whether ``pid`` has exited (gone, or a zombie its new parent has yet to reap)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return True
        time.sleep(0.05)
    return False


# --- the adapters --------------------------------------------------------------------


def test_a_hung_terraform_apply_is_stopped_with_sigint_and_its_whole_group(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Fake(tmp_path, "terraform", monkeypatch)
    log = tmp_path / "terraform.log"
    tf = Terraform(str(fake.path), tmp_path, log_file=log, timeout=1)

    started = time.monotonic()
    with pytest.raises(CommandTimeout) as caught:
        tf.apply({"label": "x"}, {})
    took = time.monotonic() - started

    assert str(caught.value).splitlines() == [
        "terraform apply did not finish within 1 s (swarmforge.terraform_timeout); it was "
        "stopped. Terraform stopped cleanly: its state is kept and its lock released.",
        f"full log: {log}",
    ]
    assert fake.signals == ["SIGINT"]  # SIGINT first, and it was enough
    assert fake.stopped_cleanly
    assert fake.all_gone()  # the fake and the child it left behind
    assert took < 10  # 1 s, then its second of cleaning up; the fake would sleep 30
    assert "swarm_worker[0]: Creating..." in log.read_text()  # what it said is kept


def test_a_command_deaf_to_sigint_is_killed_after_the_grace(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Fake(tmp_path, "terraform", monkeypatch)
    monkeypatch.setenv("FAKE_IGNORE_SIGINT", "1")

    started = time.monotonic()
    with pytest.raises(CommandTimeout) as caught:
        process.run([str(fake.path), "apply"], timeout=1, grace=0.5)

    assert time.monotonic() - started < 10
    assert str(caught.value) == ("terraform apply did not finish within 1 s; it did not stop "
                                 "within 0.5 s of SIGINT and was killed.")
    assert caught.value.killed_after == 0.5
    assert "Creating..." in caught.value.output
    assert fake.signals == ["SIGTERM"]  # SIGINT was ignored; SIGTERM came after the grace
    assert not fake.stopped_cleanly
    assert fake.all_gone()


def test_a_hung_packer_build_is_stopped_and_its_log_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Fake(tmp_path, "packer", monkeypatch)
    (tmp_path / "template").mkdir()
    var_file = tmp_path / "bake.pkrvars.hcl"
    var_file.write_text('cluster = "demo"\n')

    with pytest.raises(CommandTimeout) as caught:
        packer.build(tmp_path / "template", var_file, tmp_path / "work", lambda line: None,
                     packer=str(fake.path), version=Version("1.9.4"), init=False, timeout=1)

    first, log_line = str(caught.value).splitlines()
    assert first == ("packer build did not finish within 1 s (swarmforge.packer_timeout); it "
                     "was stopped. Packer stopped cleanly, removing what it had made; nothing "
                     "was recorded.")
    log = Path(log_line.removeprefix("full log: "))
    assert log.parent == tmp_path / "work" and "Creating..." in log.read_text()
    assert fake.signals == ["SIGINT"] and fake.stopped_cleanly
    assert fake.all_gone()


def test_a_hung_ssh_command_meets_the_ssh_timeout_as_a_command_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Fake(tmp_path, "ssh", monkeypatch)
    profile = SshProfile(name="demo", user="root", identity=tmp_path / "id",
                         known_hosts=tmp_path / "known_hosts", config=tmp_path / "ssh_config")

    with pytest.raises(CommandError) as caught:  # callers that try the next manager catch this
        SSH(profile, timeout=1).check("10.0.0.9", "docker info", "docker info")

    assert isinstance(caught.value, CommandTimeout)
    assert str(caught.value) == ("docker info on 10.0.0.9 did not finish within 1 s "
                                 "(swarmforge.ssh_timeout); it was stopped.")
    assert fake.signals == ["SIGINT"] and fake.all_gone()


# --- Ctrl-C and SIGTERM while Terraform runs -----------------------------------------

RUN_APPLY = """
import sys
from pathlib import Path
from swarmforge.terraform import Terraform
Terraform(sys.argv[1], Path(sys.argv[2]), timeout=60).apply({}, {})
"""


def _apply_in_the_foreground(fake: Fake, workdir: Path) -> subprocess.Popen[str]:
    """Terraform's apply in a Python of its own, leading its own process group as a shell
    makes a foreground job, so that ``os.killpg`` does what the terminal's Ctrl-C does."""
    python = subprocess.Popen([sys.executable, "-c", RUN_APPLY, str(fake.path), str(workdir)],
                              cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                              start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    fake.pids()  # running, its child too
    return python


def test_ctrl_c_reaches_terraform_once_and_waits_for_it_to_stop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Fake(tmp_path, "terraform", monkeypatch)
    python = _apply_in_the_foreground(fake, tmp_path)

    os.killpg(python.pid, signal.SIGINT)  # Ctrl-C: the foreground group, not Terraform's session
    _, stderr = python.communicate(timeout=30)

    assert fake.signals == ["SIGINT"]  # forwarded, once: it does not count as a second Ctrl-C
    assert fake.stopped_cleanly  # and we waited for it to finish before going on
    assert python.returncode == -signal.SIGINT and "KeyboardInterrupt" in stderr
    assert fake.all_gone()


def test_a_second_ctrl_c_kills_terraform_at_once(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Fake(tmp_path, "terraform", monkeypatch)
    python = _apply_in_the_foreground(fake, tmp_path)

    os.killpg(python.pid, signal.SIGINT)
    _wait_for(lambda: fake.signals == ["SIGINT"])
    os.killpg(python.pid, signal.SIGINT)  # while it cleans up
    python.communicate(timeout=30)

    assert not fake.stopped_cleanly
    assert fake.all_gone()


def test_sigterm_to_us_stops_terraform_first_then_ends_us(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Fake(tmp_path, "terraform", monkeypatch)
    python = _apply_in_the_foreground(fake, tmp_path)

    os.killpg(python.pid, signal.SIGTERM)  # as `timeout` or a CI runner would
    _, stderr = python.communicate(timeout=30)

    assert fake.signals == ["SIGINT"] and fake.stopped_cleanly
    assert python.returncode == -signal.SIGTERM
    assert "Traceback" not in stderr
    assert fake.all_gone()


# --- end to end ----------------------------------------------------------------------


def test_the_cli_says_in_one_line_which_command_ran_out_of_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Fake(tmp_path, "packer", monkeypatch)

    started = time.monotonic()
    result = invoke("bake", "--target", "aws", "--dry-run", "--cluster", unique_cluster("late"),
                    state_dir=tmp_path / "state",
                    env={"INVOKE_SWARMFORGE_PACKER_TIMEOUT": "1"}, timeout=120)

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    progress, said = result.stderr.strip().splitlines()  # the step under way, then the error
    assert progress == "==> validating packer/ with Packer 1.9.4"
    assert said == ("swarmforge: packer init did not finish within 1 s (swarmforge.packer_timeout); "
                    "it was stopped. Run the same command again to carry on.")
    assert fake.signals == ["SIGINT"] and fake.all_gone()
    assert time.monotonic() - started < 60
