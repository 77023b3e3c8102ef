"""The bake's provisioner, scripts/install-docker.sh, against Ubuntu's own apt jobs (issue 16).

On a fresh instance apt-daily and apt-daily-upgrade (unattended-upgrade) start on
their own and hold apt's locks for minutes: every apt-get must wait for the locks,
and the script first waits, bounded, for those units. Where there is no systemd
(a sandbox host) it must not wait at all. Its wait runs here against a fake
``systemctl`` that answers as systemd does.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "install-docker.sh"
WAIT_FUNCTION = re.compile(r"(?ms)^wait_for_apt_daily\(\) \{$.*?^\}$")

# Exits as `systemctl is-active` does: 0 only when a unit is "active", 3 otherwise,
# "activating" (a oneshot unit at work) included. Its first $BUSY_CALLS answers say
# apt-daily-upgrade.service is $BUSY_STATE.
FAKE_SYSTEMCTL = """#!/bin/bash
echo "$*" >>"$CALLS"
if (( $(wc -l <"$CALLS") <= BUSY_CALLS )); then state="$BUSY_STATE"; else state=inactive; fi
printf 'inactive\\n%s\\n' "$state"
[[ "$state" == active ]] || exit 3
"""


def code() -> str:
    return "\n".join(line for line in SCRIPT.read_text().splitlines() if not line.lstrip().startswith("#"))


def test_every_apt_command_waits_for_the_dpkg_lock() -> None:
    text = code()
    commands = re.findall(r"^\s*(apt-get|apt_get|apt-mark)\b(.*)$", text, re.MULTILINE)
    assert len(commands) >= 6
    # apt-get itself only inside the apt_get wrapper, which adds the timeout.
    assert [rest for name, rest in commands if name == "apt-get"] == [
        ' -o DPkg::Lock::Timeout="${APT_WAIT_SECONDS}" "$@"'
    ]
    marks = [rest for name, rest in commands if name == "apt-mark"]
    assert marks and all("DPkg::Lock::Timeout" in rest for rest in marks)
    assert re.search(r"^readonly APT_WAIT_SECONDS=600$", text, re.MULTILINE)
    first_apt = min(text.index(call) for call in ("apt_get ", "apt-mark "))
    assert re.search(r"^wait_for_apt_daily$", text[:first_apt], re.MULTILINE)


def run_wait(tmp_path: Path, *, systemd: bool, busy_calls: int = 0, busy_state: str = "activating",
             bound: int = 600) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run the script's wait_for_apt_daily alone, ``/run/systemd/system`` played by a tmp dir."""
    fakes = tmp_path / "bin"
    fakes.mkdir()
    (fakes / "systemctl").write_text(FAKE_SYSTEMCTL)
    (fakes / "sleep").write_text("#!/bin/bash\n")  # no real waiting in a test
    for fake in fakes.iterdir():
        fake.chmod(0o755)
    run_dir = tmp_path / "run-systemd-system"
    if systemd:
        run_dir.mkdir()
    function = WAIT_FUNCTION.search(SCRIPT.read_text())
    assert function, "install-docker.sh has no wait_for_apt_daily()"
    program = "\n".join([
        "set -euo pipefail",
        f"readonly APT_WAIT_SECONDS={bound}",
        function.group(0).replace("/run/systemd/system", str(run_dir)),
        "wait_for_apt_daily",
        "echo returned",
    ])
    calls = tmp_path / "calls"
    calls.touch()
    env = {"PATH": f"{fakes}:/usr/bin:/bin", "CALLS": str(calls), "BUSY_CALLS": str(busy_calls),
           "BUSY_STATE": busy_state}
    done = subprocess.run(["bash", "-c", program], env=env, capture_output=True, text=True,
                          timeout=30, check=False)
    return done, calls.read_text().splitlines()


def test_without_systemd_nothing_is_waited_for(tmp_path: Path) -> None:
    done, calls = run_wait(tmp_path, systemd=False, busy_calls=99)

    assert (done.returncode, done.stdout, calls) == (0, "returned\n", [])


@pytest.mark.parametrize("busy_state", ["activating", "active", "deactivating"])
def test_the_apt_daily_units_are_waited_for(tmp_path: Path, busy_state: str) -> None:
    done, calls = run_wait(tmp_path, systemd=True, busy_calls=3, busy_state=busy_state)

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "==> Waiting for Ubuntu's own apt jobs (apt-daily, unattended upgrades) to finish",
        "returned",
    ]
    # Asked until both were idle; never unattended-upgrades.service, the always-on shutdown hook.
    assert calls == ["is-active apt-daily.service apt-daily-upgrade.service"] * 4


def test_idle_units_cost_one_question(tmp_path: Path) -> None:
    done, calls = run_wait(tmp_path, systemd=True)

    assert (done.returncode, done.stdout, len(calls)) == (0, "returned\n", 1)


def test_the_wait_is_bounded(tmp_path: Path) -> None:
    done, calls = run_wait(tmp_path, systemd=True, busy_calls=10**6, bound=0)

    assert done.returncode == 0, done.stderr
    assert "still running after 0s; going on, apt-get waits for the locks" in done.stdout
    assert done.stdout.endswith("returned\n") and len(calls) == 1
