"""What apply no longer does twice, and the checks each shortcut keeps (issue 18).

- `terraform init` runs when the workspace it made could differ (the config, the
  scripts, the backend, the binary, or what init left in the workdir), not on
  every command: real terraform on terraform/local's config.
- A re-apply that changes nothing takes one health read (the same checks as every
  poll of a wait) and no streak; where the config has no network to change, that
  read and the token rotation run while Terraform plans. Not healthy: the wait, as
  before. Formation rotates the tokens once the first poll is healthy, within the
  streak, and reads them from the first manager, whose SSH connection it opened as
  Terraform began that manager's `docker swarm init` (phase 1). The stand-in of
  tests/test_network_first.py: real Terraform, a fake ssh that is a swarm and logs what
  it was asked.
"""

from __future__ import annotations

import re
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from swarmforge.apply_guards import swarm_only_config
from swarmforge.settings import Settings
from swarmforge.targets.local.target import LocalTarget
from swarmforge.tools import PROVIDER_MIRROR
from swarmforge.workspace import initialised_terraform
from tests.conftest import unique_cluster
from tests.terraform_config import TERRAFORM
from tests.test_network_first import STAND_IN, StandIn

needs_mirror = pytest.mark.skipif(not PROVIDER_MIRROR.exists(),
                                  reason=f"no provider mirror at {PROVIDER_MIRROR} "
                                         "(run scripts/setup-host.sh)")

# Wraps the stand-in's fake ssh (ssh-swarm beside it): says whether Terraform held the
# state's lock (a plan or apply was running) when a manager was first asked of the swarm
# in an apply (the log starts empty at each); with
# FAKE_FIRST_LIST_DOWN, the first node list shows the workers Down.
WRAPPER = """#!{python}
import os, subprocess, sys, time

here = os.path.dirname(os.path.abspath(__file__))
command = sys.argv[-1]
lock = os.environ.get("FAKE_PLAN_LOCK", "")


def log(line):
    with open(os.environ["FAKE_SWARM_LOG"], "a") as out:
        out.write("ssh: " + line + "\\n")


def asked_before():
    with open(os.environ["FAKE_SWARM_LOG"]) as logged:
        return "ssh: asked " in logged.read()


if lock and ("docker info" in command or "http://docker/nodes" in command) \
        and not asked_before():
    deadline = time.monotonic() + (20 if os.environ.get("FAKE_WAIT_FOR_PLAN") else 0)
    while not os.path.exists(lock) and time.monotonic() < deadline:
        time.sleep(0.002)
    log("asked while terraform ran" if os.path.exists(lock) else "asked with no terraform running")
answer = subprocess.run([os.path.join(here, "ssh-swarm"), *sys.argv[1:]], capture_output=True,
                        text=True)
out = answer.stdout
first = os.path.join(here, "listed")
if os.environ.get("FAKE_FIRST_LIST_DOWN") and "http://docker/nodes" in command \\
        and not os.path.exists(first):
    open(first, "w").close()
    out = "\\n".join(line.replace('"ready"', '"down"') if "worker" in line else line
                     for line in out.split("\\n"))
sys.stdout.write(out)
sys.exit(answer.returncode)
"""


def _swarm_only_config(dest: Path) -> Path:
    """The stand-in's config without its network: nodes and swarm steps only, as the sandbox's."""
    dest.mkdir()
    text = (STAND_IN / "main.tf").read_text()
    text = re.sub(r'resource "null_resource" "ssh_rule" \{.*?\n\}\n', "", text, flags=re.S)
    (dest / "main.tf").write_text(text.replace("  depends_on = [null_resource.ssh_rule]\n", ""))
    return dest


class Watched(StandIn):
    """The stand-in with the wrapped ssh."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: Path) -> None:
        super().__init__(tmp_path, monkeypatch)
        self.target.config_dir = config
        bin_dir = tmp_path / "bin"
        (bin_dir / "ssh").rename(bin_dir / "ssh-swarm")
        (bin_dir / "ssh").write_text(WRAPPER.format(python=sys.executable))
        (bin_dir / "ssh").chmod(0o755)
        workdir = self.state_dir / self.name / "terraform"
        monkeypatch.setenv("FAKE_PLAN_LOCK", str(workdir / ".terraform.tfstate.lock.info"))

    def asked(self, logged: list[str]) -> list[str]:
        return [line for line in logged if line.startswith("ssh: ")]


@pytest.fixture
def swarm_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Watched, list[str]]:
    """A formed 1+1 stand-in whose config has no network; and what its formation logged."""
    if not PROVIDER_MIRROR.exists():
        pytest.skip(f"no provider mirror at {PROVIDER_MIRROR} (run scripts/setup-host.sh)")
    cluster = Watched(tmp_path, monkeypatch, _swarm_only_config(tmp_path / "swarm_only"))
    return cluster, cluster.apply(1, 1)


def test_only_a_config_of_nodes_and_swarm_steps_is_read_beside_the_plan(tmp_path: Path) -> None:
    assert swarm_only_config(TERRAFORM / "local")
    assert not swarm_only_config(TERRAFORM / "aws")  # rules and NAT: the swarm comes after
    assert not swarm_only_config(STAND_IN)
    assert swarm_only_config(_swarm_only_config(tmp_path / "c"))


def test_formation_rotates_the_tokens_once_the_first_poll_is_healthy(
        swarm_only: tuple[Watched, list[str]]) -> None:
    cluster, formed = swarm_only
    asked = [line for line in cluster.asked(formed) if not line.startswith("ssh: asked ")]
    after_tokens = asked[asked.index("ssh: read the tokens") + 1:]
    # The streak's two polls, and one rotation between them, through the manager that answered.
    assert after_tokens == ["ssh: list the nodes", "ssh: rotate the tokens", "ssh: list the nodes"]


def test_formation_connects_to_the_first_manager_as_its_step_begins_and_asks_it_for_tokens(
        swarm_only: tuple[Watched, list[str]]) -> None:
    cluster, formed = swarm_only
    opened = formed.index("ssh: open a connection")
    # Opened once Terraform began the first manager's swarm step (every host made by then),
    # within phase 1; then the tokens read from that manager, with no "is it an active
    # manager" first: only a manager with a leader gives them.
    assert max(i for i, line in enumerate(formed) if line.startswith("node: ")) < opened
    assert cluster.asked(formed)[:2] == ["ssh: open a connection", "ssh: read the tokens"]


def test_a_no_op_reapply_reads_the_health_once_while_terraform_plans(
        swarm_only: tuple[Watched, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    cluster, _ = swarm_only
    runs_before = len(cluster.terraform_runs())
    monkeypatch.setenv("FAKE_WAIT_FOR_PLAN", "1")

    logged = cluster.apply(1, 1)

    # The listing is asked of the first manager straight away: it answers only with a
    # leader and a quorum, the check "is it an active manager" would make first.
    assert cluster.asked(logged) == ["ssh: asked while terraform ran", "ssh: list the nodes",
                                     "ssh: rotate the tokens"]
    assert cluster.terraform_runs()[runs_before:] == ["plan"]  # no init: nothing changed


def test_a_no_op_reapply_that_finds_the_swarm_unhealthy_waits_for_the_streak(
        swarm_only: tuple[Watched, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    cluster, _ = swarm_only
    monkeypatch.setenv("FAKE_FIRST_LIST_DOWN", "1")

    asked = cluster.asked(cluster.apply(1, 1))

    # The read beside the plan saw a worker down: no rotation then; then the wait's streak.
    assert asked.count("ssh: list the nodes") == 3
    assert asked.count("ssh: rotate the tokens") == 1
    assert asked.index("ssh: rotate the tokens") > asked.index("ssh: list the nodes") + 1


def test_with_a_network_the_health_is_read_after_the_plan_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not PROVIDER_MIRROR.exists():
        pytest.skip(f"no provider mirror at {PROVIDER_MIRROR} (run scripts/setup-host.sh)")
    cluster = Watched(tmp_path, monkeypatch, STAND_IN)
    cluster.apply(1, 1)

    asked = cluster.asked(cluster.apply(1, 1))

    assert asked == ["ssh: asked with no terraform running", "ssh: list the nodes",
                     "ssh: rotate the tokens"]


# --- terraform init, once per change ---------------------------------------------------


def _inits(settings: Settings) -> int:
    log = settings.cluster_dir / "terraform.log"
    return sum(1 for line in log.read_text().splitlines() if re.match(r"\$ \S+ init ", line))


@needs_mirror
def test_terraform_init_runs_again_only_when_its_workspace_could_differ(tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(TERRAFORM / "local", config)
    settings = replace(Settings(), cluster=unique_cluster("stamp"), state_dir=str(tmp_path / "s"))
    workdir = settings.cluster_dir / "terraform"

    def prepared() -> int:
        tf = initialised_terraform(settings, config, LocalTarget.mirrored_providers,
                                   lambda line: None)
        assert tf.outputs() == {}  # Terraform works in it: no state yet
        return _inits(settings)

    assert prepared() == 1
    assert prepared() == 1  # nothing changed
    with (config / "main.tf").open("a") as main:
        main.write("\n# a change to the config\n")
    assert prepared() == 2
    assert (workdir / "main.tf").read_text() == (config / "main.tf").read_text()
    assert prepared() == 2
    shutil.rmtree(workdir / ".terraform")  # what init installed is gone
    assert prepared() == 3
    (workdir / "main.tf").write_text("# edited in the workdir\n")
    assert prepared() == 4
    assert (workdir / "main.tf").read_text() == (config / "main.tf").read_text()
    (workdir / ".terraform.lock.hcl").write_text("")  # the lock file Terraform checks against
    assert prepared() == 5
    assert prepared() == 5
